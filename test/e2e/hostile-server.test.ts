import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { encode } from '@msgpack/msgpack';
import { MAX_CHUNK_SIZE, encodeMessage, packManifest, unpackHashes, type ClientMessage } from '@keepsync/protocol';
import { TestDevice, tempDir } from '../helpers/cluster.js';
import { HostileServer, type Answer, type Handler } from '../helpers/hostileServer.js';
import { waitFor } from '../helpers/wait.js';

/*
 * A hostile server (SAFETY.md F3): a device paired with it (its certificate
 * pinned) gets malformed frames, hostile paths, chunks that do not match
 * their hash and absurd sizes. The device must refuse with a one-line
 * error, write nothing outside its folder, leave no temporary file and keep
 * its own files as they were.
 */

const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');

/** A file entry of the changes feed, its manifest inline. */
function fileEntry(p: string, content: Buffer, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    path: p, kind: 'file', deleted: false, seq: 1, version: 1, size: content.length, hash: sha(content), mtime: 1_700_000_000_000,
    exec: false, manifest: packManifest([{ hash: sha(content), size: content.length }]), ...fields,
  };
}

/** Answers list with `entries` (raw: anything), and chunk requests with `chunk`. */
function feed(entries: unknown[], chunk?: (hash: string, id: number) => Answer | Answer[]): Handler {
  return (msg: ClientMessage) => {
    switch (msg.type) {
      case 'list':
        return encode({ type: 'changes', id: msg.id, entries, seq: 1, more: false });
      case 'get-chunks':
        return unpackHashes(msg.hashes).flatMap((h): Answer[] => [chunk?.(h, msg.id) ?? []].flat());
      case 'has-chunks':
        return { type: 'missing', id: msg.id, hashes: msg.hashes };
      case 'put-chunk':
        return { type: 'chunk-ok', id: msg.id };
      case 'push':
        return { type: 'pushed', id: msg.id, results: msg.ops.map((_, i) => ({ status: 'ok', version: i + 1, seq: i + 2 })) };
      default:
        return { type: 'error', id: 'id' in msg ? msg.id : 0, code: 'NOT_FOUND', message: 'no' };
    }
  };
}

/** Every file and folder under `dir` with its content and mtime. */
function snapshot(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort().map((p) => {
    const st = fs.lstatSync(path.join(dir, p));
    return st.isFile() ? `${p} ${st.mtimeMs} ${sha(fs.readFileSync(path.join(dir, p)))}` : `${p}/`;
  });
}

