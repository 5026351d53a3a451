import { MANIFEST_RECORD, type Manifest } from '@keepsync/protocol';

/**
 * The set of chunks the index refers to, kept as the first 64 bits of each
 * hash in one typed array: 8 bytes a chunk instead of a string each. Two
 * chunks sharing a 64-bit prefix only make the collector keep a garbage chunk
 * longer; a referenced chunk always tests as marked.
 */
export class ChunkMarks {
  private keys: BigUint64Array;
  private count = 0;
  private sealed = false;

  constructor(expected: number) {
    this.keys = new BigUint64Array(Math.max(1024, expected));
  }

  /** Marks every chunk of a manifest. */
  addManifest(m: Manifest): void {
    if (this.sealed) throw new Error('bug: marks added after sealing');
    const view = new DataView(m.buffer, m.byteOffset, m.byteLength);
    for (let o = 0; o < m.byteLength; o += MANIFEST_RECORD) {
      if (this.count === this.keys.length) this.grow();
      this.keys[this.count++] = view.getBigUint64(o);
    }
  }

  /** Sorts and deduplicates; afterwards only `has` may be called. */
  seal(): void {
    const sorted = this.keys.subarray(0, this.count).sort();
    let n = 0;
    for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[n - 1]) sorted[n++] = sorted[i];
    this.keys = sorted.slice(0, n);
    this.count = n;
    this.sealed = true;
  }

  /** Distinct marked chunks (after sealing). */
  get size(): number {
    return this.count;
  }

  /** True when the chunk with this hex hash is marked (or shares its 64-bit prefix with one that is). */
  has(hash: string): boolean {
    if (!this.sealed) throw new Error('bug: marks read before sealing');
    const key = BigInt(`0x${hash.slice(0, 16)}`);
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const k = this.keys[mid];
      if (k === key) return true;
      if (k < key) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  private grow(): void {
    const next = new BigUint64Array(this.keys.length * 2);
    next.set(this.keys);
    this.keys = next;
  }
}
