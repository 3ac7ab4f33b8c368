/**
 * `conclave serve`: an admin's device that stays online admits a join request as it arrives,
 * logs one JSON line per event, pins attachments it sees, keeps the home locked while it runs,
 * and stops cleanly on SIGTERM.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { okJson as json, relayAndHomes, startConclave } from './testing/cli.js';

const { home, run, relay } = relayAndHomes('conclave-serve-');

describe('conclave serve', () => {
  it('admits a joiner live, logs each event as a JSON line, pins attachments, and stops on SIGTERM', async () => {
    json(await run('alice', ['identity', 'create', '--name', 'Alice', '--no-passphrase']));
    json(await run('zoe', ['identity', 'create', '--name', 'Zoe', '--no-passphrase']));
    json(await run('alice', ['space', 'create', 'Lounge']));
    json(await run('alice', ['channel', 'create', 'Lounge', 'chat', '--type', 'chat']));
    json(
      await run('alice', [
        'space',
        'settings',
        'Lounge',
        '--history',
        'all',
        '--description',
        'a quiet room',
      ]),
    );
    const { link } = json<{ link: string }>(
      await run('alice', ['invite', 'create', 'Lounge', '--uses', '1']),
    );

    const serve = startConclave(home('alice'), ['serve', '--json'], { relays: [relay().multiaddr] });
    try {
      const ready = JSON.parse(await serve.waitFor((l) => l.includes('"event":"ready"'))) as {
        outboxLeft: number;
      };
      expect(ready.outboxLeft).toBe(0);

      // The home is Alice's serve process's while it runs.
      const busy = await run('alice', ['space', 'list']);
      expect(busy.code).toBe(4);
      expect(busy.json).toMatchObject({ error: { code: 'home-busy' } });

      // Zoe joins and waits: the serving device admits her while she waits.
      const joined = json<{ status: string; name: string }>(await run('zoe', ['join', link, '--wait', '60']));
      expect(joined).toMatchObject({ status: 'joined', name: 'Lounge' });
      const admission = JSON.parse(
        await serve.waitFor((l) => l.includes('"event":"admission"') && l.includes('"result":"admitted"')),
      ) as { userId: string };
      const zoe = json<{ userId: string }>(await run('zoe', ['identity', 'show']));
      expect(admission.userId).toBe(zoe.userId);

      // Zoe posts with an attachment: the serving device accepts it live and pins the attachment.
      const file = join(home('zoe'), '..', 'notes.txt');
      writeFileSync(file, randomBytes(70_000));
      const post = json<{ postId: string }>(
        await run('zoe', ['post', 'Lounge', 'chat', 'my notes', '--file', file]),
      );
      await serve.waitFor((l) => l.includes('"event":"accepted"') && l.includes('"op":"CreatePost"'));
      const pinned = JSON.parse(await serve.waitFor((l) => l.includes('"event":"pinned"'))) as {
        size: number;
      };
      expect(pinned.size).toBe(70_000);
      expect(post.postId).toMatch(/^z/);
      for (const l of serve.lines) expect(() => JSON.parse(l) as unknown).not.toThrow();
    } finally {
      expect(await serve.stop()).toBe(0);
    }
    expect(serve.lines.at(-1)).toBe('{"stopped":true}');

    // The home is free again, and the settings and the new member are there.
    const info = json<{ members: number; settings: { description: string; historyVisibility: string } }>(
      await run('alice', ['space', 'info', 'Lounge']),
    );
    expect(info.members).toBe(2);
    expect(info.settings).toEqual({ description: 'a quiet room', historyVisibility: 'all' });
  });
});
