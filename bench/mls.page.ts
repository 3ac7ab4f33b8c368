/**
 * The page half of bench:mls's browser step: bundled (esbuild, IIFE, global `mlsBench`) and
 * loaded into Chromium, it joins a group from a Welcome and processes one commit with the
 * patched ts-mls and the browser's WebCrypto, and reports the times and the resulting epoch
 * secrets (the Node side checks they match the committer's).
 */
import { type ClientState, decodeMlsMessage, emptyPskIndex, joinGroup, processMessage } from 'ts-mls';
import { webCryptoEd25519 } from '../shared/src/crypto/ed25519-webcrypto.js';
import { epochSecrets } from '../shared/src/mls/secrets.testkit.js';
import { ciphersuite, clientConfig } from '../shared/src/mls/suite.js';

export interface PageInput {
  /** Base64 of each: the Welcome, the joiner's key package message, the commit after it. */
  readonly welcome: string;
  readonly keyPackage: string;
  readonly initPrivateKey: string;
  readonly hpkePrivateKey: string;
  readonly signaturePrivateKey: string;
  readonly commit: string;
}

export interface PageResult {
  readonly joinMs: number;
  readonly processMs: number;
  readonly secrets: Record<string, string>;
  readonly userAgent: string;
}

function bytes(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export async function run(input: PageInput): Promise<PageResult> {
  const cs = await ciphersuite();
  const config = clientConfig(webCryptoEd25519(), 4);
  const kp = decodeMlsMessage(bytes(input.keyPackage), 0)?.[0];
  if (kp?.wireformat !== 'mls_key_package') throw new Error('not a key package');
  const t0 = performance.now();
  const w = decodeMlsMessage(bytes(input.welcome), 0)?.[0];
  if (w?.wireformat !== 'mls_welcome') throw new Error('not a Welcome');
  const joined: ClientState = await joinGroup(
    w.welcome,
    kp.keyPackage,
    {
      initPrivateKey: bytes(input.initPrivateKey),
      hpkePrivateKey: bytes(input.hpkePrivateKey),
      signaturePrivateKey: bytes(input.signaturePrivateKey),
    },
    emptyPskIndex,
    cs,
    undefined,
    undefined,
    config,
  );
  const t1 = performance.now();
  const c = decodeMlsMessage(bytes(input.commit), 0)?.[0];
  if (c?.wireformat !== 'mls_private_message' && c?.wireformat !== 'mls_public_message') {
    throw new Error('not a handshake message');
  }
  const r = await processMessage(c, joined, emptyPskIndex, () => 'accept', cs);
  const t2 = performance.now();
  if (r.kind !== 'newState') throw new Error('commit not applied');
  return {
    joinMs: t1 - t0,
    processMs: t2 - t1,
    secrets: epochSecrets(r.newState),
    userAgent: navigator.userAgent,
  };
}
