import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { libp2pConnector } from '../../shared/src/net/libp2p.js';
import { PingSchedule } from './liveness.js';
import { type SpawnedRelay, spawnRelay } from './testing/spawn.js';
import { address, message, metric, until } from './testing/util.js';

describe('the ping schedule', () => {
  const conns = (n: number): { id: string }[] => Array.from({ length: n }, (_, i) => ({ id: `c${i}` }));

  it('pings each connection once per period, spread over it, not all at once', () => {
    let k = 0;
    // Evenly spread "random" places: connection i first at i/100 of the period.
    const schedule = new PingSchedule<{ id: string }>(10_000, () => (k++ % 100) / 100);
    const open = conns(100);
    const pinged = new Map<string, number[]>();
    let most = 0;
    for (let t = 0; t <= 30_000; t += 1000) {
      const due = schedule.due(open, t);
      most = Math.max(most, due.length);
      for (const c of due) pinged.set(c.id, [...(pinged.get(c.id) ?? []), t]);
    }
    // Every connection, every 10 s, and about a tenth of them per 1 s tick (11 in the first,
    // which also takes those placed at 0, the tick they were first seen).
    expect(pinged.size).toBe(100);
    for (const times of pinged.values()) {
      expect(times.length).toBeGreaterThanOrEqual(2);
      for (let i = 1; i < times.length; i++) expect((times[i] ?? 0) - (times[i - 1] ?? 0)).toBe(10_000);
    }
    expect(most).toBeLessThanOrEqual(11);
  });

  it('forgets closed connections and places a new one in its first period', () => {
    const schedule = new PingSchedule<{ id: string }>(1000, () => 0.5);
    const [a, b] = conns(2) as [{ id: string }, { id: string }];
    expect(schedule.due([a], 0)).toEqual([]);
    expect(schedule.due([a], 499)).toEqual([]);
    expect(schedule.due([a], 500)).toEqual([a]);
    // a closed; b opens at 600 and is due at 1100, not before.
    expect(schedule.due([b], 600)).toEqual([]);
    expect(schedule.due([b], 1099)).toEqual([]);
    expect(schedule.due([a, b], 1100)).toEqual([b]);
    // a back (a new connection with the same id): a fresh place, not its old time.
    expect(schedule.due([a, b], 1500)).toEqual([]);
    expect(schedule.due([a, b], 1600)).toEqual([a]);
  });
});

describe('a relay closes connections whose peer stopped answering', () => {
  let relay: SpawnedRelay | undefined;
  let held: ChildProcess | undefined;
  afterAll(async () => {
    held?.kill('SIGKILL');
    await relay?.stop();
  });

  it('closes the connection of a frozen peer within a few pings and keeps a live one', async () => {
    relay = await spawnRelay({ args: ['--ping-every', '1s'] });
    const root = fileURLToPath(new URL('../..', import.meta.url));
    held = spawn(
      process.execPath,
      [
        '--experimental-websocket',
        '--import',
        './scripts/node20.mjs',
        '--import',
        'tsx',
        'relay/src/testing/held-peer.ts',
        relay.multiaddr,
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const out = held.stdout;
    if (out === null) throw new Error('no stdout');
    await new Promise<void>((resolve) => {
      createInterface({ input: out }).on('line', (l) => {
        if (l === 'ready') resolve();
      });
    });
    const live = await libp2pConnector();
    const link = await live.connect(relay.multiaddr);
    const r = relay;
    await until(
      async () => (await metric(r, 'conclave_relay_connections')) === 2,
      'both peers connected',
      10_000,
    );
    // Answering peers are pinged every second and stay.
    await new Promise((res) => setTimeout(res, 3000));
    expect(await metric(r, 'conclave_relay_connections')).toBe(2);
    expect(await metric(r, 'conclave_relay_dead_connections_total')).toBe(0);
    // Frozen: its socket stays open (the kernel still acknowledges), but nothing answers.
    held.kill('SIGSTOP');
    await until(
      async () => (await metric(r, 'conclave_relay_dead_connections_total')) === 1,
      'the frozen peer closed',
      15_000,
    );
    await until(
      async () => (await metric(r, 'conclave_relay_connections')) === 1,
      'one connection left',
      5_000,
    );
    // The live peer is still served on its connection.
    expect((await link.append(address(78), message(78, 0, 300))).kind).toBe('appended');
    expect((await link.read(address(78), 0, 10)).lastSeq).toBe(1);
    await live.stop();
  }, 60_000);
});
