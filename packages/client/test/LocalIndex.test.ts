import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packManifest, sha256Hex, type RelPath } from '@keepsync/protocol';
import { LocalIndex, type RemoteRecord, type SyncedRecord } from '../src/index/LocalIndex.js';

const fileRecord = (p: string, i: number): SyncedRecord => {
  const chunk = sha256Hex(Buffer.from(`chunk ${i}`));
  return {
    path: p as RelPath, kind: 'file', version: i + 1, hash: sha256Hex(Buffer.from(p)), size: 10, mtime: 1000 + i, exec: i % 2 === 0,
    ino: 100 + i, manifest: packManifest([{ hash: chunk, size: 10 }]), ctime: 2000 + i,
  };
};
const remoteRecord = (p: string, i: number): RemoteRecord => ({
  path: p as RelPath, kind: 'file', deleted: i % 3 === 0, seq: i + 1, version: i + 1, hash: sha256Hex(Buffer.from(p)), size: 10,
  mtime: 1000 + i, exec: false, from: null, manifest: null,
});

describe('LocalIndex lookups of many paths at once', () => {
  let dir: string;
  let index: LocalIndex;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-index-'));
    index = new LocalIndex(path.join(dir, 'index.db'));
  });
  afterEach(() => {
    index.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // More than two batches, and a last one that is not full.
  const paths = Array.from({ length: 1203 }, (_, i) => `d${i % 7}/f${i}.txt`);

  it('answers the same records as one lookup per path, over several batches', () => {
    index.tx(() => {
      paths.forEach((p, i) => {
        if (i % 2 === 0) index.putSynced(fileRecord(p, i));
        if (i % 5 !== 0) index.putRemote(remoteRecord(p, i));
      });
    });
    const asked = [...paths, 'absent.txt', 'd1'];
    const synced = index.syncedOf(asked);
    const remote = index.remoteOf(asked);
    assert.equal(synced.size, 602);
    assert.equal(remote.size, 962);
    for (const p of asked) {
      assert.deepEqual(synced.get(p), index.synced(p), p);
      assert.deepEqual(remote.get(p), index.remote(p), p);
    }
    assert.deepEqual(index.syncedOf([]), new Map());
  });

  it('tells which chunks a synced file here holds', () => {
    index.tx(() => paths.forEach((p, i) => i % 4 === 0 && index.putSynced(fileRecord(p, i))));
    const hashes = paths.map((_, i) => sha256Hex(Buffer.from(`chunk ${i}`)));
    const held = index.chunksHeld([...hashes, ...hashes.slice(0, 10)]);
    assert.equal(held.size, 301);
    hashes.forEach((h, i) => assert.equal(held.has(h), index.chunkSources(h).length > 0, `chunk ${i}`));
  });
});
