import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { forEachDatabase, scenario, tempDir, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { ContentLog, serverTree, sha256 } from '../helpers/serverContent.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Symbolic links in the synced folder (SAFETY.md D5): links are not
 * followed, their targets never reach the server, and a device never writes,
 * moves or deletes through a link, including a folder swapped for a link to
 * somewhere else while the client runs.
 */

/** A folder outside every synced folder, holding secrets; `snapshot` lists its files and contents. */
class Outside {
  readonly dir = tempDir('outside');
  readonly secrets: string[] = [];

  constructor() {
    this.put('secret.txt', 'the secret beside the synced folder');
    this.put('sub/deeper.txt', 'a secret one level down');
    this.put('b.txt', 'a secret named like a synced file');
  }

  put(rel: string, content: string): void {
    fs.mkdirSync(path.dirname(path.join(this.dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(this.dir, rel), content);
    this.secrets.push(content);
  }

  snapshot(): string[] {
    return (fs.readdirSync(this.dir, { recursive: true }) as string[]).sort().map((p) => {
      const abs = path.join(this.dir, p);
      return fs.lstatSync(abs).isFile() ? `${p}=${fs.readFileSync(abs, 'utf8')}` : `${p}/`;
    });
  }

  /** Fails when a secret's bytes are stored on the server: as a whole-file chunk, or in any chunk file. */
  assertNotOnServer(dataDir: string): void {
    const root = path.join(dataDir, 'chunks');
    for (const s of this.secrets) assert.equal(fs.existsSync(path.join(root, sha256(s).slice(0, 2), sha256(s))), false, `a secret reached the server: ${s}`);
    for (const p of fs.readdirSync(root, { recursive: true }) as string[]) {
      const abs = path.join(root, p);
      if (!fs.statSync(abs).isFile()) continue;
      const bytes = fs.readFileSync(abs);
      for (const s of this.secrets) assert.equal(bytes.includes(s), false, `a secret reached the server in chunk ${p}`);
    }
  }

  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Syncs devices in turn until they agree. */
async function settle(...devices: TestDevice[]): Promise<void> {
  for (const d of devices) await d.syncOnce();
  for (const d of devices) await d.syncOnce();
}

/**
 * A process that swaps folder REAL for a symbolic link LINK as fast as it can
 * (REAL parked at PARKED meanwhile) until SIGTERM, then puts the folder back.
 * The client may create REAL while it is parked (a download): the folder
 * then stays parked until the end, when what the client wrote is merged in.
 */
const FLIPPER = `
  const fs = require('fs');
  const path = require('path');
  const [real, parked, link] = process.argv.slice(1);
  const attempt = (f) => { try { f(); } catch {} };
  const isLink = (p) => { try { return fs.lstatSync(p).isSymbolicLink(); } catch { return false; } };
  let stop = false;
  process.on('SIGTERM', () => { stop = true; });
  const flip = () => {
    for (let i = 0; i < 50 && !stop; i++) {
      attempt(() => fs.renameSync(real, parked));
      attempt(() => fs.renameSync(link, real));
      if (isLink(real)) attempt(() => fs.renameSync(real, link));
      attempt(() => fs.renameSync(parked, real));
    }
    if (!stop) return setImmediate(flip);
    if (isLink(real)) fs.renameSync(real, link);
    if (fs.existsSync(parked)) {
      if (fs.existsSync(real)) {
        for (const name of fs.readdirSync(real)) if (!fs.existsSync(path.join(parked, name))) fs.renameSync(path.join(real, name), path.join(parked, name));
        fs.rmSync(real, { recursive: true });
      }
      fs.renameSync(parked, real);
    }
    process.exit(0);
  };
  flip();
`;

function leftovers(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((p) => path.basename(p).startsWith('.keepsync-'));
}

describe('Symbolic links on a device (D5)', function () {
  this.timeout(120_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let admin: AdminClient;
    let log: ContentLog;
    let outside: Outside;
    let laptop: TestDevice;
    let desktop: TestDevice;

    beforeEach(async () => {
      s = await scenario(kind);
      admin = await AdminClient.login(s.server);
      log = new ContentLog();
      outside = new Outside();
      laptop = await s.addDevice('laptop');
      desktop = await s.addDevice('desktop');
    });
    afterEach(async () => {
      await s.cleanup();
      outside.cleanup();
    });

    it('never uploads or follows links to a file or a folder outside the synced folder', async () => {
      const before = outside.snapshot();
      laptop.write('plain.txt', log.add('plain.txt', 'plain'));
      fs.symlinkSync(path.join(outside.dir, 'secret.txt'), laptop.p('to-file.txt'));
      fs.symlinkSync(outside.dir, laptop.p('to-folder'));
      fs.mkdirSync(laptop.p('inner'));
      fs.symlinkSync(path.join(outside.dir, 'sub'), laptop.p('inner/to-sub'));
      fs.symlinkSync('../../nowhere', laptop.p('inner/dangling'));
      await settle(laptop, desktop);

      assert.deepEqual([...(await serverTree(admin)).keys()].sort(), ['inner', 'plain.txt']);
      assert.deepEqual([...desktop.tree().keys()].sort(), ['inner', 'plain.txt']);
      outside.assertNotOnServer(s.server.dataDir);

      // Edits on the other device to the names the links hold never go through them.
      desktop.write('to-file.txt', log.add('to-file.txt', 'a file where the laptop has a link'));
      desktop.write('to-folder/b.txt', log.add('to-folder/b.txt', 'a file in a folder the laptop has as a link'));
      desktop.write('inner/to-sub/deeper.txt', log.add('inner/to-sub/deeper.txt', 'deeper, from the desktop'));
      await desktop.syncOnce();
      for (let i = 0; i < 2; i++) {
        const r = await laptop.run(['sync', '--once', '--quiet']);
        assert.ok(r.code === 0 || r.code === 1, r.stderr);
        for (const line of r.stderr.split('\n').filter((l) => l.trim())) assert.doesNotMatch(line, /^\s+at |Error:/, r.stderr);
      }
      assert.deepEqual(outside.snapshot(), before, 'a file outside the synced folder changed');
      assert.equal(fs.readlinkSync(laptop.p('to-file.txt')), path.join(outside.dir, 'secret.txt'));
      assert.equal(fs.readlinkSync(laptop.p('to-folder')), outside.dir);
      assert.equal(fs.readlinkSync(laptop.p('inner/to-sub')), path.join(outside.dir, 'sub'));
      // The server keeps the desktop's files: the laptop's links are not deletions.
      const tree = await serverTree(admin);
      assert.equal(tree.get('to-file.txt'), sha256('a file where the laptop has a link'));
      assert.equal(tree.get('to-folder/b.txt'), sha256('a file in a folder the laptop has as a link'));
      assert.equal(tree.get('inner/to-sub/deeper.txt'), sha256('deeper, from the desktop'));
      assert.deepEqual((await admin.request('GET', '/folders/Sync/trash')).body, []);
      outside.assertNotOnServer(s.server.dataDir);
      assert.deepEqual([...leftovers(laptop.dir), ...leftovers(outside.dir)], []);
      await log.assertNothingLost(admin);
    });

    it('never writes through a synced folder replaced by a link while it runs', async () => {
      const before = outside.snapshot();
      laptop.write('keep.txt', log.add('keep.txt', 'the folder is never empty'));
      laptop.write('a/b.txt', log.add('a/b.txt', 'b in a real folder'));
      laptop.write('a/c.txt', log.add('a/c.txt', 'c in a real folder'));
      await settle(laptop, desktop);
      laptop.env = { KEEPSYNC_TRACE: '1' };
      await laptop.start();

      // The folder goes away and a link to the outside takes its name.
      const parked = path.join(laptop.root, 'parked-a');
      fs.renameSync(laptop.p('a'), parked);
      fs.symlinkSync(outside.dir, laptop.p('a'));
      await waitFor('the laptop to take the folder as gone', async () => !(await serverTree(admin)).has('a/b.txt'), 30_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${laptop.live?.stderr}`);
      });

      // Meanwhile the other device writes under that name.
      desktop.write('a/b.txt', log.add('a/b.txt', 'b written again on the desktop'));
      desktop.write('a/new.txt', log.add('a/new.txt', 'new on the desktop'));
      desktop.write('a/sub/deeper.txt', log.add('a/sub/deeper.txt', 'deeper on the desktop'));
      await desktop.syncOnce();
      await waitFor('the laptop to report the link and settle', () => {
        const out = laptop.live!.stderr;
        const at = out.indexOf('a is a symbolic link, which is not followed');
        return at >= 0 && out.slice(at).includes('keepsync trace: nothing to do');
      }, 30_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${laptop.live?.stderr}`);
      });
      assert.equal(laptop.live!.running, true, laptop.live!.stderr);
      await laptop.stop();

      assert.deepEqual(outside.snapshot(), before, 'a file outside the synced folder changed');
      assert.equal(fs.readlinkSync(laptop.p('a')), outside.dir);
      outside.assertNotOnServer(s.server.dataDir);
      const tree = await serverTree(admin);
      assert.equal(tree.get('a/b.txt'), sha256('b written again on the desktop'));
      assert.equal(tree.get('a/new.txt'), sha256('new on the desktop'));
      assert.deepEqual([...leftovers(laptop.dir), ...leftovers(outside.dir)], []);
      await log.assertNothingLost(admin);
    });

    it('leaks nothing and writes nothing outside while a folder flips between real and a link (TOCTOU)', async () => {
      const before = outside.snapshot();
      // A folder whose files are rewritten all the time, so that the client keeps reading and writing in it.
      laptop.write('keep.txt', log.add('keep.txt', 'the folder is never empty'));
      for (let i = 0; i < 8; i++) laptop.write(`a/f${i}.txt`, log.add(`a/f${i}.txt`, `f${i} v0`));
      laptop.write('a/b.txt', log.add('a/b.txt', 'b v0'));
      for (let i = 0; i < 8; i++) outside.put(`f${i}.txt`, `outside f${i}, never to be synced`);
      const before2 = outside.snapshot();
      await settle(laptop, desktop);
      await laptop.start();
      await desktop.start();

      // A separate process swaps the folder and a link to the outside, as fast as it can.
      const parked = path.join(laptop.root, 'parked-a');
      const link = path.join(laptop.root, 'link-a');
      fs.symlinkSync(outside.dir, link);
      const flipper = spawn(process.execPath, ['-e', FLIPPER, laptop.p('a'), parked, link], { stdio: 'inherit' });
      const flipperDone = new Promise((r) => flipper.on('exit', r));

      // Both devices keep writing into the folder while it flips. The laptop writes
      // only while the folder is parked outside: what it wrote there and
      // overwrote before the folder came back was never in the synced folder.
      const lastOnLaptop = new Map<string, string>();
      const lastOnDesktop = new Map<string, string>();
      const deadline = Date.now() + 6_000;
      for (let round = 1; Date.now() < deadline; round++) {
        for (let i = 0; i < 8; i += 2) {
          // Through the parked name only (never through the link); lost to ENOENT when not parked right now.
          const content = `f${i} v${round} on the laptop`;
          try {
            fs.writeFileSync(path.join(parked, `f${i}.txt`), content);
            lastOnLaptop.set(`a/f${i}.txt`, content);
          } catch {
            // the folder is under its real name right now
          }
        }
        // Rewritten each 4 rounds, maybe before it went up: only the last content must survive.
        const edited = `a/f${(round % 4) * 2 + 1}.txt`;
        desktop.write(edited, `from the desktop, round ${round}`);
        lastOnDesktop.set(edited, `from the desktop, round ${round}`);
        desktop.write(`a/d${round}.txt`, log.add(`a/d${round}.txt`, `new on the desktop, round ${round}`));
        await new Promise((r) => setTimeout(r, 150));
      }
      flipper.kill('SIGTERM');
      await flipperDone;
      assert.equal(fs.lstatSync(laptop.p('a')).isDirectory(), true);
      assert.equal(laptop.live!.running, true, laptop.live!.stderr);
      assert.equal(desktop.live!.running, true, desktop.live!.stderr);
      await laptop.stop();
      await desktop.stop();
      for (const [p, content] of [...lastOnLaptop, ...lastOnDesktop]) log.add(p, content);

      assert.deepEqual(outside.snapshot(), before2, 'a file outside the synced folder changed');
      assert.notDeepEqual(before, before2);
      outside.assertNotOnServer(s.server.dataDir);
      await settle(laptop, desktop);
      outside.assertNotOnServer(s.server.dataDir);
      assert.deepEqual(outside.snapshot(), before2, 'a file outside the synced folder changed');
      // Not even the names of what lies outside reached the server.
      const trash: Array<{ path: string }> = (await admin.request('GET', '/folders/Sync/trash')).body;
      const seen = [...(await serverTree(admin)).keys(), ...trash.map((t) => t.path)];
      assert.deepEqual(seen.filter((p) => /^a\/(secret\.txt|sub)/.test(p)), [], 'names from outside the folder reached the server');
      assert.deepEqual([...leftovers(laptop.dir), ...leftovers(desktop.dir), ...leftovers(outside.dir)], []);
      await log.assertNothingLost(admin);
    });
  });
});
