import {
  declarationLists,
  rpcRoutingKey,
  stateChangedRoutingKey,
  TASK_ROUTING_KEY,
  topologyDeclarations,
  topologyNames,
} from '../src/topology.js';

const uuid = '0f3c5a4e-8a7b-4a51-9d3c-2b1f6e7d8c90';

describe('topologyNames', () => {
  it('prefixes every name with aiida-<uuid>', () => {
    expect(topologyNames(uuid)).toEqual({
      prefix: `aiida-${uuid}`,
      tasksExchange: `aiida-${uuid}.tasks`,
      processQueue: `aiida-${uuid}.process.queue`,
      dlx: `aiida-${uuid}.dlx`,
      dlq: `aiida-${uuid}.process.dlq`,
      messagesExchange: `aiida-${uuid}.messages`,
    });
  });

  it('refuses a uuid that would make odd names', () => {
    expect(() => topologyNames('a b')).toThrow(/invalid profile uuid/);
    expect(() => topologyNames('')).toThrow(/invalid profile uuid/);
  });
});

describe('topologyDeclarations', () => {
  const names = topologyNames(uuid);

  it.each(['classic', 'quorum'] as const)('declares the fixed %s topology', (queueType) => {
    const decl = topologyDeclarations(names, queueType);
    expect(decl.exchanges).toEqual({
      tasks: { exchange: names.tasksExchange, type: 'direct', durable: true },
      dlx: { exchange: names.dlx, type: 'fanout', durable: true },
      messages: { exchange: names.messagesExchange, type: 'topic', durable: true },
    });
    expect(decl.queues.process).toEqual({
      queue: names.processQueue,
      durable: true,
      arguments: { 'x-queue-type': queueType, 'x-dead-letter-exchange': names.dlx },
    });
    expect(decl.queues.dlq).toEqual({
      queue: names.dlq,
      durable: true,
      arguments: { 'x-queue-type': queueType },
    });
    expect(decl.bindings.process).toEqual({
      exchange: names.tasksExchange,
      queue: names.processQueue,
      routingKey: TASK_ROUTING_KEY,
    });
    expect(decl.bindings.dlq).toEqual({ exchange: names.dlx, queue: names.dlq, routingKey: '' });
  });

  it('has no TTL, no auto-delete and no exclusive durable queue', () => {
    const decl = topologyDeclarations(names, 'classic');
    for (const queue of Object.values(decl.queues)) {
      expect(queue.arguments).not.toHaveProperty('x-message-ttl');
      expect(queue.arguments).not.toHaveProperty('x-expires');
      expect(queue.autoDelete).toBeUndefined();
      expect(queue.exclusive).toBeUndefined();
    }
  });

  it('refuses an unknown queue type', () => {
    expect(() => topologyDeclarations(names, 'stream' as never)).toThrow(/unknown queue type/);
  });

  it('lists the same objects in declaration order', () => {
    const decl = topologyDeclarations(names, 'quorum');
    const lists = declarationLists(decl);
    expect(lists.exchanges).toEqual([
      decl.exchanges.tasks,
      decl.exchanges.dlx,
      decl.exchanges.messages,
    ]);
    expect(lists.queues[0]).toBe(decl.queues.process);
    expect(lists.queues[1]).toBe(decl.queues.dlq);
    expect(lists.queueBindings).toEqual([decl.bindings.process, decl.bindings.dlq]);
  });
});

describe('routing keys', () => {
  it('uses rpc.<pk> and broadcast.state_changed.<pk>', () => {
    expect(rpcRoutingKey(42)).toBe('rpc.42');
    expect(stateChangedRoutingKey(7)).toBe('broadcast.state_changed.7');
  });
});
