import type { Cmd, MethodParams } from 'rabbitmq-client';

/** The queue type of a profile's durable queues (a broker setting fixed at profile creation). */
export type QueueType = 'classic' | 'quorum';

/** Names of a profile's exchanges and queues; every name starts with `aiida-<profile uuid>`. */
export interface TopologyNames {
  /** `aiida-<uuid>`: the prefix that keeps profiles apart on one RabbitMQ. */
  prefix: string;
  /** `P.tasks`: direct exchange tasks are published to. */
  tasksExchange: string;
  /** `P.process.queue`: the durable task queue workers consume. */
  processQueue: string;
  /** `P.dlx`: fanout exchange the task queue dead-letters to. */
  dlx: string;
  /** `P.process.dlq`: durable queue that keeps dead-lettered tasks. */
  dlq: string;
  /** `P.messages`: topic exchange for RPC (`rpc.<pk>`) and broadcasts. */
  messagesExchange: string;
}

/** Routing key of tasks from `P.tasks` to `P.process.queue`. */
export const TASK_ROUTING_KEY = 'process';

/** Names of the profile with this uuid. */
export function topologyNames(profileUuid: string): TopologyNames {
  if (!/^[A-Za-z0-9-]+$/.test(profileUuid)) {
    throw new TypeError(`invalid profile uuid for a broker prefix: ${JSON.stringify(profileUuid)}`);
  }
  const prefix = `aiida-${profileUuid}`;
  return {
    prefix,
    tasksExchange: `${prefix}.tasks`,
    processQueue: `${prefix}.process.queue`,
    dlx: `${prefix}.dlx`,
    dlq: `${prefix}.process.dlq`,
    messagesExchange: `${prefix}.messages`,
  };
}

/** Arguments of an exchange declaration (rabbitmq-client's `exchangeDeclare` parameters). */
export type ExchangeDeclaration = MethodParams[Cmd.ExchangeDeclare];
/** Arguments of a queue declaration (rabbitmq-client's `queueDeclare` parameters). */
export type QueueDeclaration = MethodParams[Cmd.QueueDeclare];
/** Arguments of a queue binding (rabbitmq-client's `queueBind` parameters). */
export type QueueBinding = MethodParams[Cmd.QueueBind];

/**
 * Every declaration of a profile's durable topology, in declaration order. This is the ONE place
 * their options live: RabbitMQ refuses (PRECONDITION_FAILED) a redeclaration with other options,
 * and queue arguments can never change later, so every declarer (connect, the task publisher, the
 * task consumer, a reconnect) uses exactly these objects.
 */
export interface TopologyDeclarations {
  exchanges: {
    tasks: ExchangeDeclaration;
    dlx: ExchangeDeclaration;
    messages: ExchangeDeclaration;
  };
  queues: {
    process: QueueDeclaration;
    dlq: QueueDeclaration;
  };
  bindings: {
    process: QueueBinding;
    dlq: QueueBinding;
  };
}

/** The declarations of the topology with these names and queue type. */
export function topologyDeclarations(
  names: TopologyNames,
  queueType: QueueType,
): TopologyDeclarations {
  if (queueType !== 'classic' && queueType !== 'quorum') {
    throw new TypeError(
      `unknown queue type ${JSON.stringify(queueType)}: expected classic or quorum`,
    );
  }
  return {
    exchanges: {
      tasks: { exchange: names.tasksExchange, type: 'direct', durable: true },
      dlx: { exchange: names.dlx, type: 'fanout', durable: true },
      messages: { exchange: names.messagesExchange, type: 'topic', durable: true },
    },
    queues: {
      process: {
        queue: names.processQueue,
        durable: true,
        arguments: { 'x-queue-type': queueType, 'x-dead-letter-exchange': names.dlx },
      },
      dlq: { queue: names.dlq, durable: true, arguments: { 'x-queue-type': queueType } },
    },
    bindings: {
      process: {
        exchange: names.tasksExchange,
        queue: names.processQueue,
        routingKey: TASK_ROUTING_KEY,
      },
      dlq: { exchange: names.dlx, queue: names.dlq, routingKey: '' },
    },
  };
}

/** The declarations as lists, in the order they must run (queues before their bindings). */
export function declarationLists(decl: TopologyDeclarations): {
  exchanges: ExchangeDeclaration[];
  queues: QueueDeclaration[];
  queueBindings: QueueBinding[];
} {
  return {
    exchanges: [decl.exchanges.tasks, decl.exchanges.dlx, decl.exchanges.messages],
    queues: [decl.queues.process, decl.queues.dlq],
    queueBindings: [decl.bindings.process, decl.bindings.dlq],
  };
}

/** Routing key of RPC requests for process `pk` on `P.messages`. */
export function rpcRoutingKey(pk: number): string {
  return `rpc.${pk}`;
}

/** Routing key of state-changed broadcasts of process `pk` on `P.messages`. */
export function stateChangedRoutingKey(pk: number): string {
  return `broadcast.state_changed.${pk}`;
}

/** Binding key that matches every state-changed broadcast. */
export const ALL_STATE_CHANGES_KEY = 'broadcast.state_changed.*';
