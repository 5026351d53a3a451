import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CloseCode, HANDSHAKE_TIMEOUT_MS, MAX_FRAME, encodeMessage, packHashes, packManifest, unpackHashes,
  parseRelPath, type Op, type RelPath,
} from '@keepsync/protocol';
import { TestDevice, forEachDatabase, scenario, sortedTree, type Scenario } from '../helpers/cluster.js';
import { AdminClient, RawSocket, putOp, redeemPairing, syncUrl, type RawPairing } from '../helpers/rawDevice.js';
import { MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_ADDRESS } from '@keepsync/server';
import { waitFor } from '../helpers/wait.js';

/*
 * Security end to end (SPEC §3, §5, §6; SAFETY C4, F1, F2, F4, G1, I10): a
 * real server per test, real `keepsync` devices, and hand-written frames on
 * a raw WebSocket for what a well-behaved client never sends.
 */

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** Every file name under `dir`, recursively (missing dir: none). */
function namesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let list: fs.Dirent[];
    try {
      list = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of list) {
      out.push(path.join(d, e.name));
      if (e.isDirectory()) walk(path.join(d, e.name));
    }
  };
  walk(dir);
  return out;
}

describe('Security', function () {
  this.timeout(180_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let sockets: RawSocket[];

    /** A raw socket that afterEach terminates. */
    const track = (sock: RawSocket): RawSocket => {
      sockets.push(sock);
      return sock;
    };
    const welcomed = async (token: string) => {
      const r = await RawSocket.welcomed(s.server, token);
      track(r.sock);
      return r;
    };
    /** The folder's sequence as a fresh connection is told it in welcome. */
    const serverSeq = async (token: string): Promise<number> => {
      const { sock, welcome } = await welcomed(token);
      sock.terminate();
      return welcome.folder.seq;
    };

    beforeEach(async () => {
      sockets = [];
      s = await scenario(kind);
    });
    afterEach(async () => {
      for (const sock of sockets) sock.terminate();
      await s.cleanup();
    });

    describe('pairing and the pinned certificate (C4)', () => {
      it('refuses a pairing link whose fingerprint was altered, writing nothing and sending no code', async () => {
        const link = await s.server.pairingLink();
        const fp = new URL(link).searchParams.get('fp')!;
        assert.equal(fp, s.server.fingerprint, 'the link does not carry the server fingerprint');
        const altered = `${fp.slice(0, 40)}${fp[40] === '0' ? '1' : '0'}${fp.slice(41)}`;
        const bad = link.replace(`fp=${fp}`, `fp=${altered}`);
        assert.notEqual(bad, link);

        const mallory = new TestDevice('mallory');
        s.devices.push(mallory);
        const r = await mallory.pair(bad);
        assert.equal(r.code, 1, `pair exited ${r.code}: ${r.stdout}${r.stderr}`);
        const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
        assert.equal(lines.length, 1, `stderr is not one line:\n${r.stderr}`);
        assert.match(lines[0], /fingerprint/i);
        assert.ok(!fs.existsSync(path.join(mallory.home, 'pairing.json')), 'pairing.json was written for a refused server');
        assert.deepEqual(mallory.tree(), new Map(), 'the refused pairing wrote into the folder');

        // The code never reached the server: no device appeared and the same link still pairs once.
        const admin = await AdminClient.login(s.server);
        assert.deepEqual(await admin.devices(), []);
        const ok = await mallory.pair(link);
        assert.equal(ok.code, 0, ok.stderr);
        assert.ok(fs.existsSync(path.join(mallory.home, 'pairing.json')));
        assert.equal((await admin.devices()).length, 1);
      });

      it('refuses a server whose certificate no longer matches the pinned fingerprint, before sending the token', async () => {
        const laptop = await s.addDevice('laptop');
        const admin = await AdminClient.login(s.server);
        const seenBefore = (await admin.devices())[0];
        const file = path.join(laptop.home, 'pairing.json');
        const pairing = JSON.parse(fs.readFileSync(file, 'utf8'));
        pairing.fingerprint = createHash('sha256').update('some other certificate').digest('hex');
        fs.writeFileSync(file, JSON.stringify(pairing));
        laptop.write('local.txt', 'never uploaded');

        const r = await laptop.run(['sync', '--once', '--quiet']);
        assert.equal(r.code, 1, `sync exited ${r.code}: ${r.stderr}`);
        assert.match(r.stderr, /fingerprint/i);
        const after = (await admin.devices())[0];
        assert.equal(after.online, false);
        assert.deepEqual(after, seenBefore, 'the server saw the device (its token was sent to an unpinned certificate)');
        assert.equal((await admin.folders()).find((f) => f.name === 'Sync')!.files, 0);
        assert.equal(laptop.read('local.txt'), 'never uploaded');
      });
    });

    describe('removing a device (G1, I10)', () => {
      it('disconnects a device removed while it syncs live: it exits 1, keeps its files, cannot return; others sync on', async () => {
        const laptop = await s.addDevice('laptop');
        const desktop = await s.addDevice('desktop');
        const phone = await s.addDevice('phone');
        laptop.write('mine.txt', 'kept locally');
        laptop.write('sub/deep.txt', 'deep');
        await laptop.syncOnce();
        await laptop.start();
        const before = sortedTree(laptop.tree());
        const token = JSON.parse(fs.readFileSync(path.join(laptop.home, 'pairing.json'), 'utf8')).token as string;

        const admin = await AdminClient.login(s.server);
        const id = await admin.deviceId('laptop');
        await waitFor('laptop to show online', async () => (await admin.devices()).find((d) => d.id === id)?.online);
        const live = laptop.live!;
        const t0 = Date.now();
        await admin.removeDevice(id);
        await waitFor('the removed device\'s sync to exit', () => !live.running, 5_000);
        const code = await live.exited;
        const took = Date.now() - t0;
        laptop.live = undefined;
        assert.equal(code, 1, `live sync exited ${code} after ${took} ms: ${live.stderr}`);
        const lastLine = live.stderr.trim().split('\n').at(-1) ?? '';
        assert.match(lastLine, /removed/i, `stderr: ${live.stderr}`);
        assert.deepEqual(sortedTree(laptop.tree()), before, 'the removed device lost local files');
        assert.ok(!(await admin.devices()).some((d) => d.id === id), 'the removed device is still listed');

        // The same home cannot sync again, and the raw token is refused as revoked.
        const again = await laptop.run(['sync', '--once', '--quiet']);
        assert.equal(again.code, 1, `sync --once after removal exited ${again.code}: ${again.stderr}`);
        assert.match(again.stderr, /removed/i);
        assert.deepEqual(sortedTree(laptop.tree()), before);
        const raw = track(await RawSocket.open(s.server));
        raw.hello(token);
        const err = await raw.next('error');
        assert.equal(err.code, 'TOKEN_REVOKED');
        assert.equal(await raw.waitClosed(), CloseCode.TOKEN_REVOKED);
        assert.ok(!raw.received.some((m) => m.type !== 'error'), `a revoked token got data: ${raw.describe()}`);

        // Everyone else keeps syncing.
        desktop.write('after-removal.txt', 'still syncing');
        await desktop.syncOnce();
        await phone.syncOnce();
        assert.equal(phone.read('after-removal.txt'), 'still syncing');
        assert.equal(phone.read('mine.txt'), 'kept locally');
      });

      it('closes a removed device\'s live connection in under a second with TOKEN_REVOKED', async () => {
        const dev = await redeemPairing(s.server, 'raw');
        const { sock } = await welcomed(dev.token);
        const admin = await AdminClient.login(s.server);
        const t0 = Date.now();
        await admin.removeDevice(dev.deviceId);
        const code = await sock.waitClosed(5_000);
        const took = Date.now() - t0;
        assert.equal(code, CloseCode.TOKEN_REVOKED);
        assert.ok(took < 1_000, `the removed device's socket closed after ${took} ms`);
        // Removing it again is a 404, not a crash; the server still serves others.
        const r = await admin.request('DELETE', `/devices/${dev.deviceId}`);
        assert.equal(r.status, 404);
        const other = await redeemPairing(s.server, 'other');
        await welcomed(other.token);
      });
    });

    describe('hostile frames on an authenticated connection (F1, F2, F4)', () => {
      let writer: TestDevice;
      let reader: TestDevice;
      let fuzzer: RawPairing;

      beforeEach(async () => {
        writer = await s.addDevice('writer');
        reader = await s.addDevice('reader');
        writer.write('before.txt', 'before');
        await writer.syncOnce();
        await reader.syncOnce();
        fuzzer = await redeemPairing(s.server, 'fuzzer');
      });

      /** The server still serves: a normal device syncs a new file to another. */
      async function stillServes(name: string): Promise<void> {
        assert.ok(s.server.proc.running, `the server exited: ${s.server.proc.stderr}`);
        writer.write(name, `content of ${name}`);
        await writer.syncOnce();
        await reader.syncOnce();
        assert.equal(reader.read(name), `content of ${name}`);
      }

      it('answers each malformed frame with an error and closes only that connection with 4400', async () => {
        const seq = await serverSeq(fuzzer.token);
        const truncated = Buffer.from(encodeMessage({ type: 'list', id: 1, since: 0 })).subarray(0, 6);
        // A map whose `type` is a str32 declaring 4 GiB that never comes.
        const hugeDeclared = Buffer.concat([Buffer.from([0x81, 0xa4]), Buffer.from('type'), Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xf0]), Buffer.from('x')]);
        const cases: Array<[string, (sock: RawSocket) => void]> = [
          ['random bytes', (sock) => sock.sendRaw(randomBytes(512))],
          ['a text frame', (sock) => sock.sendRaw('{"type":"list","id":1,"since":0}', false)],
          ['msgpack of an unknown type', (sock) => sock.send({ type: 'delete-everything', id: 1 })],
          ['msgpack that is not a map', (sock) => sock.sendRaw(Buffer.from(encodeMessage([1, 2, 3] as never)))],
          ['a truncated frame', (sock) => sock.sendRaw(truncated)],
          ['a string declaring 4 GiB', (sock) => sock.sendRaw(hugeDeclared)],
          ['a list with a negative id', (sock) => sock.send({ type: 'list', id: -1, since: 0 })],
          ['a second hello', (sock) => sock.hello(fuzzer.token)],
        ];
        for (const [what, send] of cases) {
          const { sock } = await welcomed(fuzzer.token);
          send(sock);
          const err = await sock.next('error').catch((e) => assert.fail(`${what}: ${e}`));
          assert.match(err.code, /^FRAME_(INVALID|TOO_LARGE)$/, `${what}: ${err.code} ${err.message}`);
          assert.equal(await sock.waitClosed(), CloseCode.PROTOCOL_ERROR, `${what}: ${sock.describe()}`);
          assert.deepEqual(sock.undecodable, [], `${what}: the server sent frames its own protocol rejects`);
          assert.deepEqual(sock.received.map((m) => m.type), ['welcome', 'error'], `${what}: ${sock.describe()}`);
        }
        assert.equal(await serverSeq(fuzzer.token), seq, 'a malformed frame changed the folder');
        await stillServes('after-malformed.txt');
      });

      it('refuses hostile paths in pushes without writing anything, inside or outside the data dir', async () => {
        const marker = `keepsync-escape-${randomBytes(6).toString('hex')}`;
        const passwd = fs.statSync('/etc/passwd', { throwIfNoEntry: false });
        const serverFilesBefore = namesUnder(s.server.root).filter((f) => !f.startsWith(s.server.dataDir + path.sep)).sort();
        const seq = await serverSeq(fuzzer.token);
        const payload = Buffer.from(`pwned ${marker}\n`);
        const hostile = [
          '../../etc/passwd', `../../${marker}`, `../../../../../../../../..${os.tmpdir()}/${marker}`, `/tmp/${marker}`,
          `a/../../${marker}`, `C:\\Windows\\${marker}`, `..\\..\\${marker}`, `./${marker}`, `a//${marker}`,
          `${marker}\u0000.txt`, `.keepsync-${marker}`, `${'x'.repeat(300)}/${marker}`, '',
        ];
        const ops: Array<[string, Op]> = [];
        for (const p of hostile) {
          ops.push([`put ${JSON.stringify(p)}`, putOp(p, payload)]);
        }
        ops.push(['mkdir ../escape', { op: 'mkdir', path: `../${marker}` as never }]);
        ops.push(['move before.txt to ../', { op: 'move', from: 'before.txt' as never, to: `../../${marker}` as never, kind: 'file', base: 1 }]);
        ops.push(['move from ../../etc/passwd', { op: 'move', from: '../../etc/passwd' as never, to: `${marker}.txt` as never, kind: 'file', base: 1 }]);
        ops.push(['delete ../before.txt', { op: 'delete', path: '../before.txt' as never, kind: 'file', base: 1, seq }]);

        for (const [what, op] of ops) {
          const { sock } = await welcomed(fuzzer.token);
          // The chunk is really uploaded, so the path is the only thing wrong with the push.
          sock.send({ type: 'put-chunk', id: 1, hash: Buffer.from(sha256(payload), 'hex'), data: payload });
          await sock.next('chunk-ok', (m) => m.id === 1);
          sock.send({ type: 'push', id: 2, ops: [op] });
          const err = await sock.next('error').catch((e) => assert.fail(`${what}: ${e}`));
          assert.match(err.code, /^(PATH_INVALID|FRAME_INVALID)$/, `${what}: ${err.code} ${err.message}`);
          // If the connection stays open, a later request flushes out any answer to the push (answers come in order).
          if (sock.isOpen) sock.send({ type: 'list', id: 3, since: seq });
          await waitFor(`${what}: the connection to close or answer`, () => sock.closeCode !== undefined || sock.received.some((m) => m.type === 'changes'), 5_000);
          assert.ok(!sock.received.some((m) => m.type === 'pushed'), `${what}: the push was applied: ${sock.describe()}`);
          sock.terminate();
        }

        // Nothing outside the data dir: no marker anywhere near, /etc/passwd untouched, the server's other files unchanged.
        const places = [os.tmpdir(), path.dirname(s.server.root), s.server.root, process.cwd(), path.dirname(process.cwd()), '/tmp', '/'];
        for (const place of places) {
          const found = fs.readdirSync(place).filter((n) => n.includes(marker));
          assert.deepEqual(found, [], `a hostile path wrote into ${place}`);
        }
        assert.deepEqual(namesUnder(s.server.root).filter((f) => f.includes(marker)), []);
        assert.deepEqual(namesUnder(s.server.root).filter((f) => !f.startsWith(s.server.dataDir + path.sep)).sort(), serverFilesBefore);
        const passwdAfter = fs.statSync('/etc/passwd', { throwIfNoEntry: false });
        assert.equal(passwdAfter?.mtimeMs, passwd?.mtimeMs, '/etc/passwd changed');
        assert.equal(passwdAfter?.size, passwd?.size, '/etc/passwd changed');

        // Nothing inside the folder either.
        assert.equal(await serverSeq(fuzzer.token), seq, 'a hostile push changed the folder');
        const readerBefore = sortedTree(reader.tree());
        await reader.syncOnce();
        assert.deepEqual(sortedTree(reader.tree()), readerBefore, 'a hostile push reached another device');
        assert.equal(reader.read('before.txt'), 'before');
        await stillServes('after-hostile-paths.txt');
      });

      it('refuses a push naming chunks never uploaded (CHUNK_MISSING) and commits nothing of it', async () => {
        const { sock, welcome } = await welcomed(fuzzer.token);
        const ghost = randomBytes(4096);
        // One push: a harmless mkdir, then a put whose chunk the server never received. Refused whole.
        sock.send({ type: 'push', id: 5, ops: [{ op: 'mkdir', path: parseRelPath('should-not-exist') }, putOp('ghost.bin', ghost)] });
        const err = await sock.next('error', (m) => m.id === 5);
        assert.equal(err.code, 'CHUNK_MISSING', err.message);
        assert.ok(!sock.received.some((m) => m.type === 'pushed'), sock.describe());

        // A delta against a version that does not exist is refused too.
        const good = Buffer.from('real chunk');
        sock.send({ type: 'put-chunk', id: 6, hash: Buffer.from(sha256(good), 'hex'), data: good });
        await sock.next('chunk-ok', (m) => m.id === 6);
        sock.send({
          type: 'push', id: 7, ops: [{
            op: 'put', path: parseRelPath('delta.bin'), base: 0, size: good.length, hash: sha256(good), mtime: Date.now(), exec: false,
            manifest: { delta: { base: 999_999, head: 0, tail: 0, middle: packManifest([{ hash: sha256(good), size: good.length }]) } },
          }],
        });
        const err2 = await sock.next('error', (m) => m.id === 7);
        assert.match(err2.code, /^(VERSION_UNKNOWN|CHUNK_MISSING|FRAME_INVALID)$/, err2.message);

        // The connection still answers, and the feed shows nothing new.
        if (sock.isOpen) {
          sock.send({ type: 'list', id: 8, since: welcome.folder.seq });
          const changes = await sock.next('changes', (m) => m.id === 8);
          assert.deepEqual(changes.entries.map((e) => e.path), [], 'a refused push was committed');
          assert.equal(changes.seq, welcome.folder.seq);
        }
        assert.equal(await serverSeq(fuzzer.token), welcome.folder.seq, 'a refused push changed the folder');
        await reader.syncOnce();
        assert.ok(!reader.exists('ghost.bin') && !reader.exists('should-not-exist') && !reader.exists('delta.bin'), sortedTree(reader.tree()).join(' '));
        await stillServes('after-missing-chunk.txt');
      });

      it('refuses a chunk whose data does not match its hash and stores nothing of it', async () => {
        const { sock, welcome } = await welcomed(fuzzer.token);
        const claimed = Buffer.from('what the hash says');
        const actual = Buffer.from('what was really sent');
        sock.send({ type: 'put-chunk', id: 3, hash: Buffer.from(sha256(claimed), 'hex'), data: actual });
        const err = await sock.next('error', (m) => m.id === 3);
        assert.equal(err.code, 'CHUNK_HASH_MISMATCH', err.message);
        assert.ok(!sock.received.some((m) => m.type === 'chunk-ok'), sock.describe());

        // Neither hash is stored, so a put naming the claimed hash is refused.
        sock.send({ type: 'has-chunks', id: 4, hashes: packHashes([sha256(claimed), sha256(actual)]) });
        const missing = await sock.next('missing', (m) => m.id === 4);
        assert.deepEqual(unpackHashes(missing.hashes).sort(), [sha256(claimed), sha256(actual)].sort());
        sock.send({ type: 'push', id: 5, ops: [putOp('forged.txt', claimed)] });
        const err2 = await sock.next('error', (m) => m.id === 5);
        assert.equal(err2.code, 'CHUNK_MISSING');
        assert.equal(await serverSeq(fuzzer.token), welcome.folder.seq);
        await stillServes('after-bad-chunk.txt');
        assert.ok(!reader.exists('forged.txt'));
      });
    });

    describe('unauthenticated connections (I10, G4)', () => {
      it('refuses unknown tokens with 4403, a first frame that is not hello with 4400, and silence with 4408', async () => {
        const real = await redeemPairing(s.server, 'real');
        // Silence: the handshake times out. Runs while the rest of the test goes on.
        const silent = track(await RawSocket.open(s.server));
        const silentStarted = Date.now();

        const forged = [randomBytes(32).toString('base64url'), `${real.token.slice(0, -1)}${real.token.endsWith('A') ? 'B' : 'A'}`, '', 'x'.repeat(256)];
        for (const token of forged) {
          const sock = track(await RawSocket.open(s.server));
          sock.hello(token);
          const err = await sock.next('error');
          assert.equal(err.code, 'TOKEN_INVALID', `token ${JSON.stringify(token.slice(0, 12))}: ${err.message}`);
          assert.equal(await sock.waitClosed(), CloseCode.TOKEN_INVALID);
          assert.deepEqual(sock.received.map((m) => m.type), ['error'], `an unknown token got data: ${sock.describe()}`);
        }

        // Asking for data before hello gets no data.
        for (const first of [{ type: 'list', id: 1, since: 0 }, { type: 'get-chunks', id: 2, hashes: packHashes([sha256(Buffer.from('x'))]) }]) {
          const sock = track(await RawSocket.open(s.server));
          sock.send(first);
          const err = await sock.next('error');
          assert.equal(err.code, 'FRAME_INVALID', err.message);
          assert.equal(await sock.waitClosed(), CloseCode.PROTOCOL_ERROR);
          assert.deepEqual(sock.received.map((m) => m.type), ['error'], sock.describe());
        }

        const code = await silent.waitClosed(HANDSHAKE_TIMEOUT_MS + 5_000);
        assert.equal(code, CloseCode.HANDSHAKE_TIMEOUT);
        assert.ok(Date.now() - silentStarted <= HANDSHAKE_TIMEOUT_MS + 3_000, 'the handshake timeout is too long');
        assert.deepEqual(silent.received.map((m) => m.type), [], silent.describe());

        // The genuine token still works.
        await welcomed(real.token);
      });

      it(`holds at most ${MAX_UNAUTHENTICATED} connections that have not said hello (${MAX_UNAUTHENTICATED_PER_ADDRESS} from one address), refusing more with 503, and serves again once they go`, async () => {
        const real = await redeemPairing(s.server, 'real');
        // From loopback addresses other than the devices' 127.0.0.1, as from other machines.
        const from = (i: number) => ({ localAddress: `127.0.0.${10 + i}` });
        const perAddress = MAX_UNAUTHENTICATED_PER_ADDRESS;
        const silent = await Promise.all(Array.from({ length: MAX_UNAUTHENTICATED }, async (_, i) => {
          const sock = track(new RawSocket(syncUrl(s.server), {}, from(Math.floor(i / perAddress))));
          await sock.opened;
          return sock;
        }));
        // One more from an address that holds its share, and one from a new address once all are taken.
        for (const address of [from(0), from(Math.ceil(MAX_UNAUTHENTICATED / perAddress))]) {
          const refused = track(new RawSocket(syncUrl(s.server), {}, address));
          await assert.rejects(refused.opened);
          assert.equal(refused.refusedStatus, 503, address.localAddress);
        }
        for (const sock of silent) sock.terminate();
        // Once they are gone, a genuine device is welcomed again.
        await waitFor('a device to be welcomed again', () => welcomed(real.token));
        assert.ok(silent.every((sock) => sock.received.length === 0), 'a connection without hello was sent data');
      });

      it('refuses WebSocket upgrades that carry an Origin header (cross-site pages) with HTTP 403', async () => {
        const real = await redeemPairing(s.server, 'real');
        for (const origin of ['https://evil.example', s.server.url, 'null']) {
          const sock = track(new RawSocket(`${s.server.url.replace(/^http/, 'ws')}/api/v1/sync`, { Origin: origin }));
          await assert.rejects(sock.opened, /closed before opening/, `an upgrade with Origin ${origin} was accepted`);
          assert.equal(sock.refusedStatus, 403, `Origin ${origin}: ${sock.refusedStatus}`);
        }
        // The same upgrade without Origin (a device) is accepted.
        await welcomed(real.token);
      });
    });

    describe('oversized frames (F1, F5, I9)', () => {
      it('closes a connection sending a frame over the maximum payload; the server keeps serving', async () => {
        const writer = await s.addDevice('writer');
        const reader = await s.addDevice('reader');
        const dev = await redeemPairing(s.server, 'big');
        const seq = await serverSeq(dev.token);
        const big = Buffer.alloc(17 * 1024 * 1024, 0x41);
        assert.ok(big.length > MAX_FRAME);

        // After hello, and before it.
        const { sock } = await welcomed(dev.token);
        sock.sendRaw(big);
        const code = await sock.waitClosed(20_000);
        assert.ok(([1009, CloseCode.PROTOCOL_ERROR] as number[]).includes(code), `closed with ${code} ${sock.closeReason}`);
        const early = track(await RawSocket.open(s.server));
        early.sendRaw(big);
        const code2 = await early.waitClosed(20_000);
        assert.ok(([1009, CloseCode.PROTOCOL_ERROR] as number[]).includes(code2), `closed with ${code2} ${early.closeReason}`);

        // A frame header declaring 1 TiB, with no payload behind it: closed at once, nothing buffered.
        const { sock: liar } = await welcomed(dev.token);
        const header = Buffer.alloc(14);
        header[0] = 0x82; // FIN + binary
        header[1] = 0x80 | 127; // masked, 64-bit length
        header.writeBigUInt64BE(1n << 40n, 2);
        randomBytes(4).copy(header, 10);
        (liar.ws as unknown as { _socket: NodeJS.WritableStream })._socket.write(header);
        const code3 = await liar.waitClosed(5_000);
        assert.ok(([1009, CloseCode.PROTOCOL_ERROR] as number[]).includes(code3), `closed with ${code3} ${liar.closeReason}`);

        assert.ok(s.server.proc.running, `the server exited: ${s.server.proc.stderr}`);
        assert.equal(await serverSeq(dev.token), seq);
        writer.write('after-big.txt', 'fine');
        await writer.syncOnce();
        await reader.syncOnce();
        assert.equal(reader.read('after-big.txt'), 'fine');
      });
    });
  });
});
