/**
 * The RFC 9420 interoperability test vectors of the MLS working group (mls-implementations,
 * `test-vectors/passive-client-*.json`, the entries of our ciphersuite, kept beside this file):
 * a passive client joins from a Welcome and follows the given proposals and commits, and must
 * reach the given epoch authenticators. This runs tree hashing, parent-hash and leaf checks at
 * join, the secret tree and the key schedule — the parts our patches change — on the patched
 * library and on the untouched one.
 */
import { readFileSync } from 'node:fs';
import type { ClientState, RatchetTree } from 'ts-mls';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../protocol/ids.js';
import { type Mls, loadMls } from './scale.testkit.js';
import { CIPHERSUITE, withSyncHashes } from './suite.js';

interface Vector {
  readonly cipher_suite: number;
  readonly external_psks: readonly { psk_id: string; psk: string }[];
  readonly key_package: string;
  readonly signature_priv: string;
  readonly encryption_priv: string;
  readonly init_priv: string;
  readonly welcome: string;
  readonly ratchet_tree: string | null;
  readonly initial_epoch_authenticator: string;
  readonly epochs: readonly { proposals: readonly string[]; commit: string; epoch_authenticator: string }[];
}

const load = (name: string): Vector[] =>
  JSON.parse(readFileSync(new URL(`./vectors/${name}.suite1.json`, import.meta.url), 'utf8')) as Vector[];

const hex = (s: string): Uint8Array => {
  const b = fromHex(s);
  if (b === undefined) throw new Error('bad hex in a test vector');
  return b;
};

async function passiveClient(mls: Mls, v: Vector, syncHashes: boolean): Promise<string[]> {
  const base = await mls.getCiphersuiteImpl(mls.getCiphersuiteFromName(CIPHERSUITE));
  const cs = syncHashes ? withSyncHashes(base) : base;
  const psks: Record<string, Uint8Array> = {};
  for (const p of v.external_psks) psks[mls.bytesToBase64(hex(p.psk_id))] = hex(p.psk);
  const kp = mls.decodeMlsMessage(hex(v.key_package), 0)?.[0];
  const welcome = mls.decodeMlsMessage(hex(v.welcome), 0)?.[0];
  if (kp?.wireformat !== 'mls_key_package' || welcome?.wireformat !== 'mls_welcome')
    throw new Error('bad vector');
  const { decodeRatchetTree } = (await (mls === (await loadMls('patched'))
    ? import('ts-mls/ratchetTree.js')
    : import('ts-mls-stock/ratchetTree.js'))) as {
    decodeRatchetTree: (b: Uint8Array, o: number) => [RatchetTree, number] | undefined;
  };
  const tree = v.ratchet_tree === null ? undefined : decodeRatchetTree(hex(v.ratchet_tree), 0)?.[0];
  let state: ClientState = await mls.joinGroup(
    welcome.welcome,
    kp.keyPackage,
    {
      initPrivateKey: hex(v.init_priv),
      hpkePrivateKey: hex(v.encryption_priv),
      signaturePrivateKey: hex(v.signature_priv),
    },
    mls.makePskIndex(undefined, psks),
    cs,
    tree,
  );
  const seen = [toHex(state.keySchedule.epochAuthenticator)];
  for (const e of v.epochs) {
    for (const m of [...e.proposals, e.commit]) {
      const msg = mls.decodeMlsMessage(hex(m), 0)?.[0];
      if (msg?.wireformat !== 'mls_private_message' && msg?.wireformat !== 'mls_public_message') {
        throw new Error('bad vector message');
      }
      const r = await mls.processMessage(msg, state, mls.makePskIndex(state, psks), mls.acceptAll, cs);
      state = r.newState;
    }
    seen.push(toHex(state.keySchedule.epochAuthenticator));
  }
  return seen;
}

const expected = (v: Vector) => [
  v.initial_epoch_authenticator,
  ...v.epochs.map((e) => e.epoch_authenticator),
];

describe('RFC 9420 test vectors (passive client, our ciphersuite)', () => {
  for (const file of ['passive-client-welcome', 'passive-client-handling-commit']) {
    for (const which of ['patched', 'stock'] as const) {
      it(`${file}: ${which} ts-mls${which === 'patched' ? ' with synchronous hashes' : ''} reaches every epoch authenticator`, async () => {
        const mls = await loadMls(which);
        const vectors = load(file);
        expect(vectors.length).toBeGreaterThan(5);
        for (const v of vectors)
          expect(await passiveClient(mls, v, which === 'patched')).toEqual(expected(v));
      }, 120_000);
    }
  }
});
