import { createHash, type Hash } from 'node:crypto';
import { MANIFEST_RECORD, type Manifest } from './manifest.js';
import { rollGear, type GearState } from './gear.js';

/**
 * Content-defined chunking (FastCDC with normalized chunking, level 2) and
 * SHA-256 hashing in one streaming pass. Boundaries depend only on the bytes
 * around them, so an insert in the middle of a file changes only the chunks
 * it touches.
 *
 * Chunk sizes scale with the file so that a manifest stays small and a large
 * file is not thousands more chunks to store and send (each is a file on the
 * server and a request): files up to 256 MiB use 64 KiB average chunks
 * (16 KiB min, 256 KiB max), so an edit sends little more than it changed;
 * a larger file is cut into about 2,048 chunks (1,448 to 2,896), its average
 * chunk the power of two nearest to a 2,048th of it, up to 4 MiB average
 * (16 MiB max). That halves the chunks of a 512 MiB file, and with them what
 * the server spends per chunk, which was most of its work. Each class borders
 * on the next, so a file growing across a boundary moves one class at a time.
 * A new version of a file keeps the size class of the one before it unless
 * its size moved further than the next class (see `chunkParamsFor`).
 */

export interface ChunkParams {
  readonly min: number;
  readonly avg: number;
  readonly max: number;
  /** Mask used below the average size (harder to match). */
  readonly maskS: number;
  /** Mask used above the average size (easier to match). */
  readonly maskL: number;
}

const BASE_AVG_BITS = 16;
const MAX_AVG_BITS = 22;
/** Files up to this size are cut in the base class. */
const BASE_CLASS_MAX_BYTES = 256 * 1024 * 1024;
/** Chunks a larger file is cut into, about. */
const LARGE_FILE_CHUNKS = 2048;
/** A previous version with fewer chunks tells its size class too loosely (by its average chunk). */
const CLASS_SEEN_FROM_CHUNKS = 64;

function topMask(bits: number): number {
  return (0xffffffff << (32 - bits)) | 0;
}

/** The size class of a file: log2 of its average chunk size. */
export function classFor(size: number): number {
  if (size <= BASE_CLASS_MAX_BYTES) return BASE_AVG_BITS;
  // Just above the base class's limit this is 17: one class up, not two.
  const bits = Math.round(Math.log2(size / LARGE_FILE_CHUNKS));
  return Math.min(MAX_AVG_BITS, Math.max(BASE_AVG_BITS + 1, bits));
}

/**
 * The chunking parameters for a file of `size` bytes. Given the manifest of
 * the file's previous version, its size class stays unless the new size
 * belongs two or more classes away: an edit that takes a file just across a
 * class boundary would otherwise cut it anew in chunks of another size, none
 * of them on the server, and the whole file would go up again. The class is
 * read off the manifest itself, so every device finds the same one,
 * whichever device cut it.
 */
export function chunkParamsFor(size: number, previous?: Manifest): ChunkParams {
  let bits = classFor(size);
  const before = previous && classOf(previous);
  if (before !== undefined && Math.abs(before - bits) <= 1) bits = before;
  const avg = 2 ** bits;
  return { min: avg / 4, avg, max: avg * 4, maskS: topMask(bits + 2), maskL: topMask(bits - 2) };
}

/**
 * The size class a manifest was cut with, or undefined when its chunks do
 * not tell. Every chunk but the last lies between the class's minimum and
 * maximum. Content without cut points (long runs of one byte) is cut at
 * exactly the maximum, which names the class; other content averages close
 * to the class's average chunk (within 15% for random bytes).
 */
