/**
 * `conclave space settings --history sinceJoin` against a real relay: a member admitted after
 * the change reads what is said from its join on, and nothing from before; the members of
 * before read everything, including what the new member writes.
 */
import { describe, expect, it } from 'vitest';
import { okJson as json, relayAndHomes } from './testing/cli.js';

const { run } = relayAndHomes('conclave-history-');

describe('conclave space settings --history', () => {
  it('sinceJoin: a later member reads from its join on; everyone reads what it writes', async () => {
    const read = async (who: string) =>
      json<{ posts: { text: string }[] }>(await run(who, ['read', 'Club', 'general'])).posts.map(
        (p) => p.text,
      );
    json(await run('alice', ['identity', 'create', '--name', 'Alice', '--no-passphrase']));
    json(await run('bob', ['identity', 'create', '--name', 'Bob', '--no-passphrase']));
    json(await run('alice', ['space', 'create', 'Club']));
    json(await run('alice', ['channel', 'create', 'Club', 'general', '--type', 'chat']));
    json(await run('alice', ['post', 'Club', 'general', 'said before Bob came']));

    const changed = json<{ settings: { historyVisibility: string } }>(
      await run('alice', ['space', 'settings', 'Club', '--history', 'sinceJoin']),
    );
    expect(changed.settings.historyVisibility).toBe('sinceJoin');
    const bad = await run('alice', ['space', 'settings', 'Club', '--history', 'never']);
    expect(bad.code).toBe(1);

    const { link } = json<{ link: string }>(await run('alice', ['invite', 'create', 'Club']));
    expect(json<{ status: string }>(await run('bob', ['join', link])).status).toBe('pending');
    json(await run('alice', ['sync']));
    json(await run('bob', ['sync', '--wait', '10']));
    const info = json<{ settings: { historyVisibility: string }; channels: number }>(
      await run('bob', ['space', 'info', 'Club']),
    );
    expect(info.settings.historyVisibility).toBe('sinceJoin');
    expect(await read('bob')).toEqual([]);

    json(await run('alice', ['post', 'Club', 'general', 'welcome, Bob']));
    json(await run('bob', ['sync', '--wait', '5']));
    json(await run('bob', ['post', 'Club', 'general', 'thanks, Alice']));
    json(await run('alice', ['sync', '--wait', '5']));
    expect(await read('bob')).toEqual(['welcome, Bob', 'thanks, Alice']);
    expect(await read('alice')).toEqual(['said before Bob came', 'welcome, Bob', 'thanks, Alice']);
  });
});
