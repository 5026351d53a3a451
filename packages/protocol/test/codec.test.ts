import assert from 'node:assert/strict';
import { encode } from '@msgpack/msgpack';
import {
  MAX_CONTROL_FRAME, MAX_VERSION_ID, applyManifestDelta, chunkDataBuffer, decodeClientMessage, decodeServerMessage, diffManifest, encodeMessage,
  packManifest, unpackManifest, type ClientMessage,
} from '@keepsync/protocol';

const h = (c: string) => c.repeat(64);

function refusal(frame: Uint8Array): string {
  try {
    decodeClientMessage(frame);
  } catch (err) {
    return (err as { code: string }).code;
  }
  return 'accepted';
}

describe('codec', () => {
  describe('#decodeClientMessage', () => {
    it('round-trips every kind of op in a push', () => {
      const manifest = packManifest([{ hash: h('a'), size: 10 }]);
      const msg: ClientMessage = {
        type: 'push', id: 7, ops: [
          { op: 'put', path: 'a/b.txt' as never, base: 0, size: 10, hash: h('b'), mtime: 1700000000000, exec: true, manifest: { full: manifest } },
          { op: 'mkdir', path: 'a' as never },
          { op: 'delete', path: 'c' as never, kind: 'dir', base: 0, seq: 12 },
          { op: 'move', from: 'x' as never, to: 'y/x' as never, kind: 'file', base: 3 },
        ],
      };
      assert.deepEqual(decodeClientMessage(encodeMessage(msg)), msg);
    });

    it('refuses bytes that are not msgpack', () => {
      assert.equal(refusal(Buffer.from([0xc1, 0xff, 0x00])), 'FRAME_INVALID');
    });

    it('refuses truncated frames', () => {
      const frame = encodeMessage({ type: 'list', id: 1, since: 0 });
      assert.equal(refusal(frame.subarray(0, frame.length - 2)), 'FRAME_INVALID');
    });

    it('refuses frames that are not maps', () => {
      assert.equal(refusal(encode([1, 2, 3])), 'FRAME_INVALID');
      assert.equal(refusal(encode('hello')), 'FRAME_INVALID');
    });

    it('refuses unknown message types', () => {
      assert.equal(refusal(encode({ type: 'format-disk', id: 1 })), 'FRAME_INVALID');
    });

    it('refuses wrong field types', () => {
      assert.equal(refusal(encode({ type: 'list', id: '1', since: 0 })), 'FRAME_INVALID');
      assert.equal(refusal(encode({ type: 'list', id: -1, since: 0 })), 'FRAME_INVALID');
      assert.equal(refusal(encode({ type: 'list', id: 1.5, since: 0 })), 'FRAME_INVALID');
    });

    it('refuses hostile paths in ops', () => {
      const push = (path: string) => encode({ type: 'push', id: 1, ops: [{ op: 'mkdir', path }] });
      assert.equal(refusal(push('../../etc')), 'PATH_INVALID');
      assert.equal(refusal(push('/etc')), 'PATH_INVALID');
      assert.equal(refusal(push('a\u0000b')), 'PATH_INVALID');
    });

    it('refuses oversized control frames', () => {
      const frame = encode({ type: 'list', id: 1, since: 0, pad: 'x'.repeat(MAX_CONTROL_FRAME) });
      assert.equal(refusal(frame), 'FRAME_TOO_LARGE');
    });

    it('refuses manifests that are not whole records', () => {
      const frame = encode({ type: 'push', id: 1, ops: [{ op: 'put', path: 'a', base: 0, size: 1, hash: h('c'), mtime: 0, exec: false, manifest: { full: new Uint8Array(35) } }] });
      assert.equal(refusal(frame), 'FRAME_INVALID');
    });

    it('refuses chunk uploads whose hash is not 32 bytes', () => {
      assert.equal(refusal(encode({ type: 'put-chunk', id: 1, hash: new Uint8Array(31), data: new Uint8Array(4) })), 'FRAME_INVALID');
    });
  });

  describe('#decodeServerMessage', () => {
    it('refuses hostile paths from a server', () => {
      const frame = encode({ type: 'changes', id: 1, seq: 1, more: false, entries: [{ path: '../x', kind: 'file', deleted: false, seq: 1, version: 1, size: 0, hash: '', mtime: 0, exec: false }] });
      assert.throws(() => decodeServerMessage(frame), /invalid path/);
    });

    it('passes on the mtime of a version the server kept (the same bytes pushed again), and refuses one that is not a number', () => {
      const pushed = (result: object) => decodeServerMessage(encode({ type: 'pushed', id: 1, results: [result] }));
      assert.deepEqual(pushed({ status: 'ok', version: 3, seq: 7, mtime: 1_600_000_000_123 }), { type: 'pushed', id: 1, results: [{ status: 'ok', version: 3, seq: 7, mtime: 1_600_000_000_123 }] });
      assert.deepEqual(pushed({ status: 'ok', version: 3, seq: 7 }), { type: 'pushed', id: 1, results: [{ status: 'ok', version: 3, seq: 7 }] });
      assert.throws(() => pushed({ status: 'ok', version: 3, seq: 7, mtime: 'yesterday' }), /mtime must be a number/);
    });
  });

  describe('manifest delta', () => {
    it('sends only the changed middle and rebuilds the manifest', () => {
      const chunks = Array.from({ length: 100 }, (_, i) => ({ hash: i.toString(16).padStart(64, '0'), size: 1000 + i }));
      const base = packManifest(chunks);
      const next = packManifest([...chunks.slice(0, 40), { hash: h('e'), size: 5 }, ...chunks.slice(42)]);
      const delta = diffManifest(9, base, next);
      assert.equal(delta.head, 40);
      assert.equal(delta.tail, 58);
      assert.equal(delta.middle.byteLength, 36);
      assert.deepEqual(unpackManifest(applyManifestDelta(base, delta)), unpackManifest(next));
    });

    it('refuses a delta that does not fit its base', () => {
      const base = packManifest([{ hash: h('a'), size: 1 }]);
      assert.throws(() => applyManifestDelta(base, { base: 1, head: 1, tail: 1, middle: new Uint8Array(0) }));
    });
  });
});

