import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { testSpaceId } from '../core/testkit.js';
import { webRng } from '../ports/env.js';
import {
  type InviteLink,
  formatInviteLink,
  inviteMailbox,
  openJoinAnswer,
  openJoinRequest,
  parseInviteLink,
  sealJoinAnswer,
  sealJoinRequest,
} from './invite.js';
import { fromBase64Url, toBase64Url } from '../protocol/base64url.js';
import { aead } from './mls.testkit.js';

const link: InviteLink = {
  space: testSpaceId(3),
  secret: new Uint8Array(32).fill(7),
  relays: ['/ip4/127.0.0.1/tcp/9090/ws/p2p/12D3KooWExample'],
  expiresAtMs: 1_800_000_000_000,
};

describe('invite links', () => {
  it('round-trip in the app form and the web fragment form', () => {
    const app = formatInviteLink(link);
    expect(app.startsWith('conclave://join/')).toBe(true);
    expect(parseInviteLink(app)).toEqual({ ok: true, link });
    const web = formatInviteLink(link, 'https://conclave.example/');
    expect(web.startsWith('https://conclave.example/#join=')).toBe(true);
    expect(parseInviteLink(`  ${web}\n`)).toEqual({ ok: true, link });
    expect(parseInviteLink(app.replace('conclave://', 'web+conclave://'))).toEqual({ ok: true, link });
  });

  it('base64url is exact both ways and refuses non-canonical text', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
        expect(fromBase64Url(toBase64Url(b))).toEqual(b);
      }),
    );
    expect(fromBase64Url('AA')).toEqual(new Uint8Array([0]));
    expect(fromBase64Url('AB')).toBeUndefined(); // unused low bits set
    expect(fromBase64Url('A')).toBeUndefined();
    expect(fromBase64Url('AA==')).toBeUndefined();
  });

  it('says what is wrong with a bad link, for every kind of damage', () => {
    const good = formatInviteLink(link);
    const payload = good.slice('conclave://join/'.length);
    const code = (text: string) => {
      const r = parseInviteLink(text);
      return r.ok ? 'ok' : r.code;
    };
    expect(code('hello')).toBe('not-an-invite');
    expect(code('https://example.com/#other=abc')).toBe('not-an-invite');
    expect(code('conclave://join/A')).toBe('bad-encoding');
    // One changed character: the checksum catches it.
    const i = 20;
    const swapped = payload.slice(0, i) + (payload[i] === 'A' ? 'B' : 'A') + payload.slice(i + 1);
    expect(code(`conclave://join/${swapped}`)).toBe('bad-checksum');
    // Cut short.
    expect(code(`conclave://join/${payload.slice(0, -6)}`)).toBe('bad-checksum');
    // Another version byte.
    const bytes = fromBase64Url(payload) as Uint8Array;
    const v2 = bytes.slice();
    v2[0] = 2;
    expect(code(`conclave://join/${toBase64Url(v2)}`)).toBe('unsupported-version');
    // Every random payload is refused with a reason, never a throw.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        const r = parseInviteLink(`conclave://join/${toBase64Url(b)}`);
        expect(r.ok).toBe(false);
      }),
    );
  });

  it('a join request opens only with the invite secret; its answer only with the reply key', async () => {
    const request = {
      keyPackage: webRng.randomBytes(300),
      replyTo: webRng.randomBytes(32),
      replyKey: webRng.randomBytes(32),
    };
    const sealed = await sealJoinRequest(aead, webRng, link.secret, request);
    expect(await openJoinRequest(aead, link.secret, sealed)).toEqual({ ok: true, request });
    // A relay knows the mailbox address but not the secret.
    expect(inviteMailbox(link.secret)).toHaveLength(32);
    const forged = await sealJoinRequest(aead, webRng, webRng.randomBytes(32), request);
    expect(await openJoinRequest(aead, link.secret, forged)).toMatchObject({ ok: false, reason: 'forged' });
    expect(await openJoinRequest(aead, link.secret, webRng.randomBytes(5))).toMatchObject({
      ok: false,
      reason: 'malformed',
    });
    const refusal = await sealJoinAnswer(aead, webRng, request, {
      kind: 'refused',
      reason: 'expired',
      detail: 'late',
    });
    expect(await openJoinAnswer(aead, request, refusal)).toEqual({
      kind: 'refused',
      reason: 'expired',
      detail: 'late',
    });
    const other = { ...request, replyKey: webRng.randomBytes(32) };
    expect(await openJoinAnswer(aead, other, refusal)).toBeUndefined();
    expect(await openJoinAnswer(aead, request, webRng.randomBytes(64))).toBeUndefined();
  });
});
