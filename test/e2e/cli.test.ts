import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Proc, keepsync, type RunResult } from '../helpers/processes.js';
import { TestDevice, TestServer, forEachDatabase, sortedTree, tempDir } from '../helpers/cluster.js';
import type { TestDatabase } from '../helpers/databases.js';
import { AdminClient, httpsJson } from '../helpers/rawDevice.js';
import { waitFor } from '../helpers/wait.js';

/** A failure as users see it: the exit code, and exactly one line on stderr with no stack trace. */
function assertOneLineError(r: RunResult, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, `exit code of a failure (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split('\n');
  assert.match(lines[0], /^keepsync: /, r.stderr);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  if (code === 2) assert.deepEqual(lines.slice(1), ['Run "keepsync help" for usage.']);
  else assert.equal(lines.length, 1, r.stderr);
}

/** Every file and folder under `dir` (path → size, folders '/'), to prove that nothing changed. */
function listing(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((d) => `${path.relative(dir, path.join(d.parentPath, d.name))}${d.isDirectory() ? '/' : ''}`)
    .sort();
}

describe('keepsync command line', function () {
  this.timeout(120_000);

  describe('usage errors', () => {
    const home = tempDir('cli-usage');
    after(() => fs.rmSync(home, { recursive: true, force: true }));

    const cases: Array<[string[], RegExp]> = [
      [['frobnicate'], /unknown command: frobnicate/],
      [['sync', '--bogus'], /Unknown option '--bogus'/],
      [['status', '--home'], /--home <value>' argument missing/],
      [['status', '--json=yes'], /'--json' does not take an argument/],
      [['versions'], /versions needs the file/],
      [['restore', 'a.txt', '--version', 'latest'], /--version must be a whole number/],
      [['trash', 'restore'], /trash restore needs the deleted path/],
      [['trash', 'everything'], /Unexpected argument 'everything'/],
      [['pair', 'https://nas/pair?code=x&fp=y'], /pair needs --dir DIR/],
      [['sync', '--max-upload', 'fast'], /--max-upload must be bytes per second/],
      [['server', '--port', 'eighty'], /--port must be a whole number from 0 to 65535/],
      [['server', '--cert', 'x.pem'], /--cert and --key go together/],
    ];

    it('answers each wrong command line with exit 2 and one line that says what is wrong, and writes nothing', async () => {
      const env = { KEEPSYNC_HOME: home, KEEPSYNC_DATA: path.join(home, 'data'), KEEPSYNC_CERTS: path.join(home, 'certs') };
      const results = await Promise.all(cases.map(([args]) => keepsync(args, { env })));
      results.forEach((r, i) => assertOneLineError(r, 2, cases[i][1]));
      assert.deepEqual(listing(home), []);
    });

    it('prints the usage for --help on any command, exit 0', async () => {
      for (const args of [['--help'], ['sync', '--help'], ['server', 'pair', '-h'], ['help']]) {
        const r = await keepsync(args);
        assert.equal(r.code, 0, `keepsync ${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stdout, /^Usage: keepsync <command>/);
      }
      const bare = await keepsync([]);
      assert.equal(bare.code, 2);
      assert.match(bare.stdout, /^Usage: keepsync <command>/);
    });
  });

  describe('server commands without a server', () => {
    let root: string;
    beforeEach(() => (root = tempDir('cli-noserver')));
    afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

    it('refuse a data directory that holds no server instead of creating an empty one there', async () => {
      const data = path.join(root, 'data');
      for (const cmd of [['server', 'reset-password'], ['server', 'verify'], ['server', 'pair']]) {
        const r = await keepsync([...cmd, '--data', data]);
        assertOneLineError(r, 1, /no keepsync database in|has not been started with this data directory/);
        assert.equal(r.stdout, '', `${cmd.join(' ')} prints no password or link`);
      }
      assert.deepEqual(listing(root), []);
    });

    it('say in one line when the data directory is a file or the database cannot be opened', async () => {
      const file = path.join(root, 'data');
      fs.writeFileSync(file, 'not a folder');
      const args = ['server', '--certs', path.join(root, 'certs'), '--host', '127.0.0.1', '--port', '0'];
      assertOneLineError(await keepsync([...args, '--data', file]), 1, /data is a file, not a folder; choose another path/);
      const damaged = path.join(root, 'damaged');
      fs.mkdirSync(damaged);
      fs.writeFileSync(path.join(damaged, 'keepsync.db'), 'not a database');
      assertOneLineError(await keepsync([...args, '--data', damaged]), 1, /cannot open the database .*keepsync\.db: file is not a database; check the --data directory/);
      assert.equal(fs.readFileSync(path.join(damaged, 'keepsync.db'), 'utf8'), 'not a database', 'the damaged file is left as it was');
      const unreachable = await keepsync([...args, '--data', path.join(root, 'pg'), '--database-url', 'postgres://keepsync:secret@127.0.0.1:1/keepsync']);
      assertOneLineError(unreachable, 1, /cannot open the PostgreSQL database 127\.0\.0\.1:1\/keepsync: .*ECONNREFUSED.*check --database-url/);
      assert.doesNotMatch(unreachable.stderr, /secret/, 'the password in the URL is not printed');
      assertOneLineError(await keepsync([...args, '--data', path.join(root, 'pg'), '--database-url', 'keepsync-db']), 1, /database URL must look like postgres:\/\//);
    });
  });

  forEachDatabase((kind) => {
    let db: TestDatabase;
    let server: TestServer;
    const devices: TestDevice[] = [];
    const device = (name: string) => {
      const d = new TestDevice(name);
      devices.push(d);
      return d;
    };

    before(async () => {
      db = await kind.create();
      server = await new TestServer(db).start();
    });
    after(async () => {
      for (const d of devices) await d.cleanup();
      await server.cleanup();
      await db.drop();
    });

    it('refuses a second server on a port in use with one line', async () => {
      const other = new TestServer(db);
      try {
        const r = await keepsync(['server', '--data', other.dataDir, '--certs', other.certsDir, '--host', '127.0.0.1', '--port', String(server.port), ...(db.url ? ['--database-url', db.url] : [])]);
        assertOneLineError(r, 1, new RegExp(`port ${server.port} on 127\\.0\\.0\\.1 is already in use.*choose another --port`));
      } finally {
        await other.cleanup();
      }
    });

    it('pair refuses a garbage link, a wrong fingerprint, an unknown folder and a home inside the folder, leaving the link usable', async () => {
      const laptop = device('laptop');
      const link = await server.pairingLink();
      const wrongFp = link.replace(/fp=([0-9a-f])/, (_m, c: string) => `fp=${c === '0' ? '1' : '0'}`);
      const [garbage, mismatch, unknownFolder, inside] = await Promise.all([
        laptop.pair('the link from the NAS'),
        laptop.pair(wrongFp),
        laptop.pair(link, ['--folder', 'Nope']),
        keepsync(['pair', link, '--dir', laptop.dir, '--home', path.join(laptop.dir, '.keepsync')]),
      ]);
      assertOneLineError(garbage, 1, /not a pairing link/);
      assertOneLineError(mismatch, 1, /does not match the fingerprint in the pairing link.*nothing was sent/);
      assert.doesNotMatch(mismatch.stderr, /unpair/, 'a device that is not paired yet is not told to unpair');
      assertOneLineError(unknownFolder, 1, /the server has no folder named Nope/);
      assertOneLineError(inside, 1, /state directory .* is inside the synced folder .*use a --home outside it/);
      assert.deepEqual(listing(laptop.dir), [], 'nothing was written into the folder');
      assert.ok(!fs.existsSync(laptop.home), 'no pairing was stored');
      // The link was not used up by any of those.
      const ok = await laptop.pair(link);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /^paired with https:\/\/127\.0\.0\.1:\d+ as "laptop": folder Sync <-> /);
      assertOneLineError(await laptop.pair(await server.pairingLink()), 1, /already paired.*keepsync unpair/);
    });

    it('reset-password gives a password that logs in and ends the old admin sessions', async () => {
      const before = await AdminClient.login(server);
      const r = await keepsync(['server', 'reset-password', '--data', server.dataDir, ...(db.url ? ['--database-url', db.url] : [])]);
      assert.equal(r.code, 0, r.stderr);
      const password = r.stdout.trim();
      assert.match(password, /^\S{12,}$/);
      assert.equal((await before.request('GET', '/devices')).status, 401, 'the old session ended');
      const old = await httpsJson(`${server.url}/api/v1/session`, 'POST', { password: server.adminPassword });
      assert.equal(old.status, 401);
      server.adminPassword = password;
      assert.equal((await (await AdminClient.login(server)).request('GET', '/settings')).status, 200);
    });

    it('status shows the pending work of a long first sync; Ctrl-C stops it and the next run finishes it, nothing lost', async () => {
      const desktop = device('desktop');
      assert.equal((await desktop.pair(await server.pairingLink())).code, 0);
      const files = new Map<string, Buffer>();
      for (let i = 0; i < 12; i++) files.set(`photos/p${i}.jpg`, randomBytes(96 * 1024));
      for (const [rel, bytes] of files) desktop.write(rel, bytes);
      // 1.1 MiB at 256 KiB/s: the first sync takes seconds, long enough to look at it and interrupt it.
      const live = new Proc(['sync', '--home', desktop.home, '--max-upload', '256K']);
      try {
        const status = await waitFor('status to show pending uploads', async () => {
          const r = await desktop.run(['status', '--json']);
          const s = JSON.parse(r.stdout);
          return s.running && s.connected && s.pendingUp > 0 ? s : undefined;
        }, 15_000, 100);
        assert.equal(status.pendingUp, files.size + 1, 'the files and their folder');
        assert.equal(status.lastSyncAt, null);
        live.child.kill('SIGINT');
        assert.equal(await live.exited, 0, live.stderr);
        assert.doesNotMatch(live.stderr, /^\s+at |error/im, live.stderr);
      } finally {
        await live.stop('SIGKILL');
      }
      const stopped = JSON.parse((await desktop.run(['status', '--json'])).stdout);
      assert.equal(stopped.running, false);
      await desktop.syncOnce();
      assert.deepEqual(listing(desktop.dir), ['photos/', ...[...files.keys()].sort()]);
      // The same on the receiving side: Ctrl-C in the middle of the downloads, then resume.
      const laptop = devices.find((d) => d.name === 'laptop')!;
      const receiving = new Proc(['sync', '--home', laptop.home, '--max-download', '128K']);
      try {
        await waitFor('downloads to start', () => fs.existsSync(laptop.p('photos')), 15_000, 50);
        receiving.child.kill('SIGINT');
        assert.equal(await receiving.exited, 0, receiving.stderr);
      } finally {
        await receiving.stop('SIGKILL');
      }
      const arrived = listing(laptop.dir).filter((p) => p.endsWith('.jpg') && !path.basename(p).startsWith('.keepsync-'));
      assert.ok(arrived.length < files.size, 'the downloads were cut short');
      await laptop.syncOnce();
      assert.deepEqual(listing(laptop.dir), listing(desktop.dir), 'every file, and no temporary file left behind');
      for (const [rel, bytes] of files) assert.ok(fs.readFileSync(laptop.p(rel)).equals(bytes), `${rel} arrived whole`);
      assert.deepEqual(sortedTree(laptop.tree()), sortedTree(desktop.tree()));
      const verify = await keepsync(['server', 'verify', '--data', server.dataDir, ...(db.url ? ['--database-url', db.url] : [])]);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    });

    it('runs one sync per device: a second sync and unpair are refused while it runs, and work once it stopped', async () => {
      const laptop = devices.find((d) => d.name === 'laptop')!;
      await laptop.start();
      try {
        const pid = laptop.live!.child.pid;
        assertOneLineError(await laptop.run(['sync', '--once', '--quiet']), 1, new RegExp(`keepsync sync is already running for this device \\(process ${pid}\\)`));
        assertOneLineError(await laptop.run(['unpair']), 1, new RegExp(`keepsync sync is running for this device \\(process ${pid}\\); stop it first`));
        assert.ok(fs.existsSync(path.join(laptop.home, 'pairing.json')), 'still paired');
      } finally {
        assert.equal(await laptop.stop('SIGINT'), 0);
      }
      await laptop.syncOnce();
    });

    it('stops a running sync instead of deleting everything when the folder is emptied under it (a disk unmounted), and status says why', async () => {
      const laptop = devices.find((d) => d.name === 'laptop')!;
      const desktop = devices.find((d) => d.name === 'desktop')!;
      const before = sortedTree(desktop.tree());
      const away = tempDir('cli-unmounted');
      await laptop.start();
      try {
        // Everything leaves the folder at once, as when the disk under it goes away.
        fs.renameSync(laptop.p('photos'), path.join(away, 'photos'));
        const code = await waitFor('sync to stop', () => (laptop.live!.running ? undefined : String(laptop.live!.child.exitCode)), 15_000);
        assert.equal(code, '1', laptop.live!.stderr);
        assert.match(laptop.live!.stderr, /^keepsync: folder .* is empty or missing; not propagating deletions/m);
      } finally {
        await laptop.stop('SIGKILL');
      }
      const status = JSON.parse((await laptop.run(['status', '--json'])).stdout);
      assert.match(status.lastError, /is empty or missing/);
      await desktop.syncOnce();
      assert.deepEqual(sortedTree(desktop.tree()), before, 'nothing was deleted on the other device');
      // The disk back in place: syncing resumes without any change.
      fs.renameSync(path.join(away, 'photos'), laptop.p('photos'));
      fs.rmSync(away, { recursive: true, force: true });
      await laptop.syncOnce();
      assert.deepEqual(sortedTree(laptop.tree()), before);
      await desktop.syncOnce();
      assert.deepEqual(sortedTree(desktop.tree()), before);
    });

    it('device commands say in one line that the server is down, and work again once it is back', async () => {
      const laptop = devices.find((d) => d.name === 'laptop')!;
      await server.stop();
      try {
        const commands = [['sync', '--once', '--quiet'], ['versions', 'photos/p1.jpg'], ['trash'], ['restore', 'photos/p1.jpg'], ['trash', 'restore', 'x']];
        for (const r of await Promise.all(commands.map((args) => laptop.run(args)))) {
          assertOneLineError(r, 1, /cannot reach the server at 127\.0\.0\.1:\d+: connection refused \(is the server running\?\)/);
        }
        const status = await laptop.run(['status']);
        assert.equal(status.code, 0);
        assert.match(status.stdout, /^sync: +not running/m);
      } finally {
        await server.start();
      }
      const versions = await laptop.run(['versions', 'photos/p1.jpg', '--json']);
      assert.equal(versions.code, 0, versions.stderr);
      assert.equal(JSON.parse(versions.stdout)[0].current, true);
    });
  });
});
