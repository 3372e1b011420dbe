import net from 'node:net';

/**
 * Makes every socket created from now on use TCP_NODELAY, whatever its owner asks for
 * (rabbitmq-client calls `setNoDelay(false)` unless given `noDelay: true`). For the latency
 * experiment only. Returns a function that restores the original method.
 */
export function forceNoDelay(): () => void {
  const original = net.Socket.prototype.setNoDelay;
  net.Socket.prototype.setNoDelay = function setNoDelay(this: net.Socket) {
    return original.call(this, true);
  };
  return () => {
    net.Socket.prototype.setNoDelay = original;
  };
}
