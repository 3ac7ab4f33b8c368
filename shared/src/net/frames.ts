/**
 * Length-prefixed frames over a libp2p stream: an unsigned varint length, then that many bytes
 * (the framing js-libp2p protocols use). Frames are cut from the stream's 'message' events as
 * they arrive; a length over the limit aborts the stream before any of it is buffered.
 */
import type { Stream } from '@libp2p/interface';
import { Uint8ArrayList } from 'uint8arraylist';

export type FrameChannelError = 'too-large' | 'bad-length' | 'closed';

/** One side of a framed stream. */
export interface FrameChannel {
  /**
   * Queues `frame` for sending, in order. Returns false when the transport's buffer is full:
   * the caller should wait for `drained()` before sending more (frames are still kept).
   */
  send(frame: Uint8Array): boolean;
  /**
   * Like `send` for the frame made of `head` then `body`, without joining them first (a relay
   * pushes one message's bytes to many subscribers, each with its own head).
   */
  sendParts(head: Uint8Array, body: Uint8Array): boolean;
  /** Resolves when the transport can take more; rejects when the stream closed. */
  drained(): Promise<void>;
  /** True when `send` can be called now without waiting for `drained()`. */
  readonly writable: boolean;
  /** Stops reading: the remote is asked to pause (yamux window) until `resume()`. */
  pause(): void;
  resume(): void;
  /** Closes the writing side gracefully. */
  close(): Promise<void>;
  /** Resets the stream. */
  abort(reason: string): void;
  readonly open: boolean;
}

export interface FrameHandlers {
  onFrame(frame: Uint8Array): void;
  /** The stream is gone; `reason` is set when it was not a clean close. */
  onClose(reason?: string): void;
}

/** Bytes. Queued frames are sent at once past this size, without waiting for the turn to end. */
const COALESCE_BYTES = 64 * 1024;

/** Runs `f` after the current turn of the event loop (`setImmediate` in Node, a microtask elsewhere). */
const later: (f: () => void) => void =
  (globalThis as { setImmediate?: (f: () => void) => void }).setImmediate ?? queueMicrotask;

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Uint8Array.from(out);
}

/** Wraps `stream`; `handlers.onFrame` gets each whole frame, `maxFrameBytes` bounds each. */
export function frameChannel(stream: Stream, maxFrameBytes: number, handlers: FrameHandlers): FrameChannel {
  const buffer = new Uint8ArrayList();
  let closed = false;
  let expected = -1;

  const finish = (reason?: string): void => {
    if (closed) return;
    closed = true;
    stream.removeEventListener('message', onMessage);
    handlers.onClose(reason);
  };

  const fail = (reason: FrameChannelError, detail: string): void => {
    buffer.consume(buffer.byteLength);
    stream.abort(new Error(`${reason}: ${detail}`));
    finish(reason);
  };

  /** Reads a varint length at the front of the buffer: -1 when incomplete, -2 when malformed. */
  const readLength = (): { length: number; size: number } => {
    let n = 0;
    let mul = 1;
    for (let i = 0; i < Math.min(buffer.byteLength, 5); i++) {
      const b = buffer.get(i);
      n += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return { length: n, size: i + 1 };
      mul *= 128;
    }
    return { length: buffer.byteLength >= 5 ? -2 : -1, size: 0 };
  };

  const isClosed = (): boolean => closed;

  // Frames sent in one turn of the event loop leave together: one muxer frame, one encryption
  // and one WebSocket message for a burst instead of one each.
  let pending: Uint8ArrayList | undefined;
  const flush = (): void => {
    const list = pending;
    pending = undefined;
    if (list === undefined || closed || stream.writeStatus !== 'writable') return;
    try {
      stream.send(list);
    } catch {
      finish('closed');
    }
  };

  const onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
    if (closed) return;
    buffer.append(evt.data);
    // `handlers.onFrame` may close the channel: read `closed` through a call each round.
    while (!isClosed()) {
      if (expected < 0) {
        const { length, size } = readLength();
        if (length === -1) return;
        if (length === -2) {
          fail('bad-length', 'length prefix over 5 bytes');
          return;
        }
        if (length > maxFrameBytes) {
          fail('too-large', `frame of ${length} bytes over ${maxFrameBytes}`);
          return;
        }
        buffer.consume(size);
        expected = length;
      }
      if (buffer.byteLength < expected) return;
      const frame = buffer.subarray(0, expected);
      buffer.consume(expected);
      expected = -1;
      handlers.onFrame(frame);
    }
  };

  stream.addEventListener('message', onMessage);
  stream.addEventListener(
    'close',
    (evt) => {
      finish(evt.error === undefined ? undefined : evt.error.message);
    },
    { once: true },
  );

  const queue = (...parts: Uint8Array[]): boolean => {
    if (closed || stream.writeStatus !== 'writable') return false;
    if (pending === undefined) {
      pending = new Uint8ArrayList();
      later(flush);
    }
    pending.append(...parts);
    if (pending.byteLength >= COALESCE_BYTES) flush();
    return !stream.writableNeedsDrain;
  };

  return {
    send(frame) {
      return queue(varint(frame.length), frame);
    },
    sendParts(head, body) {
      return queue(varint(head.length + body.length), head, body);
    },
    async drained() {
      flush();
      if (closed) throw new Error('closed');
      if (!stream.writableNeedsDrain) return;
      await stream.onDrain();
    },
    pause() {
      stream.pause();
    },
    resume() {
      stream.resume();
    },
    async close() {
      flush();
      if (closed) return;
      try {
        await stream.close();
      } catch {
        // The remote reset the stream meanwhile: it is closed either way.
      }
      finish();
    },
    abort(reason) {
      if (closed) return;
      stream.abort(new Error(reason));
      finish(reason);
    },
    get open() {
      return !closed;
    },
    get writable() {
      return !closed && !stream.writableNeedsDrain;
    },
  };
}
