#!/usr/bin/env node
// Bundles the dashboard page (page/app.ts with Preact, htm and uPlot, from the lock) into
// dist/page/: app.js, app.css and index.html. No CDN: the page works offline.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'page');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(root, 'page', 'app.ts') },
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'esm',
  target: ['es2020'],
  outdir: out,
  legalComments: 'none',
  logLevel: 'warning',
});
copyFileSync(join(root, 'page', 'index.html'), join(out, 'index.html'));
