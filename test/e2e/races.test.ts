import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { TestDevice, forEachDatabase, scenario, sortedTree, type Scenario } from '../helpers/cluster.js';
import { Relay } from '../helpers/network.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { ServerIndex } from '../helpers/serverIndex.js';
import { ContentLog, serverTree, sha256 } from '../helpers/serverContent.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Races pinned one at a time (SAFETY.md A5, A7, D2): the chaos runs meet them
 * by chance; here a relay between one device and the server holds that
 * device's bytes so that the other device's change lands at the moment that
 * matters. Real server, real device processes, real files.
 */

/** Puts a file in place at once with its content and mtime (written beside the folder, then renamed in). */
function place(d: TestDevice, rel: string, data: string | Buffer, mtimeMs: number): void {
  const staged = path.join(d.root, `staged-${path.basename(rel)}`);
  fs.writeFileSync(staged, data);
  fs.utimesSync(staged, new Date(mtimeMs), new Date(mtimeMs));
  fs.mkdirSync(path.dirname(d.p(rel)), { recursive: true });
  fs.renameSync(staged, d.p(rel));
}

const traceLines = (d: TestDevice, re: RegExp) => (d.live?.stderr ?? '').split('\n').filter((l) => re.test(l)).length;

/** Starts `d` live, tracing, and waits until its first cycle found nothing to do. */
async function startTraced(d: TestDevice): Promise<void> {
  d.env = { KEEPSYNC_TRACE: '1' };
  await d.start();
  await waitFor(`${d.name}'s first cycle to end`, () => traceLines(d, /^keepsync trace: nothing to do/) > 0);
}

/**
 * Makes `change` on `d` while `link` holds the server's answers to it, and
 * waits until the cycle it starts has asked for the server's changes: the
 * answer (from before whatever happens next) waits in the relay until `link.release()`.
 */
async function changeWhileHeld(d: TestDevice, link: Relay, change: () => void): Promise<void> {
  link.holdDown = true;
  const lists = traceLines(d, /^> list /);
  change();
  await waitFor(`${d.name} to ask for the server's changes`, () => traceLines(d, /^> list /) > lists && link.heldDown > 0).catch((err: Error) => {
    throw new Error(`${err.message} (held ${link.heldDown} bytes)\n${d.live?.stderr.slice(-3000)}`);
  });
}

/** A device's folder as path → sha256 ('/' for folders), as serverTree reports the server's. */
const hashes = (d: TestDevice) => new Map([...d.tree()].map(([p, v]) => [p, v === '/' ? '/' : sha256(Buffer.from(v, 'base64'))]));

/** Syncs each device once, twice round: whatever one sent, the others have. */
async function settle(...devices: TestDevice[]): Promise<void> {
  for (const d of devices) await d.syncOnce();
  for (const d of devices) await d.syncOnce();
}

/** Asserts that every device holds the server's tree; answers it. */
async function agreed(admin: AdminClient, ...devices: TestDevice[]): Promise<Map<string, string>> {
  const server = await serverTree(admin);
  for (const d of devices) assert.deepEqual(sortedTree(hashes(d)), sortedTree(server), `${d.name} differs from the server`);
  return server;
}

