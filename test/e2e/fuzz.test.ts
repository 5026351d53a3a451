import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { encode } from '@msgpack/msgpack';
import { CloseCode, MAX_FRAME } from '@keepsync/protocol';
import { forEachDatabase, scenario, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { AdminClient, RawSocket, httpsJson, redeemPairing, type RawPairing } from '../helpers/rawDevice.js';
import { waitFor } from '../helpers/wait.js';
import { Rng } from '../chaos/rng.js';

/**
 * A seeded fuzzer for the sync WebSocket and the admin API (SAFETY.md F1, F2,
 * F5, I5, I9, I10): random and mutated frames, wrong types, huge declared
 * lengths, unknown messages, hostile paths, wrong and revoked tokens, random
 * API bodies. Meanwhile a real device keeps syncing; afterwards the server
 * still runs, wrote nothing outside its data dir, and its memory grew little.
 * KEEPSYNC_FUZZ_FRAMES scales the run (default 300 frames).
 */
const FRAMES = Number(process.env.KEEPSYNC_FUZZ_FRAMES ?? 300);
const SEED = Number(process.env.KEEPSYNC_FUZZ_SEED ?? 7);
const MARKER = 'keepsync-fuzz-escape';

const HOSTILE_PATHS = [
  `../${MARKER}`, `../../${MARKER}`, `/tmp/${MARKER}`, `C:\\${MARKER}`, `..\\${MARKER}`, `%2e%2e/${MARKER}`, `a/../../${MARKER}`,
  `./${MARKER}`, `a//${MARKER}`, `${MARKER}\u0000.txt`, `.keepsync-${MARKER}`, `${'n'.repeat(300)}`, `${'d/'.repeat(1200)}x`, '', '.', '..',
  `cafe\u0301/${MARKER}`, `con/${MARKER}`, `a\nb`, `\u202e${MARKER}`, `fuzz/ok-${MARKER}.txt`,
];

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** A random msgpack-able value of any shape. */
function randomValue(rng: Rng, depth = 0): unknown {
  const kinds = depth > 2 ? 7 : 10;
  switch (rng.int(kinds)) {
    case 0: return rng.pick([0, -1, 1, 2 ** 31, 2 ** 53 + 2, -(2 ** 60), 1.5, Number.NaN, Infinity]);
    case 1: return rng.pick(HOSTILE_PATHS);
    case 2: return 'x'.repeat(rng.pick([0, 1, 64, 65, 256, 5000]));
    case 3: return rng.bytes(rng.pick([0, 1, 31, 32, 33, 64, 1000]));
    case 4: return rng.chance(0.5);
    case 5: return null;
    case 6: return rng.int(1000);
    case 7: return Array.from({ length: rng.int(5) }, () => randomValue(rng, depth + 1));
    case 8: return Object.fromEntries(Array.from({ length: rng.int(5) }, () => [rng.pick(['type', 'id', 'path', 'op', 'ops', 'hash', 'data', 'x']), randomValue(rng, depth + 1)]));
    default: return randomOp(rng);
  }
}

/** An op-shaped map: known and unknown ops, hostile paths, made-up hashes and manifests. */
function randomOp(rng: Rng): Record<string, unknown> {
  return {
    op: rng.pick(['put', 'mkdir', 'delete', 'move', 'chmod']), path: rng.pick(HOSTILE_PATHS), from: rng.pick(HOSTILE_PATHS), to: rng.pick(HOSTILE_PATHS),
    kind: rng.pick(['file', 'dir', 'link']), base: rng.pick([0, 1, 7, -1]), seq: rng.int(10), size: rng.int(100), hash: rng.bytes(32).toString('hex'),
    mtime: rng.int(1e12), exec: rng.chance(0.5), manifest: rng.chance(0.5) ? { full: rng.bytes(36 * rng.int(3)) } : { delta: { base: rng.int(9), head: rng.int(3), tail: rng.int(3), middle: rng.bytes(36) } },
  };
}

/** A well-formed request of a random type, with a random (often hostile) path. */
function validish(rng: Rng, id: number): Record<string, unknown> {
  const p = rng.chance(0.5) ? rng.pick(HOSTILE_PATHS) : `fuzz/f${rng.int(20)}.txt`;
  switch (rng.int(10)) {
    case 0: return { type: 'list', id, since: rng.pick([0, 5, 2 ** 40]) };
    case 1: return { type: 'get-manifest', id, version: rng.range(1, 50), base: rng.int(50) };
    case 2: return { type: 'has-chunks', id, hashes: rng.bytes(32 * rng.range(0, 5)) };
    case 3: {
      const data = rng.bytes(rng.range(1, 2000));
      return { type: 'put-chunk', id, hash: rng.bytes(32), data };
    }
    case 4: return { type: 'get-chunks', id, hashes: rng.bytes(32 * rng.range(1, 5)) };
    case 5: return { type: 'push', id, ops: Array.from({ length: rng.range(1, 4) }, () => randomOp(rng)) };
    case 6: return { type: 'versions', id, path: p };
    case 7: return { type: 'restore', id, path: p, version: rng.int(50) };
    case 8: return { type: 'trash', id };
    default: return { type: 'trash-restore', id, path: p };
  }
}

/** One fuzz frame: raw garbage, a mutated request, or a request of an unknown type. */
function frame(rng: Rng, id: number): { what: string; bytes: Buffer | string } {
  const kind = rng.weighted([[10, 'garbage'], [35, 'mutated'], [15, 'bitflip'], [25, 'validish'], [5, 'text'], [5, 'unknown'], [5, 'huge-declared']] as const);
  switch (kind) {
    case 'garbage': return { what: kind, bytes: rng.bytes(rng.range(0, 3000)) };
    case 'text': return { what: kind, bytes: JSON.stringify(validish(rng, id)) };
    case 'unknown': return { what: kind, bytes: Buffer.from(encode({ type: rng.pick(['delete-all', 'hello2', '', 'LIST', 'put_chunk']), id })) };
    case 'huge-declared': {
      // A map, a bin32 or an array32 header declaring far more than follows.
      const header = rng.pick([[0xdf, 0xff, 0xff, 0xff, 0xff], [0xc6, 0x7f, 0xff, 0xff, 0xff], [0xdd, 0xff, 0xff, 0xff, 0xf0], [0xdb, 0xff, 0xff, 0xff, 0xf0]]);
      return { what: kind, bytes: Buffer.concat([Buffer.from([0x82, 0xa4]), Buffer.from('type'), Buffer.from(header), rng.bytes(rng.int(40))]) };
    }
    case 'bitflip': {
      const b = Buffer.from(encode(validish(rng, id)));
      for (let i = rng.range(1, 4); i > 0 && b.length > 0; i--) b[rng.int(b.length)] ^= 1 << rng.int(8);
      return { what: kind, bytes: rng.chance(0.3) ? b.subarray(0, rng.int(b.length + 1)) : b };
    }
    case 'mutated': {
      const msg = validish(rng, id);
      const keys = Object.keys(msg);
      const k = rng.pick(keys);
      if (rng.chance(0.2)) delete msg[k];
      else msg[rng.chance(0.85) ? k : rng.pick(['extra', '__proto__', 'constructor'])] = randomValue(rng);
      return { what: `${kind} ${String(msg.type)}.${k}`, bytes: Buffer.from(encode(msg)) };
    }
    default: {
      const msg = validish(rng, id);
      return { what: `validish ${String(msg.type)}`, bytes: Buffer.from(encode(msg)) };
    }
  }
}

describe('Fuzzing the sync protocol and the admin API', function () {
  this.timeout(300_000);

  forEachDatabase((kind) => {
    let s: Scenario;
    let steady: TestDevice;
    let other: TestDevice;
    let fuzzer: RawPairing;

    beforeEach(async () => {
      s = await scenario(kind);
      steady = await s.addDevice('steady');
      other = await s.addDevice('other');
      fuzzer = await redeemPairing(s.server, 'fuzzer');
      await steady.start();
    });
    afterEach(async () => s.cleanup());

    it(`answers ${FRAMES} random and mutated frames with errors, never crashes, keeps syncing others, stays bounded`, async () => {
      const rng = new Rng(SEED);
      const pid = s.server.proc.child.pid!;
      const outsideBefore = fs.readdirSync(s.server.root).sort();
      const tmpBefore = fs.readdirSync(os.tmpdir()).filter((n) => n.includes(MARKER));
      const rssBefore = rssKiB(pid);
      let sock: RawSocket | undefined;
      let closes = 0;
      let answered = 0;
      let written = 0;
      for (let i = 1; i <= FRAMES; i++) {
        if (!sock || !sock.isOpen) {
          ({ sock } = await RawSocket.welcomed(s.server, fuzzer.token));
        }
        const f = frame(rng, i * 2);
        sock.sendRaw(f.bytes, typeof f.bytes !== 'string');
        // A probe after each frame: answered means the frame was handled; closed means it was refused.
        const probe = i * 2 + 1;
        if (sock.isOpen) sock.send({ type: 'list', id: probe, since: 2 ** 40 });
        await waitFor(`an answer or a close after frame ${i} (${f.what})`, () => sock!.closeCode !== undefined || sock!.received.some((m) => m.type === 'changes' && m.id === probe), 10_000, 5);
        if (sock.closeCode !== undefined) {
          closes++;
          assert.ok([CloseCode.PROTOCOL_ERROR, 1009].includes(sock.closeCode), `frame ${i} (${f.what}) closed with ${sock.closeCode} ${sock.closeReason}`);
        } else answered++;
        assert.deepEqual(sock.undecodable, [], `frame ${i} (${f.what}): the server sent a frame its own protocol rejects`);
        if (i % 50 === 0) {
          // The steady device keeps syncing meanwhile.
          steady.write(`steady-${i}.txt`, `steady ${i}`);
          written = i;
        }
      }
      // A frame beyond the maximum payload.
      const big = await RawSocket.welcomed(s.server, fuzzer.token);
      big.sock.sendRaw(Buffer.alloc(MAX_FRAME + 1024));
      assert.equal(await big.sock.waitClosed(), 1009);
      assert.ok(s.server.proc.running, `the server exited: ${s.server.proc.stderr}`);
      const unhandled = s.server.proc.stderr.split('\n').filter((l) => /error handling|unexpected error|TypeError|RangeError/.test(l));
      assert.deepEqual(unhandled, [], 'a fuzzed frame reached code that does not validate it');
      await other.syncOnce();
      for (let i = 50; i <= written; i += 50) assert.equal(other.read(`steady-${i}.txt`), `steady ${i}`, `steady-${i}.txt did not reach the other device`);
      assert.deepEqual(fs.readdirSync(s.server.root).sort(), outsideBefore, 'the server wrote beside its data dir');
      assert.deepEqual(fs.readdirSync(os.tmpdir()).filter((n) => n.includes(MARKER)), tmpBefore, 'a hostile path escaped');
      assert.ok(!other.tree().has(MARKER) && ![...other.tree().keys()].some((k) => k.includes(MARKER) && !k.startsWith('fuzz/')), 'a hostile path reached a device');
      const grownMiB = (rssKiB(pid) - rssBefore) / 1024;
      assert.ok(grownMiB < 120, `server memory grew by ${grownMiB.toFixed(1)} MiB`);
      process.stderr.write(`      fuzz (${kind.name}): ${FRAMES} frames, ${answered} answered, ${closes} refused with a close; server RSS ${Math.round(rssBefore / 1024)} → ${Math.round(rssKiB(pid) / 1024)} MiB\n`);
    });

    it('refuses random, malformed and revoked tokens and gives them no data (I10)', async () => {
      const rng = new Rng(SEED + 1);
      const tokens: unknown[] = ['', 'x', fuzzer.token.slice(0, -1), `${fuzzer.token}x`, fuzzer.token.toUpperCase(), 'A'.repeat(256), 12345, null, rng.bytes(32)];
      for (let i = 0; i < 20; i++) tokens.push(rng.bytes(rng.range(1, 64)).toString('base64url'));
      const revoked = await redeemPairing(s.server, 'revoked');
      const admin = await AdminClient.login(s.server);
      await admin.removeDevice(revoked.deviceId);
      for (const token of [...tokens, revoked.token]) {
        const sock = await RawSocket.open(s.server);
        sock.send({ type: 'hello', protocol: 1, token, folder: 'Sync', epoch: '', seq: 0, platform: 'fuzz', client: 'fuzz' } as never);
        const code = await sock.waitClosed();
        assert.ok(!sock.received.some((m) => m.type !== 'error'), `token ${String(token).slice(0, 20)} got data: ${sock.describe()}`);
        const want = token === revoked.token ? CloseCode.TOKEN_REVOKED : [CloseCode.TOKEN_INVALID, CloseCode.PROTOCOL_ERROR];
        assert.ok(([] as number[]).concat(want).includes(code), `token ${String(token).slice(0, 20)} closed with ${code}`);
      }
      assert.ok(s.server.proc.running);
    });

    it('answers random admin API requests with 2xx or 4xx, never 5xx, and keeps serving', async () => {
      const rng = new Rng(SEED + 2);
      const admin = await AdminClient.login(s.server);
      const ids = ['999999', '-1', 'abc', '1e9', '0x10', '%2e%2e', 'null', '9'.repeat(40)];
      const routes: Array<[string, () => string]> = [
        ['POST', () => '/pairings'], ['PATCH', () => `/devices/${rng.pick(ids)}`], ['DELETE', () => `/devices/${rng.pick(ids)}`],
        ['PUT', () => '/settings'], ['POST', () => '/session'], ['GET', () => '/folders'], ['GET', () => '/status'],
        ['GET', () => `/folders/${encodeURIComponent(String(randomValue(rng)))}/files?path=${encodeURIComponent(rng.pick(HOSTILE_PATHS))}`],
        ['POST', () => '/pair'], ['PATCH', () => '/settings'],
      ];
      for (let i = 0; i < 150; i++) {
        const [method, route] = rng.pick(routes);
        const body = randomValue(rng);
        const authed = rng.chance(0.8);
        const r = authed
          ? await admin.request(method, route(), body)
          : await httpsJson(`${s.server.url}/api/v1${route()}`, method, body, { cookie: `keepsync_session=${rng.bytes(16).toString('hex')}` });
        assert.ok(r.status >= 200 && r.status < 500, `${method} ${route()} answered ${r.status}: ${JSON.stringify(r.body)?.slice(0, 200)}`);
        if (r.status >= 400) assert.equal(typeof r.body?.error, 'string', `${method}: error without a message`);
      }
      assert.ok(s.server.proc.running);
      steady.write('after-api.txt', 'still here');
      await waitFor('the steady device to upload', async () => {
        await other.syncOnce();
        return other.read('after-api.txt') === 'still here';
      }, 30_000, 200);
    });
  });
});

