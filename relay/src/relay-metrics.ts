/** The relay's metric set (Prometheus names), shared by the protocol handlers and the node. */
import { Metrics } from './metrics.js';

export function relayMetrics(): {
  registry: Metrics;
  appends: ReturnType<Metrics['counter']>;
  appendBytes: ReturnType<Metrics['counter']>;
  pushes: ReturnType<Metrics['counter']>;
  refusals: ReturnType<Metrics['counter']>;
  blobBytes: ReturnType<Metrics['counter']>;
  gossip: ReturnType<Metrics['counter']>;
  replications: ReturnType<Metrics['counter']>;
  deadConnections: ReturnType<Metrics['counter']>;
} {
  const registry = new Metrics();
  return {
    registry,
    appends: registry.counter(
      'conclave_relay_appends_total',
      'Mailbox appends made durable, by kind (append, replicate, gossip).',
    ),
    appendBytes: registry.counter(
      'conclave_relay_append_bytes_total',
      'Bytes of new mailbox messages stored.',
    ),
    pushes: registry.counter('conclave_relay_pushes_total', 'Mailbox messages pushed to subscribers.'),
    refusals: registry.counter(
      'conclave_relay_refusals_total',
      'Requests refused, by reason (wire status name).',
    ),
    blobBytes: registry.counter(
      'conclave_relay_blob_bytes_total',
      'Blob chunk bytes stored (in) and served (out).',
    ),
    gossip: registry.counter(
      'conclave_relay_gossip_messages_total',
      'Backbone gossip messages by outcome (published, direct-only, accepted, duplicate, rejected) and topic prefix.',
    ),
    replications: registry.counter(
      'conclave_relay_replications_total',
      'Copies sent to replica relays, by outcome.',
    ),
    deadConnections: registry.counter(
      'conclave_relay_dead_connections_total',
      'Connections closed because the peer did not answer a ping in time.',
    ),
  };
}

export type RelayMetrics = ReturnType<typeof relayMetrics>;