describe('decodeClientMessage (version ids)', () => {
  it('refuses version ids beyond a 32-bit database integer, wherever a request names one', () => {
    const big = MAX_VERSION_ID + 1;
    const frames: unknown[] = [
      { type: 'get-manifest', id: 1, version: big, base: 0 },
      { type: 'get-manifest', id: 1, version: 1, base: big },
      { type: 'restore', id: 1, path: 'a.txt', version: big },
      { type: 'push', id: 1, ops: [{ op: 'delete', path: 'a.txt', kind: 'file', base: big, seq: 0 }] },
      { type: 'push', id: 1, ops: [{ op: 'move', from: 'a', to: 'b', kind: 'file', base: big }] },
    ];
    for (const f of frames) {
      assert.throws(() => decodeClientMessage(encodeMessage(f as never)), /must be an integer/, JSON.stringify(f));
    }
    assert.equal((decodeClientMessage(encodeMessage({ type: 'restore', id: 1, path: 'a.txt' as never, version: MAX_VERSION_ID })) as { version: number }).version, MAX_VERSION_ID);
  });
});

describe('decodeClientMessage (restore-at)', () => {
  it('takes an optional path and a time, and refuses a hostile path or a time that is not a positive integer', () => {
    const at = Date.UTC(2026, 11, 1, 14, 0);
    assert.deepEqual(decodeClientMessage(encodeMessage({ type: 'restore-at', id: 3, at } as never)), { type: 'restore-at', id: 3, at });
    assert.deepEqual(decodeClientMessage(encodeMessage({ type: 'restore-at', id: 3, path: 'Docs', at } as never)), { type: 'restore-at', id: 3, path: 'Docs', at });
    for (const bad of [{ path: '../x', at }, { path: '', at }, { at: 0 }, { at: -5 }, { at: 1.5 }, { at: '2026-12-01' }, {}]) {
      assert.throws(() => decodeClientMessage(encodeMessage({ type: 'restore-at', id: 3, ...bad } as never)), JSON.stringify(bad));
    }
  });
});

