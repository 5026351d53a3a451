import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { Chunker, chunkBuffer, chunkParamsFor, sha256Hex } from '@keepsync/protocol';

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

  it('chunks the empty file into nothing', () => {
    assert.deepEqual(chunkBuffer(Buffer.alloc(0)).chunks, []);
  });

  it('grows the chunk size for very large files so manifests stay small', () => {
    assert.equal(chunkParamsFor(100 * 1024 * 1024).avg, 64 * 1024);
    assert.equal(chunkParamsFor(2 * 1024 ** 3).avg, 256 * 1024);
    assert.equal(chunkParamsFor(1024 ** 4).max, 16 * 1024 * 1024);
  });
});
