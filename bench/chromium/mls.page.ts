/**
 * The page side of the MLS benchmark in Chromium: joins a Space from a Welcome and processes a
 * commit with the same (patched) ts-mls and Conclave configuration the app runs, timing each.
 * Bundled by `bench/chromium/mls-in-chromium.ts`; inputs arrive as base64 strings.
 */
import {
  type ClientState,
  decodeGroupState,
  decodeMlsMessage,
  emptyPskIndex,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processMessage,
} from 'ts-mls';
import { webCryptoEd25519 } from '../../shared/src/crypto/ed25519-webcrypto.js';
import { CIPHERSUITE, clientConfig } from '../../shared/src/mls/suite.js';

export interface PageInput {
  /** The Welcome (an MLS message) and the joiner's key package message and private keys. */
  readonly welcome: string;
  readonly keyPackage: string;
  readonly initPrivateKey: string;
  readonly hpkePrivateKey: string;
  readonly signaturePrivateKey: string;
  /** An existing member's encoded state and a commit for its epoch (MLS message). */
  readonly memberState: string;
  readonly commit: string;
}

export interface PageResult {
  readonly joinMs: number;
  readonly processCommitMs: number;
  readonly joinedEpoch: string;
  readonly committedEpoch: string;
  readonly userAgent: string;
}

const b64 = (s: string): Uint8Array => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

async function run(input: PageInput): Promise<PageResult> {
  const cs = await getCiphersuiteImpl(getCiphersuiteFromName(CIPHERSUITE));
  const config = clientConfig(webCryptoEd25519(), 4);
  const kp = decodeMlsMessage(b64(input.keyPackage), 0)?.[0];
  const welcome = decodeMlsMessage(b64(input.welcome), 0)?.[0];
  if (kp?.wireformat !== 'mls_key_package' || welcome?.wireformat !== 'mls_welcome')
    throw new Error('bad input');
  let t = performance.now();
  const joined = await joinGroup(
    welcome.welcome,
    kp.keyPackage,
    {
      initPrivateKey: b64(input.initPrivateKey),
      hpkePrivateKey: b64(input.hpkePrivateKey),
      signaturePrivateKey: b64(input.signaturePrivateKey),
    },
    emptyPskIndex,
    cs,
    undefined,
    undefined,
    config,
  );
  const joinMs = performance.now() - t;

  const decoded = decodeGroupState(b64(input.memberState), 0);
  if (decoded === undefined) throw new Error('bad member state');
  const state: ClientState = { ...decoded[0], clientConfig: config };
  const msg = decodeMlsMessage(b64(input.commit), 0)?.[0];
  if (msg?.wireformat !== 'mls_private_message' && msg?.wireformat !== 'mls_public_message') {
    throw new Error('bad commit');
  }
  t = performance.now();
  const r = await processMessage(msg, state, emptyPskIndex, () => 'accept', cs);
  const processCommitMs = performance.now() - t;
  return {
    joinMs,
    processCommitMs,
    joinedEpoch: joined.groupContext.epoch.toString(),
    committedEpoch: r.newState.groupContext.epoch.toString(),
    userAgent: navigator.userAgent,
  };
}

(globalThis as { conclaveMlsBench?: typeof run }).conclaveMlsBench = run;
