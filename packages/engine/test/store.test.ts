import { statSync } from 'node:fs';
import { join } from 'node:path';
import {
  EngineErrorCodes,
  isEngineError,
  openStore,
  type SqliteProcessStore,
  STORE_SCHEMA_VERSION,
} from '@aiida/engine';
import Database from 'better-sqlite3';
import { FakeClock, openTestStore, tempDir } from './helpers.js';

const add = { type: 'core.arithmetic.add', inputs: { x: 1, y: 2 } };

describe('SqliteProcessStore', () => {
  let tmp: ReturnType<typeof tempDir>;
  let clock: FakeClock;
  let store: SqliteProcessStore;

  beforeEach(() => {
    tmp = tempDir();
    clock = new FakeClock();
    store = openTestStore(tmp.dir, clock);
  });
  afterEach(async () => {
    await store.close();
    tmp.remove();
  });

  test('creates its file in a 0700 folder, in WAL mode, at the current schema version', () => {
    const file = join(tmp.dir, 'store', 'aiida.sqlite');
    expect(statSync(join(tmp.dir, 'store')).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const db = new Database(file, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.prepare('SELECT MAX(version) AS v FROM schema_version').get()).toEqual({
      v: STORE_SCHEMA_VERSION,
    });
    db.close();
  });

  test('openStore uses profile.storage.config.filepath', async () => {
    const filepath = join(tmp.dir, 'p', 'x.sqlite');
    const s = openStore({ storage: { config: { filepath } } });
    expect(s.location).toBe(filepath);
    await s.close();
  });

  test('a store newer than the code is refused, naming both versions, and left untouched', async () => {
    await store.close();
    const file = join(tmp.dir, 'store', 'aiida.sqlite');
    const db = new Database(file);
    db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(
      STORE_SCHEMA_VERSION + 1,
      0,
    );
    db.close();
    const before = statSync(file).mtimeMs;
    let error: unknown;
    try {
      openTestStore(tmp.dir, clock);
    } catch (e) {
      error = e;
    }
    expect(isEngineError(error)).toBe(true);
    expect((error as { code: string }).code).toBe(EngineErrorCodes.storeVersionUnsupported);
    expect((error as Error).message).toContain(`schema version ${STORE_SCHEMA_VERSION + 1}`);
    expect((error as Error).message).toContain(`up to ${STORE_SCHEMA_VERSION}`);
    expect(statSync(file).mtimeMs).toBe(before);
    // For afterEach, which closes `store` and removes `tmp`: a fresh store in a fresh folder.
    tmp.remove();
    tmp = tempDir();
    store = openTestStore(tmp.dir, clock);
  });

  test('reopening an existing store keeps its rows (migrations are not re-applied)', async () => {
    const [p] = await store.createProcesses([add]);
    await store.close();
    store = openTestStore(tmp.dir, clock);
    expect((await store.getProcess(p!.pk))?.type).toBe('core.arithmetic.add');
  });

  test('listProcesses filters, sorts and limits in the query (verdi process list)', async () => {
    const [a] = await store.createProcesses([add]);
    clock.advance(3600);
    const [b, c, d] = await store.createProcesses([add, add, add]);
    const finish = async (pk: number, exitStatus: number) => {
      const claimed = await store.claim(pk, 'w1', 30, { maxAttempts: 3 });
      if (!claimed.ok) throw new Error(`claim of ${pk} refused: ${claimed.reason}`);
      await store.complete(claimed.lease, { state: 'finished', outputs: { sum: 3 }, exitStatus });
    };
    await finish(b!.pk, 0);
    await finish(c!.pk, 400);
    await store.requestPause(d!.pk);
    const pks = async (filter: Parameters<typeof store.listProcesses>[0]) =>
      (await store.listProcesses(filter)).map((r) => r.pk);
    expect(await pks({})).toEqual([d!.pk, c!.pk, b!.pk, a!.pk]);
    expect(await pks({ failed: true })).toEqual([c!.pk]);
    expect(await pks({ exitStatus: 0 })).toEqual([b!.pk]);
    expect(await pks({ exitStatus: 400 })).toEqual([c!.pk]);
    expect(await pks({ paused: true })).toEqual([d!.pk]);
    expect(await pks({ paused: false, states: ['created'] })).toEqual([a!.pk]);
    const since = new Date(clock.now() - 1800 * 1000);
    expect(await pks({ createdAfter: since, order: 'asc' })).toEqual([b!.pk, c!.pk, d!.pk]);
    expect(await pks({ createdAfter: since.toISOString(), limit: 1 })).toEqual([d!.pk]);
    expect(await pks({ orderBy: 'createdAt', order: 'asc', limit: 2 })).toEqual([a!.pk, b!.pk]);
    await expect(store.listProcesses({ createdAfter: 'yesterday' })).rejects.toThrow(
      /createdAfter is not a valid time: yesterday/,
    );
  });

  describe('claim', () => {
    test('takes an unowned runnable row: epoch + 1, attempt 1, state running', async () => {
      const [p] = await store.createProcesses([add]);
      expect(p).toMatchObject({ state: 'created', runnable: true, owner: null, epoch: 0 });
      const c = await store.claim(p!.pk, 'w1', 10, { maxAttempts: 3 });
      expect(c.ok).toBe(true);
      if (!c.ok) return;
      expect(c.lease).toMatchObject({ pk: p!.pk, ownerId: 'w1', epoch: 1, attempt: 1 });
      expect(c.record).toMatchObject({ state: 'running', owner: 'w1' });
      expect(c.ownerLost).toBe(false);
    });

    test('refuses a row held by a live owner, a missing, terminal, paused or parked row', async () => {
      const [p, q] = await store.createProcesses([add, add]);
      await store.claim(p!.pk, 'w1', 10, { maxAttempts: 3 });
      expect(await store.claim(p!.pk, 'w2', 10, { maxAttempts: 3 })).toEqual({
        ok: false,
        reason: 'owned',
      });
      expect(await store.claim(p!.pk, 'w1', 10, { maxAttempts: 3 })).toEqual({
        ok: false,
        reason: 'owned',
      });
      expect(await store.claim(9999, 'w1', 10, { maxAttempts: 3 })).toEqual({
        ok: false,
        reason: 'not_found',
      });
      await store.requestPause(q!.pk);
      expect(await store.claim(q!.pk, 'w1', 10, { maxAttempts: 3 })).toEqual({
        ok: false,
        reason: 'paused',
      });
      await store.requestKill(q!.pk, 'x', false);
      expect(await store.claim(q!.pk, 'w1', 10, { maxAttempts: 3 })).toEqual({
        ok: false,
        reason: 'terminal',
      });
    });

    test('after the lease expires another owner takes over; the old epoch is fenced out', async () => {
      const [p] = await store.createProcesses([add]);
      const first = await store.claim(p!.pk, 'w1', 10, { maxAttempts: 5 });
      if (!first.ok) throw new Error('claim failed');
      clock.advance(9);
      expect((await store.claim(p!.pk, 'w2', 10, { maxAttempts: 5 })).ok).toBe(false);
      clock.advance(2);
      const second = await store.claim(p!.pk, 'w2', 10, { maxAttempts: 5 });
      if (!second.ok) throw new Error('second claim failed');
      expect(second.ownerLost).toBe(true);
      expect(second.lease).toMatchObject({ epoch: 2, attempt: 2 });
      expect(second.record.ownerLosses).toBe(1);
      const stale = { pk: p!.pk, ownerId: 'w1', epoch: 1 };
      for (const write of [
        () => store.writeCheckpoint(stale, { a: 1 }),
        () => store.complete(stale, { state: 'finished', outputs: { sum: 3 } }),
        () => store.setProcessGroup(stale, null),
        () => store.release(stale),
        () => store.park(stale, {}, []),
      ]) {
        await expect(write()).rejects.toMatchObject({ code: 'lease_lost' });
      }
      // The old owner's renewal tells it the lease is gone.
      expect(await store.renewLeases('w1', [p!.pk], 10)).toEqual([
        { pk: p!.pk, held: false, paused: false, kill: null, timeLimitExceeded: null },
      ]);
      // The new owner commits the one result.
      await store.complete(second.lease, { state: 'finished', outputs: { sum: 3 }, exitStatus: 0 });
      const row = await store.getProcess(p!.pk);
      expect(row).toMatchObject({ state: 'finished', outputs: { sum: 3 }, owner: null, epoch: 2 });
      await expect(store.complete(second.lease, { state: 'excepted' })).rejects.toMatchObject({
        code: 'lease_lost',
      });
    });

    test('renewal keeps a lease alive past its first expiry', async () => {
      const [p] = await store.createProcesses([add]);
      await store.claim(p!.pk, 'w1', 10, { maxAttempts: 5 });
      clock.advance(8);
      const [r] = await store.renewLeases('w1', [p!.pk], 10);
      expect(r).toMatchObject({ held: true, paused: false, kill: null });
      clock.advance(8);
      expect(await store.claim(p!.pk, 'w2', 10, { maxAttempts: 5 })).toEqual({
        ok: false,
        reason: 'owned',
      });
    });

    test('poison: an owner lost maxAttempts times makes the process excepted with that reason', async () => {
      const [p] = await store.createProcesses([add]);
      for (let i = 1; i <= 3; i++) {
        const c = await store.claim(p!.pk, `w${i}`, 10, { maxAttempts: 3 });
        expect(c.ok).toBe(true);
        if (c.ok) expect(c.lease.attempt).toBe(i);
        clock.advance(11); // owner crashed; lease expires
      }
      const last = await store.claim(p!.pk, 'w4', 10, { maxAttempts: 3 });
      expect(last).toMatchObject({ ok: false, reason: 'poisoned' });
      const row = await store.getProcess(p!.pk);
      expect(row?.state).toBe('excepted');
      expect(row?.exception).toContain('owner lost 3 times');
      expect(row?.ownerLosses).toBe(3);
      expect(row?.owner).toBeNull();
    });

    test('a clean release does not count as a loss nor as a new attempt', async () => {
      const [p] = await store.createProcesses([add]);
      const c = await store.claim(p!.pk, 'w1', 10, { maxAttempts: 5 });
      if (!c.ok) throw new Error('claim');
      expect(await store.release(c.lease)).toEqual({ dispatch: true });
      const again = await store.claim(p!.pk, 'w2', 10, { maxAttempts: 5 });
      if (!again.ok) throw new Error('claim');
      expect(again.lease).toMatchObject({ epoch: 2, attempt: 1 });
      expect(again.record.ownerLosses).toBe(0);
      // An interrupted release means a body may have half-run: next attempt number.
      await store.release(again.lease, { interrupted: true });
      const third = await store.claim(p!.pk, 'w3', 10, { maxAttempts: 5 });
      if (!third.ok) throw new Error('claim');
      expect(third.lease.attempt).toBe(2);
      expect(third.record.ownerLosses).toBe(0);
    });

    test('a pending kill intent is applied by the next claim after the owner was lost', async () => {
      const [p] = await store.createProcesses([add]);
      await store.claim(p!.pk, 'w1', 10, { maxAttempts: 5 });
      expect(await store.requestKill(p!.pk, 'stop it', false)).toMatchObject({
        status: 'requested',
        owner: 'w1',
      });
      const [r] = await store.renewLeases('w1', [p!.pk], 10);
      expect(r?.kill).toEqual({ message: 'stop it', force: false });
      clock.advance(11);
      expect(await store.claim(p!.pk, 'w2', 10, { maxAttempts: 5 })).toMatchObject({
        ok: false,
        reason: 'killed',
      });
      expect(await store.getProcess(p!.pk)).toMatchObject({
        state: 'killed',
        processStatus: 'Killed: stop it',
      });
    });
  });

  describe('batched writes (group commit)', () => {
    test('claimMany claims each pk once; a duplicate in the batch is refused as owned', async () => {
      const [a, b] = await store.createProcesses([add, add]);
      const results = await store.claimMany([a!.pk, b!.pk, a!.pk, 777], 'w1', 10, {
        maxAttempts: 5,
      });
      expect(results.map((r) => (r.ok ? 'ok' : r.reason))).toEqual([
        'ok',
        'ok',
        'owned',
        'not_found',
      ]);
    });

    test('completeMany commits the good items and returns lease_lost for a stale one', async () => {
      const [a, b] = await store.createProcesses([add, add]);
      const [ca, cb] = await store.claimMany([a!.pk, b!.pk], 'w1', 10, { maxAttempts: 5 });
      if (!ca?.ok || !cb?.ok) throw new Error('claims');
      const results = await store.completeMany([
        { fence: ca.lease, result: { state: 'finished', outputs: { sum: 3 }, exitStatus: 0 } },
        { fence: { ...cb.lease, epoch: 99 }, result: { state: 'finished', outputs: { sum: 3 } } },
      ]);
      expect(results[0]).toMatchObject({ terminated: [{ pk: a!.pk, state: 'finished' }] });
      expect(results[1]).toMatchObject({ code: 'lease_lost' });
      expect((await store.getProcess(a!.pk))?.state).toBe('finished');
      expect((await store.getProcess(b!.pk))?.state).toBe('running');
    });
  });

  describe('park and children', () => {
    async function parentWithChild() {
      const [parent] = await store.createProcesses([
        { type: 'core.arithmetic.multiply_add', inputs: { x: 1, y: 2, z: 3 } },
      ]);
      const c = await store.claim(parent!.pk, 'w1', 10, { maxAttempts: 5 });
      if (!c.ok) throw new Error('claim');
      const child = await store.createChild(c.lease, '0:0', add);
      return { parentLease: c.lease, child: child.record };
    }

    test('createChild is idempotent per spawn key and fenced', async () => {
      const { parentLease, child } = await parentWithChild();
      const again = await store.createChild(parentLease, '0:0', add);
      expect(again).toMatchObject({ created: false });
      expect(again.record.pk).toBe(child.pk);
      await expect(
        store.createChild({ ...parentLease, epoch: parentLease.epoch + 1 }, '0:1', add),
      ).rejects.toMatchObject({ code: 'lease_lost' });
    });

    test('park parks while a child is live; the child end wakes the parent and names it for dispatch', async () => {
      const { parentLease, child } = await parentWithChild();
      expect(await store.park(parentLease, { step: 1 }, [child.pk])).toBe('parked');
      const parked = await store.getProcess(parentLease.pk);
      expect(parked).toMatchObject({
        state: 'waiting',
        runnable: false,
        owner: null,
        checkpoint: { step: 1 },
      });
      expect(parked?.processStatus).toContain(String(child.pk));
      expect(await store.claim(parentLease.pk, 'w2', 10, { maxAttempts: 5 })).toEqual({
        ok: false,
        reason: 'not_runnable',
      });
      const cc = await store.claim(child.pk, 'w2', 10, { maxAttempts: 5 });
      if (!cc.ok) throw new Error('claim child');
      const effects = await store.complete(cc.lease, { state: 'finished', outputs: { sum: 5 } });
      expect(effects.parentsToDispatch).toEqual([parentLease.pk]);
      expect(await store.getProcess(parentLease.pk)).toMatchObject({
        runnable: true,
        dispatchedAt: null,
      });
      const resumed = await store.claim(parentLease.pk, 'w3', 10, { maxAttempts: 5 });
      expect(resumed.ok).toBe(true);
      if (resumed.ok) {
        expect(resumed.lease.attempt).toBe(1);
        expect(resumed.record.checkpoint).toEqual({ step: 1 });
      }
    });

    test('race: a child that finished before the parent parks makes park continue (nothing missed)', async () => {
      const { parentLease, child } = await parentWithChild();
      const cc = await store.claim(child.pk, 'w2', 10, { maxAttempts: 5 });
      if (!cc.ok) throw new Error('claim child');
      const effects = await store.complete(cc.lease, { state: 'finished', outputs: { sum: 5 } });
      // Parent is still held and runnable: nothing to dispatch.
      expect(effects.parentsToDispatch).toEqual([]);
      expect(await store.park(parentLease, { step: 1 }, [child.pk])).toBe('continue');
      const row = await store.getProcess(parentLease.pk);
      expect(row).toMatchObject({
        state: 'running',
        owner: 'w1',
        runnable: true,
        checkpoint: { step: 1 },
      });
    });

    test('killing an unowned parked workflow kills its unowned children; owned ones get an intent', async () => {
      const { parentLease, child } = await parentWithChild();
      const second = await store.createChild(parentLease, '0:1', add);
      await store.claim(second.record.pk, 'w9', 10, { maxAttempts: 5 });
      expect(await store.park(parentLease, {}, [])).toBe('parked');
      const outcome = await store.requestKill(parentLease.pk, 'enough', false);
      expect(outcome.status).toBe('applied');
      if (outcome.status !== 'applied') return;
      expect(outcome.effects?.terminated.map((t) => t.pk).sort()).toEqual(
        [parentLease.pk, child.pk].sort(),
      );
      expect(outcome.effects?.killRequested).toEqual([
        {
          pk: second.record.pk,
          owner: 'w9',
          message: `parent process ${parentLease.pk} was killed`,
        },
      ]);
      expect((await store.getProcess(child.pk))?.state).toBe('killed');
      const [r] = await store.renewLeases('w9', [second.record.pk], 10);
      expect(r?.kill?.message).toContain(`parent process ${parentLease.pk}`);
    });
  });

  describe('control on unowned rows', () => {
    test('kill of a queued process makes it killed at once', async () => {
      const [p] = await store.createProcesses([add]);
      const outcome = await store.requestKill(p!.pk, 'no daemon', false);
      expect(outcome.status).toBe('applied');
      expect(await store.getProcess(p!.pk)).toMatchObject({
        state: 'killed',
        processStatus: 'Killed: no daemon',
        runnable: false,
      });
      expect((await store.requestKill(p!.pk, null, false)).status).toBe('terminal');
    });

    test('pause sets the flag; play clears it and asks for a dispatch', async () => {
      const [p] = await store.createProcesses([add]);
      await store.markDispatched([p!.pk]);
      expect((await store.requestPause(p!.pk, 'hold')).status).toBe('applied');
      expect(await store.getProcess(p!.pk)).toMatchObject({ paused: true, state: 'created' });
      expect((await store.requestPause(p!.pk)).status).toBe('unchanged');
      expect(await store.requestPlay(p!.pk)).toEqual({
        pk: p!.pk,
        status: 'applied',
        dispatch: true,
      });
      expect(await store.getProcess(p!.pk)).toMatchObject({ paused: false, dispatchedAt: null });
      expect((await store.requestPlay(p!.pk)).status).toBe('unchanged');
    });

    test('not found', async () => {
      expect(await store.requestKill(42, null, false)).toEqual({ pk: 42, status: 'not_found' });
    });
  });

  describe('reconciler queries', () => {
    test('one leader at a time; another takes over after the lease expires', async () => {
      expect(await store.electLeader('w1', 10)).toBe(true);
      expect(await store.electLeader('w2', 10)).toBe(false);
      expect(await store.electLeader('w1', 10)).toBe(true);
      clock.advance(11);
      expect(await store.electLeader('w2', 10)).toBe(true);
      expect(await store.electLeader('w1', 10)).toBe(false);
    });

    test('findDispatchable: never dispatched after the grace, or owner lease expired', async () => {
      const [a, b, c, d] = await store.createProcesses([add, add, add, add]);
      await store.markDispatched([b!.pk]);
      await store.claim(c!.pk, 'w1', 10, { maxAttempts: 5 });
      await store.requestPause(d!.pk);
      expect(await store.findDispatchable({ neverDispatchedGraceSeconds: 5 })).toEqual([]);
      clock.advance(6);
      expect(await store.findDispatchable({ neverDispatchedGraceSeconds: 5 })).toEqual([a!.pk]);
      clock.advance(5); // c's owner lease expired
      expect(await store.findDispatchable({ neverDispatchedGraceSeconds: 5 })).toEqual([
        a!.pk,
        c!.pk,
      ]);
      await store.markDispatched([a!.pk, c!.pk]);
      expect(await store.findDispatchable({ neverDispatchedGraceSeconds: 5 })).toEqual([]);
      clock.advance(100);
      expect(
        await store.findDispatchable({ neverDispatchedGraceSeconds: 5, staleDispatchSeconds: 60 }),
      ).toEqual([a!.pk, b!.pk, c!.pk]);
    });

    test('findDispatchable with expiredRedispatchSeconds: an expired, unclaimed row comes back with a doubling backoff until claimed', async () => {
      const [a] = await store.createProcesses([add]);
      await store.claim(a!.pk, 'w1', 10, { maxAttempts: 5 });
      const find = () =>
        store.findDispatchable({
          neverDispatchedGraceSeconds: 5,
          expiredRedispatchSeconds: { min: 1, max: 4 },
        });
      clock.advance(11); // the lease expired 1 s ago
      expect(await find()).toEqual([a!.pk]);
      await store.markDispatched([a!.pk]);
      // Without the option, one send after the expiry is all.
      clock.advance(10);
      expect(await store.findDispatchable({ neverDispatchedGraceSeconds: 5 })).toEqual([]);
      // With it: sent at expiry + 1; again once the time since the send reaches half the time
      // since the expiry, at least 1 s, at most 4 s.
      clock.advance(-10);
      const sends: number[] = [];
      for (let t = 2; t <= 20; t++) {
        clock.advance(1);
        if ((await find()).includes(a!.pk)) {
          sends.push(t);
          await store.markDispatched([a!.pk]);
        }
      }
      expect(sends).toEqual([2, 4, 8, 12, 16, 20]);
      // A live worker claims it: no more sends.
      const claimed = await store.claim(a!.pk, 'w2', 10, { maxAttempts: 5 });
      expect(claimed).toMatchObject({ ok: true, ownerLost: true });
      clock.advance(5);
      expect(await find()).toEqual([]);
    });

    test('killExpired kills unowned processes past their time limit', async () => {
      const [a, b] = await store.createProcesses([
        { ...add, timeLimit: 5 },
        { ...add, timeLimit: 500 },
      ]);
      clock.advance(6);
      const effects = await store.killExpired();
      expect(effects.terminated.map((t) => t.pk)).toEqual([a!.pk]);
      expect(await store.getProcess(a!.pk)).toMatchObject({
        state: 'killed',
        processStatus: 'Killed: time limit of 5 s exceeded',
      });
      expect((await store.getProcess(b!.pk))?.state).toBe('created');
    });
  });

  describe('deleteProcesses', () => {
    test('refuses active processes by pk and deletes nothing', async () => {
      const [a, b] = await store.createProcesses([add, add]);
      await store.requestKill(a!.pk, null, false);
      let error: unknown;
      try {
        await store.deleteProcesses({ pks: [a!.pk, b!.pk] });
      } catch (e) {
        error = e;
      }
      expect(error).toMatchObject({ code: EngineErrorCodes.processActive });
      expect((error as Error).message).toContain(String(b!.pk));
      expect(await store.getProcess(a!.pk)).toBeDefined();
      expect(await store.deleteProcesses({ pks: [a!.pk] })).toEqual([a!.pk]);
      expect(await store.getProcess(a!.pk)).toBeUndefined();
    });

    test('by age and state, with descendants; active states are refused', async () => {
      const [a, b] = await store.createProcesses([add, add]);
      await store.requestKill(a!.pk, null, false);
      const c = await store.claim(b!.pk, 'w', 10, { maxAttempts: 5 });
      if (!c.ok) throw new Error('claim');
      await store.addReport(b!.pk, 'report', 'hello');
      await store.complete(c.lease, { state: 'finished', outputs: { sum: 3 } });
      clock.advance(100);
      await expect(
        store.deleteProcesses({ olderThan: 10, states: ['running'] }),
      ).rejects.toMatchObject({
        code: EngineErrorCodes.processActive,
      });
      expect(await store.deleteProcesses({ olderThan: 10, states: ['finished'] })).toEqual([b!.pk]);
      expect(await store.getReports(b!.pk)).toEqual([]);
      expect(await store.deleteProcesses({ olderThan: 10 })).toEqual([a!.pk]);
    });
  });
});