describe('Races pinned by holding one device\'s link', function () {
  this.timeout(120_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let relay: Relay | undefined;
    let index: ServerIndex | undefined;

    afterEach(async () => {
      await relay?.close();
      relay = undefined;
      await index?.close();
      index = undefined;
      await s?.cleanup();
    });

    /** A device that reaches the server through `relay` (no delay), paired and synced once. */
    async function relayedDevice(name: string): Promise<TestDevice> {
      relay = await Relay.listen('127.0.0.1', 0);
      relay.target = s.server.port;
      const d = new TestDevice(name);
      s.devices.push(d);
      const link = new URL(await s.server.pairingLink());
      link.host = `127.0.0.1:${relay.port}`;
      const r = await d.pair(link.toString());
      assert.equal(r.code, 0, r.stderr);
      return d;
    }

    it('A7: the same bytes created on two devices end with one mtime, the server\'s, when the second push did not know of the first', async () => {
      s = await scenario(kind);
      const laptop = await s.addDevice('laptop');
      const desktop = await relayedDevice('desktop');
      await desktop.syncOnce();
      await startTraced(desktop);
      const link = relay!;

      // The desktop creates the file; its cycle asks for the server's changes,
      // and the answer (nothing new) waits in the relay...
      const desktopMtime = Date.UTC(2001, 0, 1, 12, 0, 0, 111);
      const laptopMtime = Date.UTC(2002, 1, 2, 12, 0, 0, 222);
      const data = 'the same bytes, written on two devices\n';
      await changeWhileHeld(desktop, link, () => place(desktop, 'same.txt', data, desktopMtime));
      // ...while the laptop creates the same bytes, with another mtime, and sends them first.
      place(laptop, 'same.txt', data, laptopMtime);
      await laptop.syncOnce();
      index = await ServerIndex.open(s.server);
      assert.equal((await index.live()).get('same.txt')?.mtime, laptopMtime);
      // The desktop learns nothing of it before it pushes the same bytes.
      const pushed = traceLines(desktop, /^< pushed /);
      link.release();
      await waitFor('the desktop to push its file', () => traceLines(desktop, /^< pushed /) > pushed);
      await desktop.stop();
      await desktop.syncOnce();
      await laptop.syncOnce();

      const server = (await index.live()).get('same.txt');
      assert.equal(server?.hash, sha256(data));
      assert.equal(server?.mtime, laptopMtime, 'the first push\'s mtime stays on the server');
      assert.equal((await index.versionsOf('same.txt')).length, 1, 'the same bytes twice make no second version');
      for (const d of [laptop, desktop]) {
        assert.equal(d.read('same.txt'), data);
        assert.equal(fs.statSync(d.p('same.txt')).mtimeMs, laptopMtime, `${d.name}'s mtime of same.txt`);
        assert.deepEqual(fs.readdirSync(d.dir).filter((n) => !n.startsWith('.keepsync')).sort(), ['same.txt'], `${d.name} has no conflict copy`);
      }
    });

    it('A7: a large file written with the same bytes on two devices, then edited on one, reaches the other (its chunk list is the server\'s)', async () => {
      s = await scenario(kind);
      const admin = await AdminClient.login(s.server);
      const laptop = await s.addDevice('laptop');
      const desktop = await s.addDevice('desktop');
      // Large enough that the changes feed leaves its chunk list out (more than 16 chunks).
      laptop.write('big.bin', randomBytes(2_000_000));
      await settle(laptop, desktop);
      // The same new bytes on both, the desktop offline: it finds them on the server when it comes back.
      const same = randomBytes(2_000_000);
      laptop.write('big.bin', same);
      await laptop.syncOnce();
      desktop.write('big.bin', same);
      await desktop.syncOnce();
      // An edit of a part of it, sent as a change against that version, then taken by the desktop.
      const edited = Buffer.from(same);
      Buffer.from('a paragraph rewritten on the laptop').copy(edited, 1_000_000);
      laptop.write('big.bin', edited);
      await laptop.syncOnce();
      await desktop.syncOnce();
      assert.ok(fs.readFileSync(desktop.p('big.bin')).equals(edited), 'the desktop has the edit');
      assert.equal((await agreed(admin, laptop, desktop)).size, 1);
    });

    it('A5: a rename pushed just after an edit made elsewhere (not yet seen here) takes the edit to the new name', async () => {
      s = await scenario(kind);
      const admin = await AdminClient.login(s.server);
      const log = new ContentLog();
      const laptop = await relayedDevice('laptop');
      const desktop = await s.addDevice('desktop');
      const original = 'renamed on the laptop, edited on the desktop\n';
      laptop.write('doc.txt', log.add('doc.txt', original));
      await settle(laptop, desktop);
      await startTraced(laptop);
      const link = relay!;

      // The laptop renames the file; the answer to its pull (nothing new) waits in the relay...
      await changeWhileHeld(laptop, link, () => fs.renameSync(laptop.p('doc.txt'), laptop.p('renamed.txt')));
      // ...while the desktop's edit of it reaches the server: the laptop's move names a base that is gone.
      const edit = 'edited on the desktop\n';
      desktop.write('doc.txt', log.add('doc.txt', edit));
      await desktop.syncOnce();
      link.release();
      // The server moves the file with its edit; the laptop then downloads the edit under the new name.
      await waitFor('the edit under the new name on the laptop', async () => {
        const tree = await serverTree(admin);
        return tree.get('renamed.txt') === sha256(edit) && !tree.has('doc.txt') && hashes(laptop).get('renamed.txt') === sha256(edit);
      }, 30_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${laptop.live?.stderr.split('\n').filter((l) => l.startsWith('keepsync')).slice(-20).join('\n')}`);
      });
      await laptop.stop();
      await settle(laptop, desktop);
      const tree = await agreed(admin, laptop, desktop);
      assert.deepEqual(sortedTree(tree), sortedTree(new Map([['renamed.txt', sha256(edit)]])));
      await log.assertNothingLost(admin);
    });

    it('A5: an edit and a new file pushed before their device heard of their folder\'s rename elsewhere go into the renamed folder, there and here', async () => {
      s = await scenario(kind);
      const admin = await AdminClient.login(s.server);
      const log = new ContentLog();
      const laptop = await s.addDevice('laptop');
      const desktop = await relayedDevice('desktop');
      laptop.write('old/doc.txt', log.add('old/doc.txt', 'in a folder the laptop renames\n'));
      await settle(laptop, desktop);
      await startTraced(desktop);
      const link = relay!;

      // The desktop edits the file; the answer to its pull (nothing new) waits in the relay...
      const edit = 'edited on the desktop before it heard of the rename\n';
      const fresh = 'made on the desktop before it heard of the rename\n';
      await changeWhileHeld(desktop, link, () => {
        desktop.write('old/doc.txt', log.add('old/doc.txt', edit));
        desktop.write('old/fresh.txt', log.add('old/fresh.txt', fresh));
      });
      // ...while the laptop renames the folder and the server has it first.
      fs.renameSync(laptop.p('old'), laptop.p('new'));
      await laptop.syncOnce();
      link.release();
      await waitFor('the edit under the new name, on the server and on the desktop', async () => {
        const tree = await serverTree(admin);
        const here = hashes(desktop);
        return tree.get('new/doc.txt') === sha256(edit) && tree.get('new/fresh.txt') === sha256(fresh) && !tree.has('old')
          && here.get('new/doc.txt') === sha256(edit) && here.get('new/fresh.txt') === sha256(fresh) && !here.has('old');
      }, 30_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${desktop.live?.stderr.split('\n').filter((l) => l.startsWith('keepsync')).slice(-20).join('\n')}`);
      });
      assert.match(desktop.live?.stderr ?? '', /old was renamed to new on another device; old\/doc\.txt goes there with it/, 'the desktop pushed against the old name');
      // The folder moved here as a whole: nothing came down again.
      assert.equal(traceLines(desktop, /^> get-chunks /), 0, 'the desktop downloaded what it had');
      await desktop.stop();
      await settle(laptop, desktop);
      const tree = await agreed(admin, laptop, desktop);
      assert.deepEqual(sortedTree(tree), sortedTree(new Map([['new', '/'], ['new/doc.txt', sha256(edit)], ['new/fresh.txt', sha256(fresh)]])));
      await log.assertNothingLost(admin);
    });

    describe('A5: a rename racing', () => {
      let laptop: TestDevice;
      let desktop: TestDevice;
      let admin: AdminClient;
      let log: ContentLog;
      const original = 'the file both devices hold\n';

      beforeEach(async () => {
        s = await scenario(kind);
        admin = await AdminClient.login(s.server);
        log = new ContentLog();
        laptop = await s.addDevice('laptop');
        desktop = await s.addDevice('desktop');
        laptop.write('doc.txt', log.add('doc.txt', original));
        await settle(laptop, desktop);
      });

      for (const first of ['laptop', 'desktop'] as const) {
        it(`a rename of the same file on another device (${first} first): both names keep the content, the old name goes`, async () => {
          fs.renameSync(laptop.p('doc.txt'), laptop.p('by-laptop.txt'));
          fs.renameSync(desktop.p('doc.txt'), desktop.p('by-desktop.txt'));
          const order = first === 'laptop' ? [laptop, desktop] : [desktop, laptop];
          for (const d of order) await d.syncOnce();
          // The rename the server refused goes up as a new file in that same run, not at the next full scan.
          assert.deepEqual([...(await serverTree(admin)).keys()].sort(), ['by-desktop.txt', 'by-laptop.txt']);
          await settle(...order);
          const tree = await agreed(admin, laptop, desktop);
          // Neither rename is lost: the file is under both names, once each; the name both left is gone.
          assert.deepEqual(sortedTree(tree), sortedTree(new Map([['by-desktop.txt', sha256(original)], ['by-laptop.txt', sha256(original)]])));
          await log.assertNothingLost(admin);
        });

        it(`an edit of the renamed file on another device (${first} first): the edit goes with the file to its new name`, async () => {
          fs.renameSync(laptop.p('doc.txt'), laptop.p('renamed.txt'));
          const edit = 'edited on the desktop while the laptop renamed it\n';
          desktop.write('doc.txt', log.add('doc.txt', edit));
          const order = first === 'laptop' ? [laptop, desktop] : [desktop, laptop];
          for (const d of order) await d.syncOnce();
          assert.deepEqual(sortedTree(await serverTree(admin)), sortedTree(new Map([['renamed.txt', sha256(edit)]])));
          await settle(...order);
          const tree = await agreed(admin, laptop, desktop);
          // Whichever reached the server first, the same outcome: the rename and the edit both
          // stand, and the content from before the edit is a version of the renamed file.
          assert.deepEqual(sortedTree(tree), sortedTree(new Map([['renamed.txt', sha256(edit)]])));
          await log.assertNothingLost(admin);
        });

      }
    });

    it('D2: a save made while a download of the same file is on its way is never overwritten; both contents stay', async () => {
      s = await scenario(kind);
      const admin = await AdminClient.login(s.server);
      const log = new ContentLog();
      const laptop = await s.addDevice('laptop');
      const desktop = await s.addDevice('desktop');
      const v1 = randomBytes(300_000);
      laptop.write('doc.bin', log.add('doc.bin', v1));
      await settle(laptop, desktop);
      // The desktop downloads slowly (256 KiB/s): a 3 MB change takes seconds to arrive.
      desktop.env = { KEEPSYNC_TRACE: '1' };
      await desktop.start(['--max-download', '256K']);

      const v2 = randomBytes(3_000_000);
      laptop.write('doc.bin', log.add('doc.bin', v2));
      await laptop.syncOnce();
      await waitFor('the desktop to be receiving the laptop\'s change', () => traceLines(desktop, /^< chunk-data /) > 0);
      // The user saves the file on the desktop while the laptop's version is on its way.
      assert.ok(fs.readFileSync(desktop.p('doc.bin')).equals(v1), 'the download was already applied: the race was not pinned');
      const saved = 'saved on the desktop while the download ran\n';
      desktop.write('doc.bin', log.add('doc.bin', saved));
      const pushed = traceLines(desktop, /^< pushed /);
      await waitFor('the desktop to send its save', () => traceLines(desktop, /^< pushed /) > pushed, 60_000);
      await desktop.stop();
      await settle(desktop, laptop);

      const tree = await agreed(admin, laptop, desktop);
      // The laptop's change reached the server first and stays; the save is the conflict copy, on both devices.
      assert.equal(tree.get('doc.bin'), sha256(v2));
      const copies = [...tree.keys()].filter((p) => p !== 'doc.bin');
      assert.equal(copies.length, 1, copies.join(', '));
      assert.match(copies[0], /^doc \(conflict from desktop \d{4}-\d{2}-\d{2} \d{6}\)\.bin$/);
      assert.equal(tree.get(copies[0]), sha256(saved));
      await log.assertNothingLost(admin);
    });
  });
});
