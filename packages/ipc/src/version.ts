/**
 * Version of the message formats in this package. Every message carries it in its `v` field; a
 * receiver that meets another version refuses the message with `protocol_mismatch`, naming both.
 * Bump it on any change that an older peer could misread.
 */
export const PROTOCOL_VERSION = 1;

/** Literal schema field shared by every message. */
export type ProtocolVersion = typeof PROTOCOL_VERSION;

/** Text for a version mismatch, naming the versions that met and what to do. */
export function describeVersionMismatch(
  local: { role: string; version: unknown },
  remote: { role: string; version: unknown },
): string {
  return (
    `protocol version mismatch: this ${local.role} speaks version ${String(local.version)}, ` +
    `the ${remote.role} speaks version ${String(remote.version)}. ` +
    'Stop the daemon with the version that started it and start it again with this one.'
  );
}
