/**
 * The app's life on phones and desktops (ARCHITECTURE.md section 11). A phone suspends a
 * backgrounded app and kills its connections; a laptop loses its network. So:
 * - going away (hidden, or Capacitor's `pause`): the worker offers the outbox to the relays at
 *   once (`suspend`), before the app may be frozen or killed;
 * - coming back (visible, Capacitor's `resume`) or the network returning (`online`, or the
 *   Network plugin): the worker reconnects, pulls every Space's mailbox and flushes the outbox
 *   (`resume`), while the page shows "Catching up" (`catchingUp`); the timeline refreshes from
 *   the worker's live events as the ops are taken in;
 * - mentions of this person and replies to their posts that a catch-up took in while the app
 *   is not seen become local notifications (notify.ts decides which and what).
 *
 * Where the signals come from is a port (`Signals`), so the logic is tested without a browser:
 * `domSignals` (any browser, the installed PWA) and `capacitorSignals` (the native apps).
 */
import type { Result } from '../../worker/src/api.js';
import { type Notice, type Shown, toShow } from '../../worker/src/notify.js';

/** The part of the worker's API the lifecycle calls. */
export interface LifecycleApi {
  suspend(): Promise<Result<{ outboxLeft: number }>>;
  resume(
    online: boolean,
  ): Promise<Result<{ online: boolean; accepted: number; outboxLeft: number; notices: readonly Notice[] }>>;
}

/** `away`: hidden or paused; `back`: visible or resumed; `online`: the network returned. */
export type Signal = 'away' | 'back' | 'online';

/** Where the app's life events come from. */
export interface Signals {
  /** Calls `on` for every signal until the returned function is called. */
  listen(on: (signal: Signal) => void): () => void;
  /** Whether the app is seen now. */
  seen(): boolean;
}

/** Shows system notifications (nothing is shown when there is no way to). */
export type Notifier = (shown: readonly Shown[]) => Promise<void>;

export class Lifecycle {
  private running: Promise<void> | undefined;
  private again = false;
  private busy = false;
  private readonly watchers = new Set<(catchingUp: boolean) => void>();
  private readonly stops: (() => void)[] = [];

  /** `online`: whether the browser is online now (`navigator.onLine`). */
  constructor(
    private readonly api: LifecycleApi,
    private readonly notify: Notifier,
    private readonly online: () => boolean = () => true,
  ) {}

  /** Follows `signals` until `stop`; the app is seen when every source says so. */
  start(...signals: readonly Signals[]): this {
    for (const s of signals) {
      this.stops.push(
        s.listen((signal) => {
          if (signal === 'away') void this.api.suspend().catch(() => undefined);
          else void this.resume(() => signals.every((x) => x.seen()));
        }),
      );
    }
    return this;
  }

  stop(): void {
    for (const s of this.stops.splice(0)) s();
    this.watchers.clear();
  }

  /** Whether a catch-up is running (what the page shows as "Catching up"). */
  get catchingUp(): boolean {
    return this.busy;
  }

  /** Calls `watcher` with `catchingUp` now and on every change; returns the unsubscriber. */
  watch(watcher: (catchingUp: boolean) => void): () => void {
    this.watchers.add(watcher);
    watcher(this.busy);
    return () => {
      this.watchers.delete(watcher);
    };
  }

  /**
   * Catches up now; resolves when done. Signals during a catch-up run one more after it (the
   * network may have come back half-way), never two at once.
   */
  resume(seen: () => boolean = () => true): Promise<void> {
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.set(true);
    this.running = (async () => {
      try {
        do {
          this.again = false;
          const r = await this.api.resume(this.online()).catch(() => undefined);
          if (r?.ok === true) {
            const shown = toShow(r.value.notices, seen());
            if (shown.length > 0) await this.notify(shown).catch(() => undefined);
          }
        } while (this.askedAgain());
      } finally {
        this.running = undefined;
        this.set(false);
      }
    })();
    return this.running;
  }

  /** Not narrowed across the `await` as `this.again` would be. */
  private askedAgain(): boolean {
    return this.again;
  }

  private set(busy: boolean): void {
    if (this.busy === busy) return;
    this.busy = busy;
    for (const w of [...this.watchers]) w(busy);
  }
}

/** A browser's signals: page visibility, the page lifecycle's freeze and resume, `online`. */
export function domSignals(win: Window, doc: Document): Signals {
  return {
    seen: () => doc.visibilityState === 'visible',
    listen(on) {
      const visibility = () => {
        on(doc.visibilityState === 'visible' ? 'back' : 'away');
      };
      const away = () => {
        on('away');
      };
      const back = () => {
        on('back');
      };
      const online = () => {
        on('online');
      };
      doc.addEventListener('visibilitychange', visibility);
      doc.addEventListener('freeze', away);
      doc.addEventListener('resume', back);
      win.addEventListener('online', online);
      return () => {
        doc.removeEventListener('visibilitychange', visibility);
        doc.removeEventListener('freeze', away);
        doc.removeEventListener('resume', back);
        win.removeEventListener('online', online);
      };
    },
  };
}

/** Shows notifications with the browser's Notification API when it was allowed before (the app never asks). */
export const webNotifier: Notifier = (shown) => {
  if (typeof Notification !== 'function' || Notification.permission !== 'granted') return Promise.resolve();
  for (const s of shown) new Notification(s.title, { body: s.body, tag: 'conclave-away' });
  return Promise.resolve();
};
