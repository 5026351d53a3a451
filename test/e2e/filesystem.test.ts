import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { forEachDatabase, scenario, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { ServerIndex, verifyServer } from '../helpers/serverIndex.js';
import { waitFor } from '../helpers/wait.js';

const sha = (file: string) => {
  try {
    return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  } catch {
    return undefined;
  }
};

/** Every `.keepsync-*` file under a folder. */
function temps(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((p) => path.basename(p).startsWith('.keepsync-'));
}

async function assertVerifies(s: Scenario): Promise<void> {
  const index = await ServerIndex.open(s.server);
  try {
    assert.deepEqual(await verifyServer(s.server, index), []);
  } finally {
    await index.close();
  }
}

/** Mounts a tmpfs of `size` on `dir`, or answers false when this machine does not allow it. */
function mountTmpfs(dir: string, size: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('File system edge cases on the device', function () {
  this.timeout(180_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let laptop: TestDevice;
    let desktop: TestDevice;

    beforeEach(async () => {
      s = await scenario(kind);
      laptop = await s.addDevice('laptop');
      desktop = await s.addDevice('desktop');
    });
    afterEach(async () => s.cleanup());

    it('D1: a file rewritten while it uploads ends with its final content everywhere and no torn version', async () => {
      await laptop.start();
      const block = crypto.randomBytes(1024 * 1024);
      const big = Buffer.concat(Array.from({ length: 24 }, (_, i) => Buffer.concat([Buffer.from(`block ${i}`), block])));
      fs.writeFileSync(laptop.p('video.bin'), big);
      // Rewrite it twice while the first upload is on its way, the last time keeping size and mtime.
      await new Promise((r) => setTimeout(r, 150));
      const st = fs.statSync(laptop.p('video.bin'));
      big.write('edited in the middle', 12 * 1024 * 1024);
      fs.writeFileSync(laptop.p('video.bin'), big);
      await new Promise((r) => setTimeout(r, 100));
      big.write('edited again, same size and mtime', 20 * 1024 * 1024);
      fs.writeFileSync(laptop.p('video.bin'), big);
      fs.utimesSync(laptop.p('video.bin'), st.atime, st.mtime);
      const want = crypto.createHash('sha256').update(big).digest('hex');
      await waitFor('the final content on the server', async () => {
        const index = await ServerIndex.open(s.server);
        try {
          return (await index.live()).get('video.bin')?.hash === want;
        } finally {
          await index.close();
        }
      }, 60_000, 250).catch(async (err) => {
        // Same size and mtime and inode: only a rescan finds it (SAFETY D1); the live client must not keep the old content.
        throw new Error(`${err.message}; laptop stderr: ${laptop.live?.stderr.slice(-500)}`);
      });
      await desktop.syncOnce();
      assert.equal(sha(desktop.p('video.bin')), want);
      await assertVerifies(s);
    });

    it('D3: a disk that fills up during a download leaves no partial or temporary file, and the download succeeds later', async function () {
      const data = crypto.randomBytes(6 * 1024 * 1024);
      laptop.write('sub/big.bin', data);
      await laptop.syncOnce();
      if (!mountTmpfs(desktop.dir, '3m')) this.skip();
      try {
        const r = await desktop.run(['sync', '--once']);
        assert.equal(r.code, 1, `sync --once on a full disk exited ${r.code}: ${r.stderr}`);
        assert.match(r.stderr.trim().split('\n').at(-1) ?? '', /no space|disk.*full|ENOSPC/i);
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'a stack trace was shown');
        assert.deepEqual(temps(desktop.dir), [], 'a temporary file was left behind');
        assert.ok(!fs.existsSync(desktop.p('sub/big.bin')), 'a partial file appeared');
        execFileSync('mount', ['-o', 'remount,size=32m', desktop.dir]);
        await desktop.syncOnce();
        assert.ok(data.equals(fs.readFileSync(desktop.p('sub/big.bin'))));
        assert.deepEqual(temps(desktop.dir), []);
      } finally {
        execFileSync('umount', ['-l', desktop.dir], { stdio: 'ignore' });
      }
    });

    it('D4: an unreadable file is skipped with a message, never treated as deleted', async function () {
      if (process.getuid?.() === 0) {
        // root reads files whatever their mode: this case needs an unprivileged user.
        this.skip();
      }
      laptop.write('secret.txt', 'v1');
      laptop.write('other.txt', 'o');
      await laptop.syncOnce();
      await desktop.syncOnce();
      laptop.write('secret.txt', 'v2 unreadable');
      fs.chmodSync(laptop.p('secret.txt'), 0);
      const r = await laptop.run(['sync', '--once']);
      assert.match(r.stderr, /cannot read secret\.txt/);
      await desktop.syncOnce();
      assert.equal(desktop.read('secret.txt'), 'v1');
    });

    it('A6: names that differ only in case or normalization arriving from the server are kept apart or merged, never lost', async () => {
      laptop.write('Readme.md', 'upper');
      laptop.write('readme.md', 'lower');
      laptop.write('café.txt'.normalize('NFC'), 'from the server (NFC)');
      await laptop.syncOnce();
      // The desktop already has the same name spelled in NFD, with other content.
      desktop.write('cafe\u0301.txt', 'local (NFD)');
      await desktop.syncOnce();
      await laptop.syncOnce();
      await desktop.syncOnce();
      for (const d of [laptop, desktop]) {
        const t = [...d.tree().keys()].map((k) => k.normalize('NFC'));
        assert.equal(d.read('Readme.md'), 'upper');
        assert.equal(d.read('readme.md'), 'lower');
        assert.equal(t.filter((k) => k === 'café.txt').length, 1, `${d.name}: ${t.join(', ')}`);
        const contents = [...d.tree()].filter(([k]) => k.normalize('NFC').startsWith('café')).map(([, v]) => Buffer.from(v, 'base64').toString()).sort();
        assert.deepEqual(contents, ['from the server (NFC)', 'local (NFD)'], `${d.name}: ${t.join(', ')}`);
      }
    });

    it('E1: a running client whose folder is moved away or replaced by an empty one stops instead of deleting', async () => {
      for (let i = 0; i < 5; i++) laptop.write(`f${i}.txt`, `file ${i}`);
      await laptop.syncOnce();
      await desktop.syncOnce();
      await laptop.start();
      fs.renameSync(laptop.dir, `${laptop.dir}-moved`);
      fs.mkdirSync(laptop.dir);
      const code = await waitFor('the laptop to stop', () => (laptop.live!.running ? undefined : laptop.live!.child.exitCode ?? -1), 30_000);
      assert.equal(code, 1);
      assert.match(laptop.live!.stderr, /is empty or missing; not propagating deletions/);
      await desktop.syncOnce();
      for (let i = 0; i < 5; i++) assert.equal(desktop.read(`f${i}.txt`), `file ${i}`);
    });
  });
});