describe('A hostile server (F3)', function () {
  this.timeout(60_000);
  let fake: HostileServer | undefined;
  let device: TestDevice;
  let before: string[];
  /** Where an absolute path from the server would land. */
  let elsewhere: string;

  beforeEach(() => {
    device = new TestDevice('victim');
    device.write('mine.txt', 'my own file');
    device.write('docs/notes.txt', 'my notes');
    before = snapshot(device.dir);
    elsewhere = tempDir('elsewhere');
  });
  afterEach(async () => {
    await fake?.stop();
    fake = undefined;
    await device.cleanup();
    fs.rmSync(elsewhere, { recursive: true, force: true });
  });

  /** One `sync --once` against a fake server answering through `handler`. */
  async function syncAgainst(handler: Handler) {
    fake = await new HostileServer(handler).start();
    fake.adopt(device);
    return device.run(['sync', '--once', '--quiet'], 45_000);
  }

  /** The device refused with one line matching `pattern`, and nothing of it was harmed. */
  function refused(r: { code: number; stderr: string }, pattern: RegExp): void {
    assert.equal(r.code, 1, `exit ${r.code}: ${r.stderr}`);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, `not one line:\n${r.stderr}`);
    assert.match(lines[0], pattern);
    unharmed();
  }

  function unharmed(): void {
    assert.deepEqual(snapshot(device.dir), before, 'the device\'s own files changed');
    assert.deepEqual(fs.readdirSync(device.root).sort(), ['folder', 'home'], 'something was written beside the synced folder');
    assert.deepEqual(fs.readdirSync(elsewhere), [], 'something was written outside through an absolute path');
    assert.equal(fs.existsSync(path.join(path.dirname(device.root), 'escaped.txt')), false);
  }

  describe('malformed frames', () => {
    const frames: Array<[string, Uint8Array]> = [
      ['random bytes', randomBytes(200)],
      ['truncated msgpack', encode({ type: 'changes', id: 1, entries: [], seq: 1, more: false }).subarray(0, 10)],
      ['not a map', encode([1, 2, 3])],
      ['an unknown type', encode({ type: 'format-disk', id: 1 })],
      ['entries that are not a list', encode({ type: 'changes', id: 1, entries: 'all', seq: 1, more: false })],
      ['a negative sequence', encode({ type: 'changes', id: 1, entries: [], seq: -5, more: false })],
      ['a manifest of broken records', encode({ type: 'changes', id: 1, entries: [{ ...fileEntry('a.txt', Buffer.from('a')), manifest: new Uint8Array(35) }], seq: 1, more: false })],
      ['a chunk of impossible size in a manifest', encode({ type: 'changes', id: 1, entries: [{ ...fileEntry('a.txt', Buffer.from('a')), manifest: packManifest([{ hash: sha('a'), size: MAX_CHUNK_SIZE + 1 }]) }], seq: 1, more: false })],
    ];
    for (const [what, frame] of frames) {
      it(`refuses ${what}`, async () => {
        const r = await syncAgainst((msg) => (msg.type === 'list' ? frame : undefined));
        refused(r, /^keepsync: the server sent an invalid (frame|answer)/);
      });
    }

    it('refuses a frame declaring a huge length before reading it', async () => {
      const r = await syncAgainst((msg, _send, ws) => {
        if (msg.type !== 'list') return undefined;
        // A binary frame header claiming 2^40 bytes, written on the socket as is.
        const header = Buffer.from([0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0]);
        (ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(header);
        return undefined;
      });
      refused(r, /^keepsync: .*(too large|1009|closed)/i);
    });
  });

  describe('hostile paths', () => {
    const paths: Array<[string, unknown]> = [
      ['a parent reference', '../escaped.txt'],
      ['a parent reference inside', 'docs/../../escaped.txt'],
      ['an absolute path', '/ABS/evil.txt'],
      ['a Windows drive path', 'C:\\evil.txt'],
      ['a NUL', 'evil\0.txt'],
      ['a control character', 'evil\n.txt'],
      ['an over-long name', `${'x'.repeat(300)}.txt`],
      ['an over-long path', `${'d/'.repeat(1100)}evil.txt`],
      ['an empty segment', 'docs//evil.txt'],
      ['a dot segment', './evil.txt'],
      ['an empty path', ''],
      ['a temporary name', '.keepsync-0123456789ab'],
      ['a number', 42],
    ];
    for (const [what, p] of paths) {
      it(`refuses ${what}`, async () => {
        const where = typeof p === 'string' ? p.replace('/ABS', elsewhere) : p;
        const r = await syncAgainst(feed([fileEntry(where as string, Buffer.from('evil'))], (h, id) => ({ type: 'chunk-data', id, hash: Buffer.from(h, 'hex'), data: Buffer.from('evil') })));
        refused(r, /^keepsync: the server sent an invalid (frame|answer)/);
      });
    }

    it('refuses a move from a hostile path', async () => {
      const r = await syncAgainst(feed([{ ...fileEntry('moved.txt', Buffer.from('x')), from: '../../etc/passwd' }]));
      refused(r, /^keepsync: the server sent an invalid frame/);
    });
  });

  describe('content', () => {
    it('refuses a chunk that does not match its hash, writing nothing', async () => {
      const r = await syncAgainst(feed([fileEntry('evil.txt', Buffer.from('the real content'))], (h, id) => ({ type: 'chunk-data', id, hash: Buffer.from(h, 'hex'), data: Buffer.from('something else') })));
      refused(r, /^keepsync: .*does not match its hash/);
      assert.equal(device.exists('evil.txt'), false);
    });

    it('refuses a chunk it did not ask for', async () => {
      const r = await syncAgainst(feed([fileEntry('evil.txt', Buffer.from('the real content'))], (_h, id) => ({ type: 'chunk-data', id, hash: Buffer.from(sha('other'), 'hex'), data: Buffer.from('other') })));
      refused(r, /^keepsync: .*(not ask|does not match)/);
      assert.equal(device.exists('evil.txt'), false);
    });

    it('refuses chunks that are right but add up to another file than announced', async () => {
      const chunk = Buffer.from('a right chunk');
      const entry = fileEntry('evil.txt', chunk, { hash: sha('the announced file') });
      const r = await syncAgainst(feed([entry], (h, id) => ({ type: 'chunk-data', id, hash: Buffer.from(h, 'hex'), data: chunk })));
      refused(r, /^keepsync: .*evil\.txt.*does not match/);
      assert.equal(device.exists('evil.txt'), false);
    });

    it('refuses a file whose declared size is not what its chunks add up to', async () => {
      const content = Buffer.from('small');
      const r = await syncAgainst(feed([fileEntry('huge.bin', content, { size: 2 ** 50 })], (h, id) => ({ type: 'chunk-data', id, hash: Buffer.from(h, 'hex'), data: content })));
      refused(r, /^keepsync: .*huge\.bin.*size/);
      assert.equal(device.exists('huge.bin'), false);
    });

    it('refuses a huge file announced with chunks that never match, allocating nothing', async () => {
      const records = Array.from({ length: 16 }, (_, i) => ({ hash: sha(`chunk ${i}`), size: MAX_CHUNK_SIZE }));
      const manifest = packManifest(records);
      const entry = { ...fileEntry('huge.bin', Buffer.alloc(0)), size: 16 * MAX_CHUNK_SIZE, hash: sha('whole'), manifest };
      const junk = Buffer.alloc(1024 * 1024, 7);
      const r = await syncAgainst(feed([entry], (h, id) => ({ type: 'chunk-data', id, hash: Buffer.from(h, 'hex'), data: junk })));
      refused(r, /^keepsync: .*(does not match|space)/);
      assert.equal(device.exists('huge.bin'), false);
    });

    it('shows an error from the server on one line, however it is written', async () => {
      const r = await syncAgainst((msg) => (msg.type === 'list' ? { type: 'error', id: msg.id, code: 'INTERNAL', message: 'it broke\n    at evil (/etc/passwd:1:1)\r\u001b[2Jcleared' } : undefined));
      refused(r, /^keepsync: it broke/);
    });

    it('keeps running and retrying later when live, writing nothing', async () => {
      fake = await new HostileServer(feed([fileEntry('evil.txt', Buffer.from('the real content'))], (h, id) => ({ type: 'chunk-data', id, hash: Buffer.from(h, 'hex'), data: Buffer.from('something else') }))).start();
      fake.adopt(device);
      // Not waiting to see it connected: against this server it is connected only for a moment each time.
      device.launch();
      await waitFor('the device to report the bad content', () => /evil\.txt that does not match its hash/.test(device.live!.stderr));
      const requests = () => fake!.received.filter((m) => m.type === 'get-chunks').length;
      const first = requests();
      await waitFor('the device to try again', () => requests() > first, 30_000);
      assert.equal(device.live!.running, true, device.live!.stderr);
      const stderr = device.live!.stderr;
      await device.stop();
      for (const line of stderr.split('\n')) assert.doesNotMatch(line, /^\s+at /, stderr);
      assert.equal(device.exists('evil.txt'), false);
      unharmed();
    });
  });

  describe('silence and endless paging', () => {
    /** Silence after which the device gives up in these tests (the default is 120 s). */
    const SILENCE = 3000;
    beforeEach(() => {
      device.env = { KEEPSYNC_REQUEST_SILENCE_MS: String(SILENCE) };
    });

    it('gives up on a server that takes the socket and never welcomes', async () => {
      fake = await new HostileServer(feed([])).start();
      fake.welcomes = false;
      fake.adopt(device);
      const started = Date.now();
      const r = await device.run(['sync', '--once', '--quiet'], 45_000);
      console.log(`      gave up after ${Date.now() - started} ms (silence allowed: ${SILENCE} ms)`);
      refused(r, /^keepsync: the server did not answer this device's hello within 3 s; .*check it/);
    });

    for (const request of ['list', 'get-chunks'] as const) {
      it(`gives up on a server that answers pings but never a ${request} request`, async () => {
        const answer = feed([fileEntry('evil.txt', Buffer.from('never comes'))]);
        const started = Date.now();
        const r = await syncAgainst((msg, send, ws) => (msg.type === request ? undefined : answer(msg, send, ws)));
        console.log(`      gave up after ${Date.now() - started} ms (silence allowed: ${SILENCE} ms)`);
        refused(r, new RegExp(`^keepsync: the server has not answered \\(a ${request} request\\) for \\d+ s though the connection is up; .*check it`));
        assert.ok(fake!.received.some((m) => m.type === request), `no ${request} was sent`);
        assert.equal(device.exists('evil.txt'), false);
      });
    }

    it('gives up on a server that pages forever without moving on', async () => {
      const r = await syncAgainst((msg) => (msg.type === 'list' ? encode({ type: 'changes', id: msg.id, entries: [fileEntry('evil.txt', Buffer.from('x'))], seq: 1, more: true }) : undefined));
      refused(r, /^keepsync: the server sent an invalid answer: it keeps paging its changes without moving past sequence 1/);
      assert.ok(fake!.received.filter((m) => m.type === 'list').length <= 2);
    });

    it('gives up on a server that pages forever, one new change at a time', async () => {
      const r = await syncAgainst((msg) => {
        if (msg.type !== 'list') return undefined;
        const seq = msg.since + 1;
        return encode({ type: 'changes', id: msg.id, entries: [fileEntry(`evil-${seq}.txt`, Buffer.from('x'), { seq })], seq, more: true });
      });
      refused(r, /^keepsync: the server sent an invalid answer: it keeps paging its changes past sequence \d+, beyond the 1 it announced/);
      const lists = fake!.received.filter((m) => m.type === 'list').length;
      console.log(`      stopped after ${lists} pages`);
      assert.ok(lists < 100, `${lists} pages`);
    });

    it('does not give up on a chunk whose bytes keep coming, however slowly', async () => {
      const content = randomBytes(256 * 1024);
      const frame = encodeMessage;
      const r = await syncAgainst(feed([fileEntry('slow.bin', content)], (h, id) => {
        // Written by hand on the socket, a piece every 250 ms: the whole frame takes twice the silence allowed.
        const body = Buffer.from(frame({ type: 'chunk-data', id, hash: Buffer.from(h, 'hex'), data: content }));
        const header = Buffer.alloc(10);
        header[0] = 0x82;
        header[1] = 127;
        header.writeBigUInt64BE(BigInt(body.length), 2);
        const whole = Buffer.concat([header, body]);
        const socket = (fake!.wss!.clients.values().next().value as unknown as { _socket: { write(b: Buffer): void } })._socket;
        const pieces = Math.ceil((2 * SILENCE) / 250);
        const size = Math.ceil(whole.length / pieces);
        let i = 0;
        const next = () => {
          socket.write(whole.subarray(i * size, (i + 1) * size));
          if (++i < pieces) setTimeout(next, 250);
        };
        next();
        return undefined;
      }));
      assert.equal(r.code, 0, r.stderr);
      assert.ok(fs.readFileSync(device.p('slow.bin')).equals(content));
    });

    it('reports a silent server once when live, and tries again waiting longer each time', async () => {
      const answer = feed([]);
      fake = await new HostileServer((msg, send, ws) => (msg.type === 'list' ? undefined : answer(msg, send, ws))).start();
      fake.adopt(device);
      device.launch();
      const lists = () => fake!.received.filter((m) => m.type === 'list').length;
      await waitFor('the device to report the silence', () => /has not answered \(a list request\)/.test(device.live!.stderr), 30_000);
      await waitFor('the device to try twice more', () => lists() >= 3, 60_000);
      assert.equal(device.live!.running, true, device.live!.stderr);
      const stderr = device.live!.stderr;
      await device.stop();
      const reports = stderr.split('\n').filter((l) => /has not answered/.test(l));
      assert.equal(reports.length, 1, stderr);
      assert.match(reports[0], /waiting longer each time/);
      unharmed();
    });
  });

  it('syncs nothing from a server whose certificate is not the pinned one', async () => {
    fake = await new HostileServer(feed([fileEntry('evil.txt', Buffer.from('evil'))])).start();
    fake.adopt(device);
    const pairing = JSON.parse(fs.readFileSync(path.join(device.home, 'pairing.json'), 'utf8'));
    fs.writeFileSync(path.join(device.home, 'pairing.json'), JSON.stringify({ ...pairing, fingerprint: 'ab'.repeat(32) }));
    const r = await device.run(['sync', '--once', '--quiet'], 45_000);
    refused(r, /certificate/);
    assert.equal(fake.received.length, 0, 'the device sent something (its token) to a server it does not trust');
  });

});
