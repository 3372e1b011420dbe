import { EngineErrorCodes, isEngineError, type NewProcess, type ProcessStore } from '@aiida/engine';

/**
 * What the store contract needs of a backend: a fresh store, time that passes for its leases, and
 * a way to fake a schema from the future. Each backend's test file gives one and calls
 * {@link describeStoreContract}; the contract itself is written once.
 */
export interface StoreHarness {
  /** Opens the store (the same data on every call). */
  open(): Promise<ProcessStore>;
  /** Lets `seconds` pass for the store's clock (leases, time limits, ages). */
  advance(seconds: number): Promise<void>;
  /** Makes `version` the highest applied schema version of the (closed) store, as a newer or older release would leave it. */
  setSchemaVersion(version: number): Promise<void>;
  /** Removes the store's data (file or database). The store is closed first. */
  dispose(): Promise<void>;
}

const add = { type: 'core.arithmetic.add', inputs: { x: 1, y: 2 } };

/** The behaviour every {@link ProcessStore} backend must show; one suite, run for each backend. */
export function describeStoreContract(
  backend: string,
  makeHarness: () => Promise<StoreHarness>,
): void {
  describe(`store contract: ${backend}`, () => {
    let h: StoreHarness;
    let store: ProcessStore;

    beforeEach(async () => {
      h = await makeHarness();
      store = await h.open();
    });
    afterEach(async () => {
      await store.close();
      await h.dispose();
    });

    test('reports its backend, server version and schema version', () => {
      expect(store.backend).toBe(backend);
      expect(store.serverVersion).toMatch(/^\d+\.\d+/);
      expect(store.schemaVersion).toBeGreaterThanOrEqual(1);
    });

    test('a store newer than the code is refused, naming both versions, and keeps its rows', async () => {
      const [p] = await store.createProcesses([add]);
      const version = store.schemaVersion;
      await store.close();
      await h.setSchemaVersion(version + 1);
      let error: unknown;
      try {
        store = await h.open();
      } catch (e) {
        error = e;
      }
      expect(isEngineError(error)).toBe(true);
      expect((error as { code: string }).code).toBe(EngineErrorCodes.storeVersionUnsupported);
      expect((error as Error).message).toContain(`schema version ${version + 1}`);
      expect((error as Error).message).toContain(`up to ${version}`);
      // For afterEach: a store object that can be closed; the data stays for the check below.
      await h.setSchemaVersion(version);
      store = await h.open();
      expect((await store.getProcess(p!.pk))?.type).toBe('core.arithmetic.add');
    });

    test('reopening an existing store keeps its rows (migrations are not re-applied)', async () => {
      const [p] = await store.createProcesses([add]);
      await store.close();
      store = await h.open();
      expect((await store.getProcess(p!.pk))?.type).toBe('core.arithmetic.add');
    });

    test('createProcesses writes a batch in one statement: records in the given order, each with its own type, inputs and time limit', async () => {
      const batch: NewProcess[] = [
        { type: 'core.arithmetic.add', inputs: { x: 1, y: 2 } },
        { type: 'core.shell', inputs: { command: 'echo "ü ✓"', env: { A: '1' } }, timeLimit: 1.5 },
        { type: 'core.arithmetic.add', inputs: null },
        { type: 'core.arithmetic.add', inputs: [1, [2, { z: null }]], timeLimit: 60 },
      ];
      const created = await store.createProcesses(batch);
      expect(created.map((r) => r.type)).toEqual(batch.map((p) => p.type));
      expect(created.map((r) => r.inputs)).toEqual(batch.map((p) => p.inputs));
      expect(created.map((r) => r.timeLimit)).toEqual([null, 1.5, null, 60]);
      expect(created.map((r) => r.state)).toEqual(['created', 'created', 'created', 'created']);
      const pks = created.map((r) => r.pk);
      expect([...pks].sort((a, b) => a - b)).toEqual(pks);
      expect(new Set(created.map((r) => r.uuid)).size).toBe(4);
      expect(await store.getProcesses(pks)).toEqual(created);
      expect(await store.createProcesses([])).toEqual([]);
    });

    test('completeAndClaimMany: terminal writes then claims in one transaction, each with the result the single methods give', async () => {
      const [a, b, c, d] = await store.createProcesses([add, add, add, add]);
      const held = await store.claim(a!.pk, 'w1', 30, { maxAttempts: 3 });
      const stale = await store.claim(b!.pk, 'w1', 30, { maxAttempts: 3 });
      if (!held.ok || !stale.ok) throw new Error('claims refused');
      await store.requestPause(d!.pk);
      const out = await store.completeAndClaimMany(
        [
          { fence: held.lease, result: { state: 'finished', outputs: { sum: 3 }, exitStatus: 0 } },
          // A fence from an older epoch: lease_lost in its place, the others still commit.
          {
            fence: { ...stale.lease, epoch: stale.lease.epoch - 1 },
            result: { state: 'finished', outputs: {} },
          },
        ],
        { pks: [c!.pk, d!.pk, a!.pk, c!.pk], ownerId: 'w2', leaseSeconds: 30, maxAttempts: 3 },
      );
      expect(out.completions).toHaveLength(2);
      expect(out.completions[0]).toMatchObject({
        terminated: [{ pk: a!.pk, state: 'finished', from: 'running' }],
      });
      expect(isEngineError(out.completions[1])).toBe(true);
      expect((out.completions[1] as { code: string }).code).toBe(EngineErrorCodes.leaseLost);
      // c is claimed; d is paused; a just ended (in the same transaction); c again is owned now.
      expect(out.claims.map((r) => (r.ok ? 'ok' : r.reason))).toEqual([
        'ok',
        'paused',
        'terminal',
        'owned',
      ]);
      const rows = await store.getProcesses([a!.pk, b!.pk, c!.pk]);
      expect(rows.map((r) => [r.state, r.owner])).toEqual([
        ['finished', null],
        ['running', 'w1'],
        ['running', 'w2'],
      ]);
      expect(
        await store.completeAndClaimMany([], {
          pks: [],
          ownerId: 'w2',
          leaseSeconds: 30,
          maxAttempts: 3,
        }),
      ).toEqual({ completions: [], claims: [] });
    });

    test('listProcesses filters, sorts and limits in the query (verdi process list)', async () => {
      const [a] = await store.createProcesses([add]);
      await h.advance(3600);
      const [b, c, d] = await store.createProcesses([add, add, add]);
      const finish = async (pk: number, exitStatus: number) => {
        const claimed = await store.claim(pk, 'w1', 30, { maxAttempts: 3 });
        if (!claimed.ok) throw new Error(`claim of ${pk} refused: ${claimed.reason}`);
        await store.complete(claimed.lease, {
          state: 'finished',
          outputs: { sum: 3 },
          exitStatus,
        });
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
      // Half an hour before b was created: after a (an hour older), before b, c and d.
      const since = new Date(Date.parse(b!.createdAt) - 1800 * 1000);
      expect(await pks({ createdAfter: since, order: 'asc' })).toEqual([b!.pk, c!.pk, d!.pk]);
      expect(await pks({ createdAfter: since.toISOString(), limit: 1 })).toEqual([d!.pk]);
      expect(await pks({ orderBy: 'createdAt', order: 'asc', limit: 2 })).toEqual([a!.pk, b!.pk]);
      await expect(store.listProcesses({ createdAfter: 'yesterday' })).rejects.toThrow(
        /createdAfter is not a valid time: yesterday/,
      );
    });

    test('dashboard queries: pages, counts, histograms, activity and a change token, all in the store', async () => {
      const adds = [] as number[];
      for (let i = 0; i < 3; i++) {
        const [row] = await store.createProcesses([add]);
        adds.push(row!.pk);
      }
      const [shell] = await store.createProcesses([
        { type: 'core.shell', inputs: { command: 'true' } },
      ]);
      const since = new Date(Date.parse(shell!.createdAt) - 60_000).toISOString();
      const token = await store.changeToken();
      expect(await store.changeToken()).toBe(token);
      // adds[0] runs for 2 s, adds[1] at once with exit status 410; the shell job is paused.
      const first = await store.claim(adds[0]!, 'w1', 30, { maxAttempts: 3 });
      if (!first.ok) throw new Error('claim');
      await h.advance(2);
      await store.complete(first.lease, { state: 'finished', outputs: {}, exitStatus: 0 });
      const second = await store.claim(adds[1]!, 'w1', 30, { maxAttempts: 3 });
      if (!second.ok) throw new Error('claim');
      await store.complete(second.lease, { state: 'finished', outputs: {}, exitStatus: 410 });
      await store.requestPause(shell!.pk);
      expect(await store.changeToken()).not.toBe(token);

      const page = await store.queryProcesses({ limit: 2 });
      expect(page.total).toBe(4);
      expect(page.processes.map((p) => p.pk)).toEqual([shell!.pk, adds[2]]);
      const next = await store.queryProcesses({
        limit: 2,
        offset: 2,
        sort: 'created',
        order: 'asc',
      });
      expect(next.processes.map((p) => p.pk)).toEqual([adds[2], shell!.pk]);
      const byEnd = await store.queryProcesses({ sort: 'finished', order: 'desc' });
      expect(byEnd.processes.map((p) => p.pk).slice(0, 2)).toEqual([adds[1], adds[0]]);
      expect((await store.queryProcesses({ states: ['finished'] })).total).toBe(2);
      expect((await store.queryProcesses({ exitStatus: 410 })).processes.map((p) => p.pk)).toEqual([
        adds[1],
      ]);
      expect((await store.queryProcesses({ type: 'core.shell', paused: true })).total).toBe(1);

      const summary = await store.summarizeProcesses();
      expect(summary.total).toBe(4);
      expect(summary.counts).toEqual([
        { state: 'created', type: 'core.arithmetic.add', count: 1, paused: 0 },
        { state: 'created', type: 'core.shell', count: 1, paused: 1 },
        { state: 'finished', type: 'core.arithmetic.add', count: 2, paused: 0 },
      ]);
      expect(summary.claims).toBe(2);
      expect(summary.ownerLosses).toBe(0);
      expect(summary.lastModifiedAt).not.toBeNull();

      const durations = await store.processDurations([10, 1, 5]);
      expect(durations.bounds).toEqual([1, 5, 10]);
      expect(durations.run.counts).toEqual([1, 2, 2]);
      expect(durations.run.count).toBe(2);
      expect(durations.run.sum).toBeGreaterThanOrEqual(2);
      expect(durations.queued.count).toBe(2);

      const activity = await store.processActivity({ since, interval: 3600 });
      expect(activity[0]?.time).toBe(since);
      expect(activity.reduce((n, b) => n + b.finished, 0)).toBe(2);
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
        await h.advance(9);
        expect((await store.claim(p!.pk, 'w2', 10, { maxAttempts: 5 })).ok).toBe(false);
        await h.advance(2);
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
        await store.complete(second.lease, {
          state: 'finished',
          outputs: { sum: 3 },
          exitStatus: 0,
        });
        const row = await store.getProcess(p!.pk);
        expect(row).toMatchObject({
          state: 'finished',
          outputs: { sum: 3 },
          owner: null,
          epoch: 2,
        });
        await expect(store.complete(second.lease, { state: 'excepted' })).rejects.toMatchObject({
          code: 'lease_lost',
        });
      });

      test('renewal keeps a lease alive past its first expiry', async () => {
        const [p] = await store.createProcesses([add]);
        await store.claim(p!.pk, 'w1', 10, { maxAttempts: 5 });
        await h.advance(8);
        const [r] = await store.renewLeases('w1', [p!.pk], 10);
        expect(r).toMatchObject({ held: true, paused: false, kill: null });
        await h.advance(8);
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
          await h.advance(11); // owner crashed; lease expires
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
        await h.advance(11);
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

    describe('claimRunnable (the store as the queue)', () => {
      const granted = (items: { pk: number; result: { ok: boolean } }[]) =>
        items.filter((i) => i.result.ok).map((i) => i.pk);

      test('takes runnable rows oldest first up to the limit; skips paused, parked, held and terminal rows', async () => {
        const rows = await store.createProcesses(Array.from({ length: 8 }, () => add));
        const pk = rows.map((r) => r.pk);
        await store.requestPause(pk[0]!);
        await store.requestKill(pk[1]!, 'gone', false);
        const held = await store.claim(pk[2]!, 'other', 10, { maxAttempts: 5 });
        expect(held.ok).toBe(true);
        // pk[3] becomes a parked parent of a live child.
        const parent = await store.claim(pk[3]!, 'wf', 10, { maxAttempts: 5 });
        if (!parent.ok) throw new Error('claim');
        const child = await store.createChild(parent.lease, 'c', add);
        expect(await store.park(parent.lease, {}, [child.record.pk])).toBe('parked');

        const first = await store.claimRunnable('w1', 10, { maxAttempts: 5, limit: 3 });
        expect(first.map((i) => i.result.ok)).toEqual([true, true, true]);
        expect(granted(first)).toEqual([pk[4], pk[5], pk[6]]);
        for (const item of first) {
          if (!item.result.ok) continue;
          expect(item.result.lease).toMatchObject({ pk: item.pk, ownerId: 'w1', epoch: 1 });
          expect(item.result.record.state).toBe('running');
        }
        const second = await store.claimRunnable('w2', 10, { maxAttempts: 5, limit: 10 });
        expect(granted(second)).toEqual([pk[7], child.record.pk]);
        expect(await store.claimRunnable('w3', 10, { maxAttempts: 5, limit: 10 })).toEqual([]);
        // What was skipped is unchanged.
        expect(await store.getProcess(pk[0]!)).toMatchObject({ paused: true, owner: null });
        expect(await store.getProcess(pk[2]!)).toMatchObject({ owner: 'other', epoch: 1 });
        expect(await store.getProcess(pk[3]!)).toMatchObject({ state: 'waiting', owner: null });
        // Play makes the paused row a candidate again.
        await store.requestPlay(pk[0]!);
        expect(granted(await store.claimRunnable('w3', 10, { maxAttempts: 5, limit: 10 }))).toEqual(
          [pk[0]],
        );
      });

      test('an expired lease is taken over with the claim rules (owner lost, next attempt)', async () => {
        const [p] = await store.createProcesses([add]);
        await store.claim(p!.pk, 'w1', 10, { maxAttempts: 5 });
        await h.advance(9);
        expect(await store.claimRunnable('w2', 10, { maxAttempts: 5, limit: 5 })).toEqual([]);
        await h.advance(2);
        const [item] = await store.claimRunnable('w2', 10, { maxAttempts: 5, limit: 5 });
        expect(item?.pk).toBe(p!.pk);
        expect(item?.result).toMatchObject({ ok: true, ownerLost: true });
        if (item?.result.ok) expect(item.result.lease).toMatchObject({ epoch: 2, attempt: 2 });
      });

      test('kill intents, time limits and poison end candidates instead, without using up the limit', async () => {
        const [killed, poisoned, timed, a, b] = await store.createProcesses([
          add,
          add,
          { ...add, timeLimit: 5 },
          add,
          add,
        ]);
        await store.claim(killed!.pk, 'w1', 10, { maxAttempts: 2 });
        await store.requestKill(killed!.pk, 'stop it', false);
        await store.claim(poisoned!.pk, 'w1', 10, { maxAttempts: 2 });
        await h.advance(11);
        // `poisoned` loses its owner once here, and a second time before the batch claim.
        expect(await store.claim(poisoned!.pk, 'w2', 10, { maxAttempts: 2 })).toMatchObject({
          ok: true,
        });
        await h.advance(11);
        const items = await store.claimRunnable('w3', 10, { maxAttempts: 2, limit: 2 });
        expect(items.map((i) => [i.pk, i.result.ok ? 'ok' : i.result.reason])).toEqual([
          [killed!.pk, 'killed'],
          [poisoned!.pk, 'poisoned'],
          [timed!.pk, 'killed'],
          [a!.pk, 'ok'],
          [b!.pk, 'ok'],
        ]);
        const killedItem = items[0]!.result;
        if (!killedItem.ok) expect(killedItem.effects?.terminated[0]?.pk).toBe(killed!.pk);
        expect(await store.getProcess(killed!.pk)).toMatchObject({
          state: 'killed',
          processStatus: 'Killed: stop it',
        });
        expect((await store.getProcess(timed!.pk))?.processStatus).toContain('time limit');
        expect(await store.getProcess(poisoned!.pk)).toMatchObject({ state: 'excepted' });
      });

      test('notifyWork on one handle wakes the listeners of another; a stopped listener hears nothing', async () => {
        const other = await h.open();
        try {
          let heard = 0;
          const stop = await other.listenForWork(() => {
            heard++;
          });
          const before = heard; // PostgreSQL calls once when it starts listening
          await store.notifyWork();
          const deadline = Date.now() + 10_000;
          while (heard === before && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          expect(heard).toBeGreaterThan(before);
          await stop();
          const after = heard;
          await store.notifyWork();
          await new Promise((resolve) => setTimeout(resolve, 300));
          expect(heard).toBe(after);
        } finally {
          await other.close();
        }
      });

      test('two claimers at once take disjoint rows, and together all of them', async () => {
        const other = await h.open();
        try {
          const rows = await store.createProcesses(Array.from({ length: 30 }, () => add));
          const [x, y] = await Promise.all([
            store.claimRunnable('a', 10, { maxAttempts: 5, limit: 20 }),
            other.claimRunnable('b', 10, { maxAttempts: 5, limit: 20 }),
          ]);
          const ga = granted(x!);
          const gb = granted(y!);
          expect(ga.filter((pk) => gb.includes(pk))).toEqual([]);
          expect([...ga, ...gb].sort((m, n) => m - n)).toEqual(rows.map((r) => r.pk));
          expect(ga.length).toBeLessThanOrEqual(20);
          expect(gb.length).toBeLessThanOrEqual(20);
        } finally {
          await other.close();
        }
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
        await h.advance(11);
        expect(await store.electLeader('w2', 10)).toBe(true);
        expect(await store.electLeader('w1', 10)).toBe(false);
      });

      test('two handles on one store (two hosts): one leader; the other takes over once the lease lapses', async () => {
        const other = await h.open();
        try {
          expect(await store.electLeader('hostA:1:a', 10)).toBe(true);
          expect(await other.electLeader('hostB:1:b', 10)).toBe(false);
          await h.advance(6);
          expect(await store.electLeader('hostA:1:a', 10)).toBe(true); // renewed
          await h.advance(6);
          expect(await other.electLeader('hostB:1:b', 10)).toBe(false); // renewal counts
          await h.advance(5); // hostA stopped renewing 11 s ago
          expect(await other.electLeader('hostB:1:b', 10)).toBe(true);
          expect(await store.electLeader('hostA:1:a', 10)).toBe(false);
        } finally {
          await other.close();
        }
      });

      test('findDispatchable: never dispatched after the grace, or owner lease expired', async () => {
        const [a, b, c, d] = await store.createProcesses([add, add, add, add]);
        await store.markDispatched([b!.pk]);
        await store.claim(c!.pk, 'w1', 10, { maxAttempts: 5 });
        await store.requestPause(d!.pk);
        expect(await store.findDispatchable({ neverDispatchedGraceSeconds: 5 })).toEqual([]);
        await h.advance(6);
        expect(await store.findDispatchable({ neverDispatchedGraceSeconds: 5 })).toEqual([a!.pk]);
        await h.advance(5); // c's owner lease expired
        expect(await store.findDispatchable({ neverDispatchedGraceSeconds: 5 })).toEqual([
          a!.pk,
          c!.pk,
        ]);
        await store.markDispatched([a!.pk, c!.pk]);
        expect(await store.findDispatchable({ neverDispatchedGraceSeconds: 5 })).toEqual([]);
        await h.advance(100);
        expect(
          await store.findDispatchable({
            neverDispatchedGraceSeconds: 5,
            staleDispatchSeconds: 60,
          }),
        ).toEqual([a!.pk, b!.pk, c!.pk]);
      });

      test('findDispatchable with expiredRedispatchSeconds: an expired, unclaimed row comes back, with a backoff, until claimed', async () => {
        // The exact backoff times are checked on SQLite's fake clock (store.test.ts); here the
        // checks keep half a second or more from every bound, as time also passes for real.
        const [a] = await store.createProcesses([add]);
        await store.claim(a!.pk, 'w1', 10, { maxAttempts: 5 });
        const find = () =>
          store.findDispatchable({
            neverDispatchedGraceSeconds: 5,
            expiredRedispatchSeconds: { min: 1, max: 4 },
          });
        await h.advance(11); // the lease expired 1 s ago
        expect(await find()).toEqual([a!.pk]);
        await store.markDispatched([a!.pk]);
        expect(await find()).toEqual([]);
        // Without the option, one send after the expiry is all.
        await h.advance(10);
        expect(await store.findDispatchable({ neverDispatchedGraceSeconds: 5 })).toEqual([]);
        // With it, sent again (10 s since the send is past the 4 s cap).
        expect(await find()).toEqual([a!.pk]);
        await store.markDispatched([a!.pk]);
        await h.advance(0.5);
        expect(await find()).toEqual([]);
        await h.advance(4);
        expect(await find()).toEqual([a!.pk]);
        // A live worker claims it: no more sends.
        const claimed = await store.claim(a!.pk, 'w2', 10, { maxAttempts: 5 });
        expect(claimed).toMatchObject({ ok: true, ownerLost: true });
        await h.advance(5);
        expect(await find()).toEqual([]);
      });

      test('killExpired kills unowned processes past their time limit', async () => {
        const [a, b] = await store.createProcesses([
          { ...add, timeLimit: 5 },
          { ...add, timeLimit: 500 },
        ]);
        await h.advance(6);
        const effects = await store.killExpired();
        expect(effects.terminated.map((t) => t.pk)).toEqual([a!.pk]);
        expect(await store.getProcess(a!.pk)).toMatchObject({
          state: 'killed',
          processStatus: 'Killed: time limit of 5 s exceeded',
        });
        expect((await store.getProcess(b!.pk))?.state).toBe('created');
      });
    });

    describe('worker registry', () => {
      const worker = (id: string, host: string, pid: number) => ({
        workerId: id,
        hostname: host,
        pid,
        slotsUsed: 0,
        slotsTotal: 200,
      });

      test("register, heartbeat and unregister: every host's workers, by host then start", async () => {
        expect(await store.listWorkers({ staleAfterSeconds: 10 })).toEqual([]);
        await store.registerWorker(worker('b:20:x', 'hostB', 20));
        await h.advance(1);
        await store.registerWorker(worker('a:11:y', 'hostA', 11));
        await h.advance(1);
        await store.registerWorker(worker('a:10:z', 'hostA', 10));
        const listed = await store.listWorkers({ staleAfterSeconds: 10 });
        expect(listed.map((w) => [w.hostname, w.workerId, w.pid, w.stale])).toEqual([
          ['hostA', 'a:11:y', 11, false],
          ['hostA', 'a:10:z', 10, false],
          ['hostB', 'b:20:x', 20, false],
        ]);
        const first = listed.find((w) => w.workerId === 'b:20:x')!;
        expect(first.startedAt).toBe(first.lastHeartbeatAt);
        expect(Date.parse(first.startedAt)).toBeLessThan(Date.parse(listed[0]!.startedAt));

        // A heartbeat updates slots and the last heartbeat, keeps the start.
        await h.advance(2);
        const find = async () =>
          (await store.listWorkers({ staleAfterSeconds: 10 })).find(
            (w) => w.workerId === 'b:20:x',
          )!;
        const before = await find();
        await store.registerWorker({ ...worker('b:20:x', 'hostB', 20), slotsUsed: 7 });
        const beat = await find();
        expect(beat).toMatchObject({ slotsUsed: 7, slotsTotal: 200, startedAt: before.startedAt });
        expect(
          Date.parse(beat.lastHeartbeatAt) - Date.parse(before.lastHeartbeatAt),
        ).toBeGreaterThanOrEqual(2000);

        await store.unregisterWorker('a:11:y');
        await store.unregisterWorker('not-registered'); // not an error
        expect((await store.listWorkers({ staleAfterSeconds: 10 })).map((w) => w.workerId)).toEqual(
          ['a:10:z', 'b:20:x'],
        );
      });

      test("removeStaleWorkers removes only the given host's stale rows", async () => {
        await store.registerWorker(worker('a:1:x', 'hostA', 1));
        await store.registerWorker(worker('b:2:y', 'hostB', 2));
        await h.advance(6);
        await store.registerWorker(worker('a:3:z', 'hostA', 3));
        expect(await store.removeStaleWorkers('hostA', 5)).toEqual(['a:1:x']);
        expect(await store.removeStaleWorkers('hostA', 5)).toEqual([]);
        expect((await store.listWorkers({ staleAfterSeconds: 5 })).map((w) => w.workerId)).toEqual([
          'a:3:z',
          'b:2:y',
        ]);
      });

      test('stale once the last heartbeat is older than staleAfterSeconds, by the store clock', async () => {
        await store.registerWorker(worker('a:1:x', 'hostA', 1));
        await store.registerWorker(worker('b:2:y', 'hostB', 2));
        await h.advance(6);
        await store.registerWorker(worker('b:2:y', 'hostB', 2)); // b beats, a does not
        const stale = (s: number) =>
          store
            .listWorkers({ staleAfterSeconds: s })
            .then((ws) => ws.map((w) => [w.workerId, w.stale]));
        expect(await stale(10)).toEqual([
          ['a:1:x', false],
          ['b:2:y', false],
        ]);
        await h.advance(5); // a: 11 s without a heartbeat, b: 5 s
        expect(await stale(10)).toEqual([
          ['a:1:x', true],
          ['b:2:y', false],
        ]);
        // Another handle (another host) sees the same rows and the same verdict.
        const other = await h.open();
        try {
          expect(
            (await other.listWorkers({ staleAfterSeconds: 10 })).map((w) => [w.workerId, w.stale]),
          ).toEqual([
            ['a:1:x', true],
            ['b:2:y', false],
          ]);
        } finally {
          await other.close();
        }
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
        await h.advance(100);
        await expect(
          store.deleteProcesses({ olderThan: 10, states: ['running'] }),
        ).rejects.toMatchObject({
          code: EngineErrorCodes.processActive,
        });
        expect(await store.deleteProcesses({ olderThan: 10, states: ['finished'] })).toEqual([
          b!.pk,
        ]);
        expect(await store.getReports(b!.pk)).toEqual([]);
        expect(await store.deleteProcesses({ olderThan: 10 })).toEqual([a!.pk]);
      });
    });
  });
}
