import { ProtocolError } from './errors.js';
import { MAX_CHUNK_SIZE, MAX_MANIFEST_CHUNKS } from './limits.js';

/**
 * A file's chunk list, packed: per chunk 32 bytes of SHA-256 then 4 bytes of
 * size (big-endian). The same bytes travel on the wire and rest in the index.
 */
export type Manifest = Uint8Array;

export const MANIFEST_RECORD = 36;

export interface ManifestChunk {
  hash: string;
  size: number;
}

export function packManifest(chunks: readonly ManifestChunk[]): Manifest {
  const out = new Uint8Array(chunks.length * MANIFEST_RECORD);
  const view = new DataView(out.buffer);
  chunks.forEach((c, i) => {
    out.set(Buffer.from(c.hash, 'hex'), i * MANIFEST_RECORD);
    view.setUint32(i * MANIFEST_RECORD + 32, c.size);
  });
  return out;
}

export function unpackManifest(m: Manifest): ManifestChunk[] {
  const view = new DataView(m.buffer, m.byteOffset, m.byteLength);
  const out: ManifestChunk[] = [];
  for (let o = 0; o < m.byteLength; o += MANIFEST_RECORD) {
    out.push({ hash: Buffer.from(m.subarray(o, o + 32)).toString('hex'), size: view.getUint32(o + 32) });
  }
  return out;
}

export function manifestLength(m: Manifest): number {
  return m.byteLength / MANIFEST_RECORD;
}

/** Total content size described by a manifest. */
export function manifestSize(m: Manifest): number {
  let total = 0;
  const view = new DataView(m.buffer, m.byteOffset, m.byteLength);
  for (let o = 32; o < m.byteLength; o += MANIFEST_RECORD) total += view.getUint32(o);
  return total;
}

/** Checks a manifest from a peer: whole records, sane sizes, bounded length. */
export function validateManifest(m: unknown): Manifest {
  if (!(m instanceof Uint8Array)) throw new ProtocolError('FRAME_INVALID', 'manifest must be bytes');
  if (m.byteLength % MANIFEST_RECORD !== 0) throw new ProtocolError('FRAME_INVALID', 'manifest length is not whole records');
  if (m.byteLength / MANIFEST_RECORD > MAX_MANIFEST_CHUNKS) throw new ProtocolError('FRAME_TOO_LARGE', 'manifest has too many chunks');
  const view = new DataView(m.buffer, m.byteOffset, m.byteLength);
  for (let o = 32; o < m.byteLength; o += MANIFEST_RECORD) {
    const size = view.getUint32(o);
    if (size === 0 || size > MAX_CHUNK_SIZE) throw new ProtocolError('FRAME_INVALID', 'manifest has a chunk of impossible size');
  }
  return m;
}

/**
 * A manifest sent as a change against one the receiver already has: keep the
 * first `head` and last `tail` records of the base, put `middle` between.
 */
export interface ManifestDelta {
  base: number;
  head: number;
  tail: number;
  middle: Manifest;
}

/** Computes the delta turning `base` into `next` (longest common head and tail). */
export function diffManifest(baseVersion: number, base: Manifest, next: Manifest): ManifestDelta {
  const a = base.byteLength / MANIFEST_RECORD;
  const b = next.byteLength / MANIFEST_RECORD;
  const same = (i: number, j: number) =>
    Buffer.compare(
      base.subarray(i * MANIFEST_RECORD, (i + 1) * MANIFEST_RECORD),
      next.subarray(j * MANIFEST_RECORD, (j + 1) * MANIFEST_RECORD),
    ) === 0;
  let head = 0;
  while (head < a && head < b && same(head, head)) head++;
  let tail = 0;
  while (tail < a - head && tail < b - head && same(a - 1 - tail, b - 1 - tail)) tail++;
  return { base: baseVersion, head, tail, middle: next.subarray(head * MANIFEST_RECORD, (b - tail) * MANIFEST_RECORD) };
}

/** Applies a delta to its base; throws when the delta does not fit the base. */
export function applyManifestDelta(base: Manifest, delta: ManifestDelta): Manifest {
  const a = base.byteLength / MANIFEST_RECORD;
  if (!Number.isInteger(delta.head) || !Number.isInteger(delta.tail) || delta.head < 0 || delta.tail < 0 || delta.head + delta.tail > a) {
    throw new ProtocolError('FRAME_INVALID', 'manifest delta does not fit its base');
  }
  const out = new Uint8Array((delta.head + delta.tail) * MANIFEST_RECORD + delta.middle.byteLength);
  out.set(base.subarray(0, delta.head * MANIFEST_RECORD), 0);
  out.set(delta.middle, delta.head * MANIFEST_RECORD);
  out.set(base.subarray((a - delta.tail) * MANIFEST_RECORD), delta.head * MANIFEST_RECORD + delta.middle.byteLength);
  return validateManifest(out);
}
