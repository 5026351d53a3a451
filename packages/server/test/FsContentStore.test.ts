import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sha256Hex } from '@keepsync/protocol';
import { FsContentStore } from '@keepsync/server';

const HOUR = 60 * 60 * 1000;

describe('FsContentStore', () => {
  let dir: string;
  let store: FsContentStore;
  const fileOf = (hash: string) => path.join(dir, 'chunks', hash.slice(0, 2), hash);
  const backdate = (hash: string, ms: number) => {
    const then = new Date(Date.now() - ms);
    fs.utimesSync(fileOf(hash), then, then);
  };
  const chunk = async (size = 1000) => {
    const data = randomBytes(size);
    const hash = sha256Hex(data);
    await store.put(hash, data);
    await store.flush(); // a new chunk is on disk under its hash once flushed
    return { data, hash };
  };

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-content-'));
    store = new FsContentStore(dir);
    await store.init();
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('#deleteUnused', () => {
    it('removes a chunk unused since the given time and answers its size', async () => {
      const { hash } = await chunk(1234);
      backdate(hash, 2 * HOUR);
      assert.equal(await store.deleteUnused(hash, Date.now() - HOUR), 1234);
      assert.equal(fs.existsSync(fileOf(hash)), false);
      assert.deepEqual(await store.missing([hash]), [hash]);
    });

    it('keeps a chunk that missing() found within the grace period, however old its file', async () => {
      const { hash } = await chunk();
      backdate(hash, 2 * HOUR);
      assert.deepEqual(await store.missing([hash]), []);
      assert.equal(await store.deleteUnused(hash, Date.now() - HOUR), 0);
      assert.ok(fs.existsSync(fileOf(hash)));
    });

    it('keeps a chunk that a put of the same bytes touched again', async () => {
      const { hash, data } = await chunk();
      backdate(hash, 2 * HOUR);
      await store.put(hash, data);
      assert.equal(await store.deleteUnused(hash, Date.now() - HOUR), 0);
    });

    it('steps aside for a use in progress, and a use that starts during a removal sees the chunk gone', async () => {
      const { hash } = await chunk();
      backdate(hash, 2 * HOUR);
      const since = Date.now() - HOUR;
      // The use starts first: the removal declines.
      const found = store.missing([hash]);
      assert.equal(await store.deleteUnused(hash, since), 0);
      assert.deepEqual(await found, []);
      backdate(hash, 2 * HOUR);
      // The removal starts first: the use waits for it, then reports the chunk missing.
      const removal = store.deleteUnused(hash, since);
      const after = store.missing([hash]);
      assert.ok((await removal) > 0);
      assert.deepEqual(await after, [hash]);
    });
  });

  describe('#usage', () => {
    it('counts chunks and bytes, and follows puts and removals', async () => {
      const a = await chunk(100);
      await chunk(200);
      assert.deepEqual(await store.usage(), { chunks: 2, bytes: 300 });
      await chunk(50);
      await store.put(a.hash, a.data);
      await store.flush();
      assert.deepEqual(await store.usage(), { chunks: 3, bytes: 350 });
      await store.delete(a.hash);
      assert.deepEqual(await store.usage(), { chunks: 2, bytes: 250 });
      assert.deepEqual(await new FsContentStore(dir).usage(), { chunks: 2, bytes: 250 });
    });
  });
});
