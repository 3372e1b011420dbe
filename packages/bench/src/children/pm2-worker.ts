/**
 * The worker PM2 runs in the control benchmark: it tells PM2 it is ready at once (`wait_ready`)
 * and then idles until stopped, the least a worker can do.
 */
process.send?.('ready');
const keepAlive = setInterval(() => {}, 1 << 30);
const stop = () => {
  clearInterval(keepAlive);
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
