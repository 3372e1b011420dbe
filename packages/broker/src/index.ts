/**
 * @aiida/broker: the RabbitMQ transport of a profile (rabbitmq-client): its fixed topology, tasks
 * with publisher confirms, task consumption, RPC to the holder of a process, state-changed
 * broadcasts, and the server's version from the AMQP handshake. This list is the package's whole
 * public API.
 */

export { BrokerError, type BrokerErrorCode, BrokerErrorCodes, isBrokerError } from './errors.js';
export {
  LISTENER_ANSWER_VALIDITY_S,
  LISTENER_POLL_INTERVAL_S,
  ListenerWatch,
  listenersQueueDeclaration,
} from './listeners.js';
export { type BrokerLogger, consoleBrokerLogger, stderrBrokerLogger } from './logger.js';
export {
  type BrokerOptions,
  type BrokerState,
  type ConnectOptions,
  DEFAULT_BROKER_HEARTBEAT,
  type QueueCounts,
  RabbitBroker,
} from './rabbit-broker.js';
export { type RpcHandler, RpcServer, type RpcServerOptions } from './rpc.js';
export {
  probeServer,
  type ReadServerVersionOptions,
  readServerVersion,
  type ServerProbe,
  type ServerVersionSettings,
} from './server-version.js';
export { type StateChangedHandler, StateChangedSubscription } from './subscription.js';
export {
  TaskConsumer,
  type TaskConsumerCloseResult,
  type TaskConsumerOptions,
  type TaskConsumerState,
  type TaskConsumerStats,
  type TaskDelivery,
  type TaskHandler,
  type TaskOutcome,
} from './task-consumer.js';
export {
  ALL_STATE_CHANGES_KEY,
  type ExchangeDeclaration,
  type QueueBinding,
  type QueueDeclaration,
  type QueueType,
  rpcRoutingKey,
  stateChangedRoutingKey,
  TASK_ROUTING_KEY,
  type TopologyDeclarations,
  type TopologyNames,
  topologyDeclarations,
  topologyNames,
} from './topology.js';
