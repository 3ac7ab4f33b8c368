/**
 * Accepted ops by signature, for duplicate detection (ARCHITECTURE.md section 2: the same
 * signed op sealed again is a duplicate). Keeping every signature as a string key would cost
 * about 110 bytes per op; this keeps a 64-bit fingerprint (four bytes of each half of the
 * signature, which are pseudo-random) and the op's index, 12 bytes a slot, and the caller
 * confirms a hit by comparing the real signatures — so a collision costs a lookup, never a
 * wrong answer.
 */
const NONE: readonly number[] = Object.freeze([]);

export class SignatureIndex {
  private hi = new Uint32Array(1024);
  private lo = new Uint32Array(1024);
  private val = new Int32Array(1024).fill(-1);
  private size = 0;

  private fingerprint(sig: Uint8Array): [number, number] {
    const v = new DataView(sig.buffer, sig.byteOffset, sig.byteLength);
    return [v.getUint32(0), v.getUint32(32)];
  }

  /** Indices of accepted ops whose signature may equal `sig` (confirm by comparing). */
  candidates(sig: Uint8Array): readonly number[] {
    const [h, l] = this.fingerprint(sig);
    const mask = this.val.length - 1;
    let out: number[] | undefined;
    for (let s = (h ^ l) & mask; this.val[s] !== -1; s = (s + 1) & mask) {
      if (this.hi[s] === h && this.lo[s] === l) (out ??= []).push(this.val[s] as number);
    }
    return out ?? NONE;
  }

  add(sig: Uint8Array, idx: number): void {
    const [h, l] = this.fingerprint(sig);
    this.addPrint(h, l, idx);
  }

  private addPrint(h: number, l: number, idx: number): void {
    if ((this.size + 1) * 2 > this.val.length) this.grow();
    this.put(h, l, idx);
    this.size++;
  }

  /** The fingerprint of each of ops `0 … count-1` (two numbers an op), for a state checkpoint. */
  fingerprints(count: number): Uint32Array {
    const out = new Uint32Array(count * 2);
    for (let s = 0; s < this.val.length; s++) {
      const v = this.val[s] as number;
      if (v === -1 || v >= count) continue;
      out[2 * v] = this.hi[s] as number;
      out[2 * v + 1] = this.lo[s] as number;
    }
    return out;
  }

  /** The index of {@link fingerprints}, built as `add` built it: op by op, in index order. */
  static fromFingerprints(prints: Uint32Array): SignatureIndex {
    const x = new SignatureIndex();
    for (let i = 0; 2 * i + 1 < prints.length; i++)
      x.addPrint(prints[2 * i] as number, prints[2 * i + 1] as number, i);
    return x;
  }

  private put(h: number, l: number, idx: number): void {
    const mask = this.val.length - 1;
    let s = (h ^ l) & mask;
    while (this.val[s] !== -1) s = (s + 1) & mask;
    this.hi[s] = h;
    this.lo[s] = l;
    this.val[s] = idx;
  }

  private grow(): void {
    const { hi, lo, val } = this;
    this.hi = new Uint32Array(val.length * 2);
    this.lo = new Uint32Array(val.length * 2);
    this.val = new Int32Array(val.length * 2).fill(-1);
    for (let s = 0; s < val.length; s++)
      if (val[s] !== -1) this.put(hi[s] as number, lo[s] as number, val[s] as number);
  }
}
