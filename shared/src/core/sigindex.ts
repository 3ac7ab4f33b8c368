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
    if ((this.size + 1) * 2 > this.val.length) this.grow();
    const [h, l] = this.fingerprint(sig);
    this.put(h, l, idx);
    this.size++;
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