describe('encodeMessage (chunk data read into a chunkDataBuffer)', () => {
  const hash = Buffer.alloc(32, 7);
  const filled = (size: number, seed: number) => {
    const data = chunkDataBuffer(size);
    for (let i = 0; i < size; i++) data[i] = (i * 31 + seed) & 0xff;
    return data;
  };

  for (const size of [1, 100, 3000, 70_000, 300_000]) {
    it(`frames ${size} bytes around the data, without copying them, and the frame decodes to the same message`, () => {
      const data = filled(size, size);
      const expected = Buffer.from(data);
      const put = encodeMessage({ type: 'put-chunk', id: 12345, hash, data });
      assert.equal(put.buffer, data.buffer, 'the frame lies in the buffer the data was read into');
      assert.equal(put.byteOffset + put.byteLength, data.byteOffset + data.byteLength);
      const back = decodeClientMessage(put);
      assert.equal(back.type, 'put-chunk');
      assert.deepEqual(Buffer.from((back as { data: Uint8Array }).data), expected);
      assert.deepEqual(Buffer.from((back as { hash: Uint8Array }).hash), hash);
      assert.equal((back as { id: number }).id, 12345);

      const served = filled(size, size + 1);
      const frame = encodeMessage({ type: 'chunk-data', id: 2 ** 40, hash, data: served });
      assert.equal(frame.buffer, served.buffer);
      const got = decodeServerMessage(frame) as { type: string; id: number; data: Uint8Array };
      assert.equal(got.type, 'chunk-data');
      assert.equal(got.id, 2 ** 40);
      assert.deepEqual(Buffer.from(got.data), Buffer.from(served));
    });
  }

  it('sends the same buffer a second time as a copy, leaving the first frame whole', () => {
    const data = filled(5000, 3);
    const first = encodeMessage({ type: 'put-chunk', id: 1, hash, data });
    const firstBytes = Buffer.from(first);
    const second = encodeMessage({ type: 'put-chunk', id: 99_999_999, hash, data });
    assert.notEqual(second.buffer, data.buffer);
    assert.deepEqual(Buffer.from(first), firstBytes, 'the first frame is untouched');
    assert.equal((decodeClientMessage(second) as { id: number }).id, 99_999_999);
    assert.deepEqual(Buffer.from((decodeClientMessage(first) as { data: Uint8Array }).data), Buffer.from(data));
  });

  it('writes nothing outside its own buffer (small buffers share one allocation pool)', () => {
    const before = filled(40, 1);
    const mine = filled(40, 2);
    const after = filled(40, 3);
    const copies = [Buffer.from(before), Buffer.from(after)];
    encodeMessage({ type: 'put-chunk', id: 2 ** 50, hash, data: mine });
    assert.deepEqual([Buffer.from(before), Buffer.from(after)], copies);
  });

  it('copies data that was not read into a chunkDataBuffer (a view into other bytes)', () => {
    const file = Buffer.alloc(1000, 9);
    const data = file.subarray(500, 600);
    const frame = encodeMessage({ type: 'put-chunk', id: 1, hash, data });
    assert.notEqual(frame.buffer, file.buffer);
    assert.deepEqual(file, Buffer.alloc(1000, 9));
    assert.deepEqual(Buffer.from((decodeClientMessage(frame) as { data: Uint8Array }).data), Buffer.from(data));
  });
});
