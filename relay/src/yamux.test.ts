/**
 * The yamux patch (patches/@chainsafe+libp2p-yamux+8.0.1.patch): a receiver grants more window
 * once half of it is used, like go-yamux, instead of answering every data frame with a window
 * update. Stock 8.0.1 sends one 12-byte update back per frame received, and each is a message of
 * its own through the encryption and the socket, on both sides of every relay connection.
 */
import { yamux } from '@chainsafe/libp2p-yamux';
import { multiaddrConnectionPair } from '@libp2p/utils';
import { describe, expect, it } from 'vitest';

describe('yamux window updates', () => {
  it('sends back no window update for 200 small messages that fill less than half the window', async () => {
    const [outbound, inbound] = multiaddrConnectionPair();
    const factory = yamux()();
    const client = factory.createStreamMuxer(outbound);
    const server = factory.createStreamMuxer(inbound);
    let backBytes = 0;
    outbound.addEventListener('message', (evt) => {
      backBytes += evt.data.byteLength;
    });
    let received = 0;
    const arrived = new Promise<void>((resolve) => {
      server.addEventListener('stream', (evt) => {
        evt.detail.addEventListener('message', (m) => {
          received += m.data.byteLength;
          if (received >= 200 * 100) resolve();
        });
      });
    });
    const stream = await client.createStream();
    for (let i = 0; i < 200; i++) {
      stream.send(new Uint8Array(100).fill(i));
      await new Promise((r) => setImmediate(r));
    }
    await arrived;
    await new Promise((r) => setTimeout(r, 50));
    expect(received).toBe(20_000);
    // Only the stream's opening acknowledgement and a few muxer frames come back (108 bytes
    // measured); stock 8.0.1 sends a window update per message as well (2,400 bytes more).
    expect(backBytes).toBeLessThan(240);
    await client.close();
    await server.close();
  });
});
