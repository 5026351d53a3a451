import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { TestDevice, TestServer, sortedTree } from '../helpers/cluster.js';
import { databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { Relay, seeded } from '../helpers/network.js';
import { AdminClient } from '../helpers/rawDevice.js';
import { ContentLog, serverTree } from '../helpers/serverContent.js';
import { ServerIndex, verifyServer } from '../helpers/serverIndex.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Connections cut at random byte offsets, half-open sockets and a reconnect
 * storm (SAFETY.md C1) against a real server process, real TLS WebSockets
 * and live devices on real folders. Every device reaches the server through
 * its own TCP relay on loopback (test/helpers/network.ts). However the
 * connections break, every operation is applied once: no version twice, no
 * conflict copy that a real conflict did not call for, and every folder
 * ends byte-identical to the server's tree. KEEPSYNC_CUT_SEED picks the cut
 * offsets (the timing of the processes is not reproducible);
 * KEEPSYNC_CUT_MAX_KIB the most a connection carries (2048), and
 * KEEPSYNC_STORM_DEVICES the number of devices in the storm (6).
 * Network behaviour does not depend on the database: SQLite only.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const SEED = Number(process.env.KEEPSYNC_CUT_SEED) || 1;
const STORM_DEVICES = Number(process.env.KEEPSYNC_STORM_DEVICES) || 6;
/** The most bytes a connection carries before its cut (KEEPSYNC_CUT_MAX_KIB; smaller cuts more often). */
const CUT_MAX = (Number(process.env.KEEPSYNC_CUT_MAX_KIB) || 2048) * 1024;
const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const CONFLICT = /\(conflict from /;

const figures: Record<string, unknown> = {};
after(() => {
  if (Object.keys(figures).length > 0) process.stderr.write(`    cut figures: ${JSON.stringify(figures)}\n`);
});

/** A device's folder as path → sha256 ('/' for folders). */
function hashedTree(d: TestDevice): Map<string, string> {
  return new Map([...d.tree()].map(([p, v]) => [p, v === '/' ? '/' : sha256(Buffer.from(v, 'base64'))]));
}

describe('Cut connections, half-open sockets and reconnect storms (C1; SQLite only)', function () {
  this.timeout(600_000);
  let db: TestDatabase;
  let server: TestServer;
  const devices: TestDevice[] = [];
  const relays: Relay[] = [];

  beforeEach(async () => {
    db = await databaseKinds()[0].create();
    server = await new TestServer(db).start();
  });

  afterEach(async () => {
    for (const d of devices.splice(0)) await d.cleanup();
    for (const r of relays.splice(0)) await r.close();
    await server?.cleanup();
    await db?.drop();
  });

  /** A device paired with the server through a relay of its own (answered with it), or directly without one. */
  async function device(name: string, through: 'relay' | 'direct' = 'relay'): Promise<{ d: TestDevice; relay?: Relay }> {
    const d = new TestDevice(name);
    devices.push(d);
    const link = new URL(await server.pairingLink());
    let relay: Relay | undefined;
    if (through === 'relay') {
      relay = await Relay.listen('127.0.0.1', 0);
      relay.target = server.port;
      relays.push(relay);
      link.host = `127.0.0.1:${relay.port}`;
    }
    const r = await d.pair(link.toString());
    assert.equal(r.code, 0, r.stderr);
    return { d, relay };
  }

  /** Waits until every device's folder equals the server's current tree; answers that tree. */
  async function converged(admin: AdminClient, ds: TestDevice[], timeoutMs = 300_000): Promise<Map<string, string>> {
    let last = '';
    try {
      return await waitFor('every device to equal the server', async () => {
        const want = JSON.stringify(sortedTree(await serverTree(admin)));
        const trees = ds.map((d) => JSON.stringify(sortedTree(hashedTree(d))));
        last = `server ${want}\n${ds.map((d, i) => `${d.name} ${trees[i]}`).join('\n')}`;
        return trees.every((t) => t === want) ? serverTree(admin) : undefined;
      }, timeoutMs, 500);
    } catch (err) {
      throw new Error(`${String(err)}\n${last}\n${ds.map((d) => `--- ${d.name}\n${d.live?.stderr.slice(-3000) ?? ''}`).join('\n')}`);
    }
  }

  /**
   * Each operation applied once: no conflict copy unless `conflictsOf` names
   * its file and count; no path holding the same content twice in its
   * history (a write applied again); the store verifies; nothing written lost.
   */
  async function appliedOnce(admin: AdminClient, log: ContentLog, conflictsOf: Record<string, number> = {}): Promise<Record<string, number>> {
    const index = await ServerIndex.open(server);
    try {
      const versions = await index.versionsByPath();
      const twice = [...versions].filter(([, hashes]) => new Set(hashes).size !== hashes.length).map(([p, h]) => `${p}: ${h.map((x) => x.slice(0, 8)).join(' ')}`);
      assert.deepEqual(twice, [], 'a content was committed twice at the same path');
      const tree = await serverTree(admin);
      const copies = [...tree.keys()].filter((p) => CONFLICT.test(p));
      const counted: Record<string, number> = {};
      for (const p of copies) {
        const of = p.replace(/ \(conflict from [^)]*\)/, '');
        counted[of] = (counted[of] ?? 0) + 1;
      }
      assert.deepEqual(counted, conflictsOf, `conflict copies: ${copies.join(', ')}`);
      assert.deepEqual(await verifyServer(server, index), []);
      await log.assertNothingLost(admin);
      return counted;
    } finally {
      await index.close();
    }
  }

  it('converges with every operation applied once while connections are cut at random byte offsets', async () => {
    const random = seeded(SEED);
    const a = await device('alpha');
    const b = await device('beta');
    // From here on each connection lives for 16 KiB to 2 MiB of traffic, then is cut mid-stream.
    a.relay!.cutAfterBytes({ min: 16 * KiB, max: CUT_MAX, seed: SEED * 1000 + 1 });
    b.relay!.cutAfterBytes({ min: 16 * KiB, max: CUT_MAX, seed: SEED * 1000 + 2 });
    await a.d.start();
    await b.d.start();
    const admin = await AdminClient.login(server);
    const log = new ContentLog();
    const write = (d: TestDevice, p: string, content: Buffer) => d.write(p, log.add(p, content));
    const started = Date.now();

    // Small files and multi-chunk ones (chunks of 16–256 KiB) written on both.
    for (let i = 0; i < 20; i++) write(a.d, `a/small-${i}.txt`, randomBytes(1 + Math.floor(random() * 20 * KiB)));
    for (const [i, mib] of [3, 5, 7].entries()) write(a.d, `a/big-${i}.bin`, randomBytes(mib * MiB));
    for (let i = 0; i < 15; i++) write(b.d, `b/small-${i}.txt`, randomBytes(1 + Math.floor(random() * 20 * KiB)));
    for (const [i, mib] of [4, 6].entries()) write(b.d, `b/big-${i}.bin`, randomBytes(mib * MiB));
    await converged(admin, [a.d, b.d]);
    const firstRound = Date.now() - started;

    // Then each changes what the other wrote: edits, a partial edit of a big file, moves, deletes.
    for (let i = 0; i < 5; i++) write(a.d, `b/small-${i}.txt`, randomBytes(1 + Math.floor(random() * 20 * KiB)));
    const big = fs.readFileSync(a.d.p('b/big-1.bin'));
    randomBytes(512 * KiB).copy(big, 2 * MiB);
    write(a.d, 'b/big-1.bin', big);
    fs.mkdirSync(b.d.p('moved'), { recursive: true });
    for (let i = 0; i < 3; i++) fs.renameSync(b.d.p(`a/small-${i}.txt`), b.d.p(`moved/small-${i}.txt`));
    for (let i = 3; i < 5; i++) fs.rmSync(b.d.p(`a/small-${i}.txt`));
    fs.renameSync(b.d.p('a/big-0.bin'), b.d.p('moved/big-0.bin'));
    const tree = await converged(admin, [a.d, b.d]);

    assert.ok(tree.has('moved/big-0.bin') && !tree.has('a/big-0.bin') && !tree.has('a/small-3.txt'));
    assert.equal(tree.get('b/big-1.bin'), sha256(big));
    const cuts = a.relay!.cuts + b.relay!.cuts;
    figures.randomCuts = {
      seed: SEED, cuts, firstRoundMs: firstRound, totalMs: Date.now() - started,
      bytes: { up: a.relay!.counts.up + b.relay!.counts.up, down: a.relay!.counts.down + b.relay!.counts.down }, connections: a.relay!.counts.connections + b.relay!.counts.connections,
    };
    process.stderr.write(`    random cuts: ${JSON.stringify(figures.randomCuts)}\n`);
    assert.ok(cuts >= 10, `only ${cuts} cuts: the test did not cut enough to mean anything`);
    await appliedOnce(admin, log);
    assert.deepEqual(devices.flatMap((d) => fs.readdirSync(d.dir, { recursive: true }) as string[]).filter((n) => path.basename(n).startsWith('.keepsync-')), []);
  });

  it('notices a half-open connection on both sides during an upload, reconnects and commits the file once', async () => {
    const { d, relay } = await device('halfopen');
    const check = await device('halfopen-check', 'direct');
    await d.start();
    const admin = await AdminClient.login(server);
    const online = async () => (await admin.devices()).find((x) => x.name === 'halfopen')?.online;
    const connected = () => (JSON.parse(fs.readFileSync(path.join(d.home, 'state.json'), 'utf8')) as { connected: boolean }).connected;
    const log = new ContentLog();
    const content = randomBytes(24 * MiB);
    const upBefore = relay!.counts.up;
    d.write('half.bin', log.add('half.bin', content));
    await waitFor('a few MiB of the upload', () => relay!.counts.up - upBefore > 4 * MiB, 60_000, 20);
    // Both directions stop without a FIN or RST reaching either end.
    relay!.blackhole = true;
    const t0 = Date.now();
    let serverMs = 0;
    let deviceMs = 0;
    await waitFor('both sides to notice', async () => {
      if (!serverMs && (await online()) === false) serverMs = Date.now() - t0;
      if (!deviceMs && !connected()) deviceMs = Date.now() - t0;
      return serverMs > 0 && deviceMs > 0;
    }, 90_000, 100);
    relay!.restore();
    const t1 = Date.now();
    await waitFor('the device to reconnect', () => connected(), 90_000, 100);
    const reconnectMs = Date.now() - t1;
    await waitFor('the file to reach the other device', async () => {
      await check.d.syncOnce();
      return check.d.exists('half.bin');
    }, 180_000, 500);
    assert.equal(sha256(fs.readFileSync(check.d.p('half.bin'))), sha256(content));
    figures.halfOpen = { serverNoticedMs: serverMs, deviceNoticedMs: deviceMs, reconnectedAfterRestoreMs: reconnectMs };
    process.stderr.write(`    half-open: ${JSON.stringify(figures.halfOpen)}\n`);
    await converged(admin, [d, check.d]);
    await appliedOnce(admin, log);
  });

  it(`applies each offline change once when ${STORM_DEVICES} devices reconnect at once after the server restarts`, async () => {
    const admin = await AdminClient.login(server);
    const log = new ContentLog();
    const ds: TestDevice[] = [];
    for (let i = 0; i < STORM_DEVICES; i++) ds.push((await device(`storm-${i}`, 'direct')).d);
    ds[0].write('shared.txt', log.add('shared.txt', 'the shared file, first version'));
    for (const [i, d] of ds.entries()) d.write(`own-${i}.txt`, log.add(`own-${i}.txt`, `device ${i}, first`));
    for (const d of ds) await d.start();
    await converged(admin, ds);

    await server.stop('SIGKILL');
    // While the server is down every device changes its own file, adds one, and edits the shared one.
    for (const [i, d] of ds.entries()) {
      d.write(`own-${i}.txt`, log.add(`own-${i}.txt`, `device ${i}, edited offline`));
      d.write(`offline-${i}.txt`, log.add(`offline-${i}.txt`, randomBytes(300 * KiB)));
      d.write('shared.txt', log.add('shared.txt', `the shared file as device ${i} left it`));
    }
    await waitFor('every device to see the server gone', () => ds.every((d) => !JSON.parse(fs.readFileSync(path.join(d.home, 'state.json'), 'utf8')).connected), 60_000, 100);
    const t0 = Date.now();
    await server.start();
    const restartMs = Date.now() - t0;
    await waitFor('every device to reconnect', () => ds.every((d) => JSON.parse(fs.readFileSync(path.join(d.home, 'state.json'), 'utf8')).connected), 120_000, 100);
    const reconnectMs = Date.now() - t0;
    const tree = await converged(admin, ds);
    const convergeMs = Date.now() - t0;
    // One edit of the shared file wins; each of the others is one conflict copy.
    const counted = await appliedOnce(admin, log, { 'shared.txt': STORM_DEVICES - 1 });
    for (let i = 0; i < STORM_DEVICES; i++) assert.ok(tree.has(`offline-${i}.txt`) && tree.get(`own-${i}.txt`) === sha256(`device ${i}, edited offline`));
    figures.storm = { devices: STORM_DEVICES, serverStartMs: restartMs, allReconnectedMs: reconnectMs, convergedMs: convergeMs, conflictCopies: counted };
    process.stderr.write(`    reconnect storm: ${JSON.stringify(figures.storm)}\n`);
  });
});
