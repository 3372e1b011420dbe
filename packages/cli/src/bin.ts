#!/usr/bin/env node
import { main } from './program.js';

// Exit explicitly once the command is done: a library may keep a timer or socket alive (a broker
// client's reconnect timer, a store handle) after everything the command needed has finished.
// Standard output is synchronous for files and pipes on Linux, so nothing written is lost.
const code = await main(process.argv);
process.exit(code);
