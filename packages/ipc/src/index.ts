/**
 * @aiida/ipc: every message that crosses a process boundary, as versioned zod schemas; error codes
 * as data; NDJSON stream framing. This list is the package's whole public API.
 */

export {
  type ContinueTask,
  continueTaskSchema,
  PROCESS_STATES,
  type ProcessState,
  processStateSchema,
  type RpcIntent,
  type RpcProcessStatus,
  type RpcReply,
  type RpcRequest,
  rpcProcessStatusSchema,
  rpcReplySchema,
  rpcRequestSchema,
  type StateChangedBroadcast,
  stateChangedBroadcastSchema,
  TERMINAL_STATES,
} from './broker-messages.js';
export {
  isoTimestamp,
  processPk,
  type SerializedError,
  seconds,
  serializedErrorSchema,
  versionField,
} from './common.js';
export {
  CONTROL_REQUEST_TYPES,
  type ControlErrorResponse,
  type ControlOkResponse,
  type ControlRequest,
  type ControlRequestType,
  type ControlResponse,
  type ControlResult,
  controlErrorResponseSchema,
  controlOkResponseSchema,
  controlRequestSchema,
  controlResponseSchema,
  controlResultSchemas,
  type DaemonStatus,
  daemonStatusSchema,
  decrRequestSchema,
  incrRequestSchema,
  type PingResult,
  pingRequestSchema,
  pingResultSchema,
  type RestartReason,
  restartReasonSchema,
  restartRequestSchema,
  type ScaleResult,
  type StopResult,
  scaleResultSchema,
  statusRequestSchema,
  stopRequestSchema,
  stopResultSchema,
  type WorkerState,
  type WorkerStatus,
  type WorkersResult,
  workerStateSchema,
  workerStatusSchema,
  workersRequestSchema,
  workersResultSchema,
} from './control.js';
export {
  type DaemonStateFile,
  daemonStateFileSchema,
  type SupervisorStartReport,
  supervisorStartReportSchema,
} from './daemon-state.js';
export { type ErrorCode, ErrorCodes, isErrorCode } from './error-codes.js';
export {
  DEFAULT_MAX_LINE_BYTES,
  encodeNdjson,
  NdjsonDecoder,
  type NdjsonDecoderOptions,
  type NdjsonErrorKind,
  type NdjsonEvent,
  type NdjsonFrameError,
} from './ndjson.js';
export { describeVersionMismatch, PROTOCOL_VERSION, type ProtocolVersion } from './version.js';
export {
  type SupervisorToWorkerMessage,
  supervisorToWorkerMessageSchema,
  type WorkerFatalMessage,
  type WorkerHeartbeatMessage,
  type WorkerReadyMessage,
  type WorkerShutdownMessage,
  type WorkerToSupervisorMessage,
  workerFatalMessageSchema,
  workerHeartbeatMessageSchema,
  workerReadyMessageSchema,
  workerShutdownMessageSchema,
  workerToSupervisorMessageSchema,
} from './worker-channel.js';
