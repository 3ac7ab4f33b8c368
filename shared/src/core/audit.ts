/**
 * The audit log as a verifiable bundle (ARCHITECTURE.md section 5): the signed bytes of every
 * moderation op, which anyone holding them can check without trusting whoever exported them.
 */
import type { Ed25519 } from '../ports/crypto.js';
import { verifyDeviceCert } from '../protocol/identity.js';
import { CodecError } from '../protocol/errors.js';
import { type SignedOp, type SpaceId, decodeOp, equalBytes } from '../protocol/index.js';
import { unsignedBytes } from './replica.js';

export type AuditCheck =
  | { readonly ok: true; readonly ops: readonly SignedOp[] }
  | {
      readonly ok: false;
      /** Position in the bundle of the first entry that failed. */
      readonly index: number;
      readonly reason: 'malformed' | 'wrong-space' | 'bad-signature';
    };

/**
 * Checks every entry of an audit bundle: canonical op bytes of `space`, a device certificate
 * signed by the user key it names, and the op signed by that device. Never throws for bad input.
 */
export async function verifyAuditBundle(
  ed: Ed25519,
  space: SpaceId,
  bundle: readonly Uint8Array[],
): Promise<AuditCheck> {
  const ops: SignedOp[] = [];
  for (const [index, bytes] of bundle.entries()) {
    let op: SignedOp;
    try {
      op = decodeOp(bytes);
    } catch (e) {
      if (e instanceof CodecError) return { ok: false, index, reason: 'malformed' };
      throw e;
    }
    if (!equalBytes(op.space, space)) return { ok: false, index, reason: 'wrong-space' };
    const certOk = await verifyDeviceCert(ed, op.author, op.cert);
    if (!certOk || !(await ed.verify(op.author, unsignedBytes(bytes), op.sig))) {
      return { ok: false, index, reason: 'bad-signature' };
    }
    ops.push(op);
  }
  return { ok: true, ops };
}
