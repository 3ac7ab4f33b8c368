import { describe, expect, it } from 'vitest';
import type { Notice, Shown } from '../../worker/src/notify.js';
import { Lifecycle, type LifecycleApi, type Signal, type Signals } from './lifecycle.js';

type ResumeValue = { online: boolean; accepted: number; outboxLeft: number; notices: readonly Notice[] };

/** A worker whose `resume` calls wait until the test ends them. */
function fakeApi() {
  const calls: string[] = [];
  const pending: ((v: ResumeValue | Error) => void)[] = [];
  let running = 0;
  let maxRunning = 0;
  const api: LifecycleApi = {
    suspend: () => {
      calls.push('suspend');
      return Promise.resolve({ ok: true, value: { outboxLeft: 0 } });
    },
    resume: (online) => {
      calls.push(online ? 'resume' : 'resume offline');
      running++;
      maxRunning = Math.max(maxRunning, running);
      return new Promise((resolve, reject) => {
        pending.push((v) => {
          running--;
          if (v instanceof Error) reject(v);
          else resolve({ ok: true, value: v });
        });
      });
    },
  };
  return {
    api,
    calls,
    maxRunning: () => maxRunning,
    /** Ends the oldest running `resume` with `v`. */
    finish: async (v: ResumeValue | Error = { online: true, accepted: 0, outboxLeft: 0, notices: [] }) => {
      await expect.poll(() => pending.length).toBeGreaterThan(0);
      pending.shift()?.(v);
    },
  };
}

function fakeSignals(seen = true) {
  let emit: ((s: Signal) => void) | undefined;
  const state = { seen };
  const signals: Signals = {
    listen(on) {
      emit = on;
      return () => {
        emit = undefined;
      };
    },
    seen: () => state.seen,
  };
  return { signals, state, emit: (s: Signal) => emit?.(s), listening: () => emit !== undefined };
}

const mention: Notice = {
  kind: 'mention',
  spaceId: 's',
  spaceName: 'Club',
  channelId: 'c',
  postId: 'p',
  authorName: 'Bob',
  text: '@Alice look',
};

describe('Lifecycle', () => {
  it('going away offers the outbox; coming back catches up, "catching up" shown until it is done', async () => {
    const w = fakeApi();
    const s = fakeSignals();
    const lc = new Lifecycle(w.api, () => Promise.resolve()).start(s.signals);
    const seen: boolean[] = [];
    lc.watch((b) => seen.push(b));
    s.emit('away');
    expect(w.calls).toEqual(['suspend']);
    s.emit('back');
    expect(lc.catchingUp).toBe(true);
    await w.finish();
    await expect.poll(() => lc.catchingUp).toBe(false);
    expect(w.calls).toEqual(['suspend', 'resume']);
    expect(seen).toEqual([false, true, false]);
  });

  it('the network returning catches up too; signals during a catch-up run one more after it, never two at once', async () => {
    const w = fakeApi();
    const s = fakeSignals();
    const lc = new Lifecycle(w.api, () => Promise.resolve()).start(s.signals);
    s.emit('online');
    s.emit('back');
    s.emit('online');
    await w.finish();
    await w.finish();
    await expect.poll(() => lc.catchingUp).toBe(false);
    expect(w.calls).toEqual(['resume', 'resume']);
    expect(w.maxRunning()).toBe(1);
  });

  it('notifies mentions and replies taken in while the app is not seen, and not while it is', async () => {
    const w = fakeApi();
    const s = fakeSignals(false);
    const shown: Shown[][] = [];
    const lc = new Lifecycle(w.api, (n) => {
      shown.push([...n]);
      return Promise.resolve();
    }).start(s.signals);
    s.emit('online');
    await w.finish({ online: true, accepted: 3, outboxLeft: 0, notices: [mention] });
    await expect.poll(() => lc.catchingUp).toBe(false);
    expect(shown).toEqual([[{ title: 'Bob mentioned you in Club', body: '@Alice look' }]]);
    s.state.seen = true;
    s.emit('back');
    await w.finish({ online: true, accepted: 3, outboxLeft: 0, notices: [mention] });
    await expect.poll(() => lc.catchingUp).toBe(false);
    expect(shown).toHaveLength(1);
  });

  it('tells the worker whether the browser is online', async () => {
    const w = fakeApi();
    const s = fakeSignals();
    let online = false;
    const lc = new Lifecycle(
      w.api,
      () => Promise.resolve(),
      () => online,
    ).start(s.signals);
    s.emit('back');
    await w.finish();
    await expect.poll(() => lc.catchingUp).toBe(false);
    online = true;
    s.emit('online');
    await w.finish();
    await expect.poll(() => lc.catchingUp).toBe(false);
    expect(w.calls).toEqual(['resume offline', 'resume']);
  });

  it('a catch-up that fails still ends "catching up"', async () => {
    const w = fakeApi();
    const s = fakeSignals();
    const lc = new Lifecycle(w.api, () => Promise.resolve()).start(s.signals);
    s.emit('back');
    await w.finish(new Error('worker gone'));
    await expect.poll(() => lc.catchingUp).toBe(false);
  });

  it('stop() stops listening', () => {
    const w = fakeApi();
    const s = fakeSignals();
    const lc = new Lifecycle(w.api, () => Promise.resolve()).start(s.signals);
    expect(s.listening()).toBe(true);
    lc.stop();
    expect(s.listening()).toBe(false);
  });
});
