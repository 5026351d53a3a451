import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { Chunker, chunkBuffer, chunkParamsFor, classFor, classOf, packManifest, sha256Hex, type Manifest } from '@keepsync/protocol';

/** Deterministic pseudo-random bytes, so failures reproduce. */
function bytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(String(seed)).digest();
  for (let o = 0; o < n; o += 32) {
    block.copy(out, o);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

describe('Chunker', () => {
  it('covers the whole input with chunks within the size bounds', () => {
    const data = bytes(4 * 1024 * 1024, 1);
    const { chunks, size, hash } = chunkBuffer(data);
    const p = chunkParamsFor(data.length);
    assert.equal(size, data.length);
    assert.equal(hash, sha256Hex(data));
    let offset = 0;
    for (const [i, c] of chunks.entries()) {
      assert.equal(c.offset, offset);
      assert.ok(c.size <= p.max, 'chunk larger than max');
      if (i < chunks.length - 1) assert.ok(c.size >= p.min, 'chunk smaller than min');
      assert.equal(c.hash, sha256Hex(data.subarray(c.offset, c.offset + c.size)));
      offset += c.size;
    }
    assert.equal(offset, data.length);
    const avg = data.length / chunks.length;
    assert.ok(avg > p.avg / 2 && avg < p.avg * 2, `average chunk ${avg} far from ${p.avg}`);
  });

  it('finds the same boundaries however the input is split', () => {
    const data = bytes(1024 * 1024, 2);
    const whole = chunkBuffer(data);
    const c = new Chunker(data.length);
    for (let o = 0; o < data.length; ) {
      const n = 1 + Math.floor(Math.random() * 70_000);
      c.update(data.subarray(o, o + n));
      o += n;
    }
    assert.deepEqual(c.finish(), whole);
  });

  it('keeps boundaries outside an edited region in place', () => {
    const data = bytes(8 * 1024 * 1024, 3);
    const insert = randomBytes(100 * 1024);
    const mid = 4 * 1024 * 1024;
    const edited = Buffer.concat([data.subarray(0, mid), insert, data.subarray(mid)]);
    const before = new Set(chunkBuffer(data).chunks.map((c) => c.hash));
    const after = chunkBuffer(edited).chunks;
    const fresh = after.filter((c) => !before.has(c.hash));
    const freshBytes = fresh.reduce((n, c) => n + c.size, 0);
    assert.ok(fresh.length <= 6, `${fresh.length} chunks changed`);
    assert.ok(freshBytes < insert.length + 600 * 1024, `${freshBytes} bytes changed for a ${insert.length} byte insert`);
  });

  it('cuts where it always has: a change here would send every file up again', () => {
    const digest = (r: { chunks: Array<{ offset: number; size: number; hash: string }> }) =>
      createHash('sha256').update(r.chunks.map((c) => `${c.offset}:${c.size}:${c.hash}`).join('\n')).digest('hex').slice(0, 16);
    const small = chunkBuffer(bytes(3 * 1024 * 1024, 11));
    assert.equal(small.chunks.length, 40);
    assert.deepEqual(small.chunks.slice(0, 6).map((c) => c.size), [75274, 60983, 67629, 105411, 97446, 86350]);
    assert.equal(digest(small), '5d4e7e101499d350');
    // The chunk sizes of a 300 MiB file (128 KiB average), on its first 6 MiB.
    const large = new Chunker(300 * 1024 * 1024);
    large.update(bytes(6 * 1024 * 1024, 12));
    const cut = large.finish();
    assert.deepEqual(cut.chunks.slice(0, 6).map((c) => c.size), [143316, 134763, 134101, 152144, 220124, 295111]);
    assert.equal(digest(cut), '2fe9117743de3dfe');
    // A run of zeros has no cut point: it is cut at the maximum.
    const zeros = chunkBuffer(Buffer.concat([bytes(200_000, 13), Buffer.alloc(700_000), bytes(300_000, 14)]));
    assert.deepEqual(zeros.chunks.map((c) => c.size), [66710, 65968, 262144, 262144, 262144, 66796, 84655, 84161, 45278]);
    assert.equal(digest(zeros), '6893c9eee4a7cbef');
  });

  it('chunks the empty file into nothing', () => {
    assert.deepEqual(chunkBuffer(Buffer.alloc(0)).chunks, []);
  });

  it('grows the chunk size for very large files so manifests stay small', () => {
    assert.equal(chunkParamsFor(100 * 1024 * 1024).avg, 64 * 1024);
    assert.equal(chunkParamsFor(256 * 1024 * 1024).avg, 64 * 1024);
    assert.equal(chunkParamsFor(256 * 1024 * 1024 + 1).avg, 128 * 1024);
    assert.equal(chunkParamsFor(512 * 1024 * 1024).avg, 256 * 1024, 'about 2,048 chunks above 256 MiB');
    assert.equal(chunkParamsFor(2 * 1024 ** 3).avg, 1024 * 1024);
    assert.equal(chunkParamsFor(1024 ** 4).max, 16 * 1024 * 1024);
  });

  it('moves a growing file one size class at a time', () => {
    let before = classFor(1);
    for (let size = 1; size < 2 ** 45; size = Math.ceil(size * 1.01)) {
      const bits = classFor(size);
      assert.ok(bits === before || bits === before + 1, `${size} bytes: class ${before} to ${bits}`);
      before = bits;
    }
    assert.equal(before, 22);
  });

  describe('size class of a new version', () => {
    const KiB = 1024;
    const MiB = 1024 * KiB;
    const manifestOf = (sizes: number[]): Manifest => packManifest(sizes.map((size, i) => ({ hash: sha256Hex(Buffer.from(String(i))), size })));
    /** Chunk sizes as content of average `avg` gives them: spread around it, within the class's bounds. */
    const spread = (count: number, avg: number) => Array.from({ length: count }, (_, i) => Math.round(avg * (0.5 + ((i * 37) % 100) / 80)));

    it('reads the class off a manifest: from real cuts, from content cut at the maximum, not from a few chunks', () => {
      assert.equal(classOf(packManifest(chunkBuffer(bytes(8 * MiB, 7)).chunks)), 16);
      assert.equal(classOf(packManifest(chunkBuffer(Buffer.alloc(20 * MiB)).chunks)), 16, 'a run of zeros is cut at 256 KiB, the maximum of the 64 KiB class');
      assert.equal(classOf(manifestOf(spread(100, 128 * KiB))), 17);
      assert.equal(classOf(manifestOf(Array(100).fill(512 * KiB))), 17, 'cut at the maximum of the 128 KiB class');
      assert.equal(classOf(manifestOf(spread(20, 64 * KiB))), undefined);
    });

    it('keeps the class of the previous version when the size moved one class away, so an edit across a boundary resends only what changed', () => {
      const cutAt64K = manifestOf(spread(4096, 64 * KiB));
      assert.equal(chunkParamsFor(257 * MiB).avg, 128 * KiB, 'a new file of this size');
      assert.equal(chunkParamsFor(257 * MiB, cutAt64K).avg, 64 * KiB);
      assert.equal(chunkParamsFor(250 * MiB, manifestOf(spread(2000, 128 * KiB))).avg, 128 * KiB);
      assert.equal(chunkParamsFor(1.5 * 1024 * MiB, cutAt64K).avg, 1024 * KiB, 'four classes away: the class of its size');
    });

    it('resends only the edited stretch of a file whose size crossed into the next class', () => {
      // The class comes from the size the scan saw: 256 MiB, then 257 MiB after the edit
      // (the bytes here are fewer; the cut points depend only on the class and the bytes).
      const cut = (data: Buffer, statSize: number, previous?: Manifest) => {
        const c = new Chunker(statSize, undefined, previous);
        c.update(data);
        return c.finish();
      };
      const before = bytes(8 * MiB, 9);
      const old = cut(before, 256 * MiB);
      const edited = Buffer.concat([before.subarray(0, 4 * MiB), bytes(100 * KiB, 10), before.subarray(4 * MiB)]);
      const known = new Set(old.chunks.map((c) => c.hash));
      const resent = (f: { chunks: Array<{ hash: string; size: number }> }) => f.chunks.filter((c) => !known.has(c.hash)).reduce((n, c) => n + c.size, 0);
      assert.ok(resent(cut(edited, 257 * MiB, packManifest(old.chunks))) < 100 * KiB + 2 * 256 * KiB);
      assert.ok(resent(cut(edited, 257 * MiB)) > 7 * MiB, 'cut in the class of its new size, nearly every chunk is new');
    });
  });
});