export function classOf(m: Manifest): number | undefined {
  const n = m.byteLength / MANIFEST_RECORD;
  if (n < CLASS_SEEN_FROM_CHUNKS) return undefined;
  const view = new DataView(m.buffer, m.byteOffset, m.byteLength);
  let smallest = Infinity;
  let largest = 0;
  let total = 0;
  for (let i = 0; i < n - 1; i++) {
    const size = view.getUint32(i * MANIFEST_RECORD + 32);
    smallest = Math.min(smallest, size);
    largest = Math.max(largest, size);
    total += size;
  }
  const fits = (b: number) => smallest >= 2 ** b / 4 && largest <= 2 ** b * 4;
  // A chunk cut at a class's maximum is the largest there can be in that class.
  for (let b = BASE_AVG_BITS; b <= MAX_AVG_BITS; b++) if (fits(b) && largest === 2 ** b * 4) return b;
  const b = Math.round(Math.log2(total / (n - 1)));
  return b >= BASE_AVG_BITS && b <= MAX_AVG_BITS && fits(b) ? b : undefined;
}

/** A chunk found by the chunker: its SHA-256 (hex), size and offset in the file. */
export interface ChunkRef {
  hash: string;
  size: number;
  offset: number;
}

/** Result of chunking a whole file. */
export interface ChunkedFile {
  /** SHA-256 of the whole content, hex. */
  hash: string;
  size: number;
  chunks: ChunkRef[];
}

/** Told of each chunk as soon as it is found. */
export type ChunkListener = (chunk: ChunkRef) => void;

/**
 * Streaming chunker: feed buffers with `update`, then call `finish`. Memory use
 * is constant: no chunk is ever held in full.
 */
export class Chunker {
  private readonly params: ChunkParams;
  private readonly fileHash: Hash = createHash('sha256');
  private chunkHash: Hash = createHash('sha256');
  private readonly chunks: ChunkRef[] = [];
  /** The gear hash since the current chunk began. */
  private readonly rolling: GearState = { h: 0 };
  private len = 0;
  private offset = 0;

  /**
   * @param expectedSize the file size from stat, which picks the size class.
   * @param onChunk told of each chunk as it is found.
   * @param previous the manifest of the file's previous version, which keeps its size class.
   */
  constructor(expectedSize: number, private readonly onChunk?: ChunkListener, previous?: Manifest) {
    this.params = chunkParamsFor(expectedSize, previous);
  }

  update(buf: Uint8Array): void {
    this.fileHash.update(buf);
    const { min, avg, max, maskS, maskL } = this.params;
    const n = buf.length;
    let start = 0;
    let i = 0;
    const state = this.rolling;
    let len = this.len;
    while (i < n) {
      // Skip the first `min` bytes of a chunk: no cut point can lie there.
      if (len < min) {
        const skip = Math.min(min - len, n - i);
        len += skip;
        i += skip;
        continue;
      }
      // Below the average size the harder mask applies, from there on the easier
      // one; at the maximum size the chunk ends anyway. Each loop runs to the
      // end of its stretch or of the buffer, with the length implied by `i`.
      const base = i - len;
      const below = len < avg - 1;
      const end = i + Math.min((below ? avg - 1 : max) - len, n - i);
      const mask = below ? maskS : maskL;
      i = rollGear(buf, i, end, state, mask);
      const cut = (state.h & mask) === 0;
      len = i - base;
      if (cut || len >= max) {
        this.chunkHash.update(buf.subarray(start, i));
        this.len = len;
        this.emit();
        start = i;
        len = 0;
      }
    }
    this.len = len;
    if (start < n) this.chunkHash.update(buf.subarray(start, n));
  }

  private emit(): void {
    const chunk = { hash: this.chunkHash.digest('hex'), size: this.len, offset: this.offset };
    this.chunks.push(chunk);
    this.onChunk?.(chunk);
    this.offset += this.len;
    this.chunkHash = createHash('sha256');
    this.rolling.h = 0;
    this.len = 0;
  }

  finish(): ChunkedFile {
    if (this.len > 0) this.emit();
    return { hash: this.fileHash.digest('hex'), size: this.offset, chunks: this.chunks };
  }
}

/** Chunks an in-memory buffer (tests and small content). */
export function chunkBuffer(buf: Uint8Array, previous?: Manifest): ChunkedFile {
  const c = new Chunker(buf.length, undefined, previous);
  c.update(buf);
  return c.finish();
}

/** SHA-256 of bytes, hex. */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** SHA-256 of the empty content. */
export const EMPTY_HASH = sha256Hex(new Uint8Array(0));
