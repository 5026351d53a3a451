import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { TestDevice, forEachDatabase, scenario, type Scenario } from '../helpers/cluster.js';
import { Relay } from '../helpers/network.js';
import { ServerIndex } from '../helpers/serverIndex.js';
import { sha256 } from '../helpers/serverContent.js';
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
      desktop.env = { KEEPSYNC_TRACE: '1' };
      await desktop.start();
      const link = relay!;

      // The desktop creates the file; its cycle asks for the server's changes,
      // and the answer (nothing new) waits in the relay...
      link.holdDown = true;
      const lists = traceLines(desktop, /^> list /);
      const desktopMtime = Date.UTC(2001, 0, 1, 12, 0, 0, 111);
      const laptopMtime = Date.UTC(2002, 1, 2, 12, 0, 0, 222);
      const data = 'the same bytes, written on two devices\n';
      place(desktop, 'same.txt', data, desktopMtime);
      await waitFor('the desktop to ask for the server\'s changes', () => traceLines(desktop, /^> list /) > lists && link.heldDown > 0);
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
  });
});
