/** What two members of an MLS group at the same epoch must agree on (tests and benches). */
import type { ClientState } from 'ts-mls';

/** The secrets two members must agree on at the same epoch. */
export function epochSecrets(state: ClientState): Record<string, string> {
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  const ks = state.keySchedule;
  return {
    epoch: state.groupContext.epoch.toString(),
    treeHash: hex(state.groupContext.treeHash),
    confirmedTranscriptHash: hex(state.groupContext.confirmedTranscriptHash),
    epochAuthenticator: hex(ks.epochAuthenticator),
    exporterSecret: hex(ks.exporterSecret),
    senderDataSecret: hex(ks.senderDataSecret),
    confirmationKey: hex(ks.confirmationKey),
    membershipKey: hex(ks.membershipKey),
    resumptionPsk: hex(ks.resumptionPsk),
    initSecret: hex(ks.initSecret),
    externalSecret: hex(ks.externalSecret),
  };
}
