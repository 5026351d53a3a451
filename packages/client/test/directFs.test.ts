import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { directFs } from '../src/folder/directFs.js';

describe('directFs', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-directfs-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('fails as fs/promises does: a rejected promise with the error code', async () => {
    await assert.rejects(directFs.lstat(path.join(dir, 'absent')), { code: 'ENOENT' });
    await assert.rejects(directFs.open(path.join(dir, 'absent'), 'r'), { code: 'ENOENT' });
  });

  it('writes and reads a file through a handle', async () => {
    const file = path.join(dir, 'f');
    const w = await directFs.open(file, 'wx', 0o644);
    await w.write(Buffer.from('hello world'), 0, 11, 0);
    await w.close();
    await w.close();
    const r = await directFs.open(file, 'r');
    const buf = Buffer.alloc(5);
    assert.deepEqual(await r.read(buf, 0, 5, 6), { bytesRead: 5 });
    assert.equal(buf.toString(), 'world');
    assert.equal((await r.stat()).size, 11);
    await r.close();
  });

  it('finishes large writes, which run in the thread pool, before a close right after them', async () => {
    const file = path.join(dir, 'f');
    const w = await directFs.open(file, 'wx', 0o644);
    const parts = [0, 1, 2, 3].map((k) => Buffer.alloc(4 * 1024 * 1024, 0x41 + k));
    const writes = parts.map((p, k) => w.write(p, 0, p.byteLength, k * p.byteLength));
    await w.close();
    assert.deepEqual(await Promise.all(writes), parts.map((p) => ({ bytesWritten: p.byteLength })));
    assert.ok(fs.readFileSync(file).equals(Buffer.concat(parts)));
    await assert.rejects(w.write(parts[0], 0, parts[0].byteLength, 0), { code: 'EBADF' });
  });

  it('lets the event loop turn during a long run of calls (heartbeats, the watcher)', async () => {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, 'x');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    try {
      const start = performance.now();
      while (performance.now() - start < 200) await directFs.lstat(file);
    } finally {
      clearInterval(timer);
    }
    assert.ok(ticks >= 3, `timers ran ${ticks} times in 200 ms of calls`);
  });
});
