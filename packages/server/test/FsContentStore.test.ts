import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
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

  describe('#put and #flush', () => {
    /** Runs `fn` with PATH set to `dirs` (the store runs `sync` from PATH). */
    const withPath = async (dirs: string, fn: () => Promise<void>) => {
      const saved = process.env.PATH;
      process.env.PATH = dirs;
      try {
        await fn();
      } finally {
        process.env.PATH = saved;
      }
    };
    const putMany = async (n: number) => {
      const chunks = Array.from({ length: n }, (_, i) => randomBytes(100 + ((i * 7919) % 5000))).map((data) => ({ data, hash: sha256Hex(data) }));
      await Promise.all(chunks.map((c) => store.put(c.hash, c.data)));
      // Written but maybe not yet durable: already counted as present, so nothing is sent twice.
      assert.deepEqual(await store.missing(chunks.map((c) => c.hash)), []);
      await store.flush();
      return chunks;
    };
    const assertStored = (chunks: Array<{ data: Buffer; hash: string }>) => {
      for (const c of chunks) assert.ok(fs.readFileSync(fileOf(c.hash)).equals(c.data), `chunk ${c.hash} whole under its name`);
      assert.deepEqual(fs.readdirSync(path.join(dir, 'chunks', 'tmp')), [], 'no temporary file left');
    };

    it('makes a large group of new chunks durable with one sync of the file system, then renames them', async () => {
      const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-bin-'));
      const calls = path.join(bin, 'calls');
      fs.writeFileSync(path.join(bin, 'sync'), `#!/bin/sh\necho "$@" >> ${calls}\nexec /bin/sync "$@"\n`, { mode: 0o755 });
      try {
        let chunks: Array<{ data: Buffer; hash: string }> = [];
        await withPath(bin, async () => {
          chunks = await putMany(300);
        });
        assertStored(chunks);
        assert.deepEqual(await store.usage(), { chunks: 300, bytes: chunks.reduce((n, c) => n + c.data.length, 0) });
        const lines = fs.readFileSync(calls, 'utf8').trim().split('\n');
        assert.ok(lines.length >= 2, 'synced before and after the renames');
        for (const l of lines) assert.equal(l, `--file-system ${path.join(dir, 'chunks')}`);
      } finally {
        fs.rmSync(bin, { recursive: true, force: true });
      }
    });

    it('fsyncs each file instead when a sync of the file system is slow (other programs writing to the disk), and starts no more of them meanwhile', async () => {
      const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-bin-'));
      const calls = path.join(bin, 'calls');
      const release = path.join(bin, 'release');
      // A sync that waits, as one does behind gigabytes another program wrote.
      fs.writeFileSync(path.join(bin, 'sync'), `#!/bin/sh\necho "$@" >> ${calls}\nwhile [ ! -e ${release} ]; do /bin/sleep 0.05; done\necho released >> ${calls}\n`, { mode: 0o755 });
      try {
        let chunks: Array<{ data: Buffer; hash: string }> = [];
        await withPath(bin, async () => {
          chunks = await putMany(300);
          chunks.push(...(await putMany(100)));
        });
        assertStored(chunks);
        assert.equal(fs.readFileSync(calls, 'utf8').trim().split('\n').length, 1, 'one sync of the file system, still running');
      } finally {
        fs.writeFileSync(release, '');
        // Lets it finish before its folder goes.
        while (!fs.readFileSync(calls, 'utf8').includes('released')) await new Promise((r) => setTimeout(r, 20));
        fs.rmSync(bin, { recursive: true, force: true });
      }
    });

    it('holds none of a chunk\'s bytes once it is written, while it waits for its group to be made durable', async () => {
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as () => void;
      let held: WeakRef<Buffer> | undefined;
      await (async () => {
        const data = randomBytes(100_000);
        held = new WeakRef(data);
        await store.put(sha256Hex(data), data);
      })();
      await new Promise((r) => setImmediate(r)); // a WeakRef holds its target until the turn ends
      gc();
      assert.equal(held!.deref(), undefined, 'the bytes are still held');
      await store.flush();
    });

    it('fsyncs each file where the file system cannot be synced at once', async () => {
      let chunks: Array<{ data: Buffer; hash: string }> = [];
      await withPath(path.join(dir, 'no-such-dir'), async () => {
        chunks = await putMany(200);
      });
      assertStored(chunks);
      // The store keeps working after the fallback, for later groups too.
      assertStored(await putMany(50));
    });
  });
});
