/**
 * A peer in a process of its own for tests that stop it (SIGSTOP): connects to the relay given
 * as the first argument, subscribes to one address, prints `ready` and holds the connection.
 */
import { libp2pConnector } from '../../../shared/src/net/libp2p.js';
import { address } from './util.js';

const relay = process.argv[2];
if (relay === undefined) {
  process.stderr.write('usage: held-peer.ts <relay multiaddr>\n');
  process.exit(2);
}
const node = await libp2pConnector();
const link = await node.connect(relay);
link.subscribe(address(77), 0, {
  onMessage: () => undefined,
  onLive: () => undefined,
  onEnd: () => undefined,
});
process.stdout.write('ready\n');
setInterval(() => undefined, 60_000);
