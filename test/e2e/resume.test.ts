import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { scenario, type Scenario, type TestDevice } from '../helpers/cluster.js';
import { databaseKinds } from '../helpers/databases.js';
import { Proc } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Transfers interrupted by a killed device process (SAFETY.md B1, B2; SPEC
 * "an interrupted transfer resumes where it stopped"). A real server traces
 * every chunk it stores and sends; a real `keepsync sync` is killed with
 * SIGKILL mid-transfer, held back by a rate limit so that the kill lands in
 * the middle, and run again. The chunks that reached the other side before
 * the kill must not travel again. Resuming does not depend on the database,
 * so these run on SQLite only.
 */

const MiB = 1024 * 1024;
const FILE = 32 * MiB;
/** The rate the killed process is held to: 32 MiB take about 8 s. */
const RATE = '4M';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Every `.keepsync-*` file left under `dir`. */
function leftovers(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((p) => path.basename(p).startsWith('.keepsync-'));
}

/** The chunks of the server's trace lines matching `re` (`trace: KIND HASH SIZE …`). */
function tracedChunks(text: string, re: RegExp): Array<{ hash: string; size: number }> {
  return text.split('\n').filter((l) => re.test(l)).map((l) => {
    const [hash, size] = l.slice(l.indexOf('trace: ')).split(' ').slice(2, 4);
    return { hash, size: Number(size) };
  });
}

/** Chunks and bytes in `list` that are there more than once. */
function repeats(list: Array<{ hash: string; size: number }>): { chunks: number; bytes: number } {
  const seen = new Set<string>();
  let chunks = 0;
  let bytes = 0;
  for (const c of list) {
    if (seen.has(c.hash)) {
      chunks++;
      bytes += c.size;
    } else seen.add(c.hash);
  }
  return { chunks, bytes };
}

const sum = (list: Array<{ size: number }>) => list.reduce((n, c) => n + c.size, 0);
const mib = (bytes: number) => +(bytes / MiB).toFixed(2);

/** Figures measured by these tests, printed at the end. */
const figures: Record<string, unknown> = {};
after(() => {
  if (Object.keys(figures).length > 0) process.stderr.write(`    resume figures: ${JSON.stringify(figures)}\n`);
});

describe('Resuming transfers of a killed device process (SQLite only: behaviour does not depend on the database)', function () {
  this.timeout(180_000);
  let s: Scenario;
  const procs: Proc[] = [];
  const savedTrace = process.env.KEEPSYNC_TRACE;

  beforeEach(async () => {
    // The server traces every chunk it stores and sends, so tests can count the ones that travelled twice.
    process.env.KEEPSYNC_TRACE = '1';
    try {
      s = await scenario(databaseKinds()[0]);
    } finally {
      if (savedTrace === undefined) delete process.env.KEEPSYNC_TRACE;
      else process.env.KEEPSYNC_TRACE = savedTrace;
    }
  });
  afterEach(async () => {
    for (const p of procs.splice(0)) await p.stop('SIGKILL');
    await s.cleanup();
  });

  const sentTo = (device: string) => tracedChunks(s.server.proc.stderr, new RegExp(`trace: chunk-data \\S+ \\d+ to ${device}$`));
  const received = (kind: 'stored' | 'received again') => tracedChunks(s.server.proc.stderr, new RegExp(`trace: put-chunk \\S+ \\d+ ${kind}$`));

  /** Starts `keepsync sync` on `d` held to `limit` and kills it with SIGKILL once `midway` says so. */
  async function killMidway(d: TestDevice, limit: string[], midway: () => boolean): Promise<Proc> {
    const p = new Proc(['sync', '--quiet', '--home', d.home, ...limit], d.env);
    procs.push(p);
    await waitFor('the transfer to be under way', () => {
      if (!p.running) throw new Error(`sync exited early: ${p.stderr}`);
      return midway();
    }, 90_000, 10);
    await p.stop('SIGKILL');
    return p;
  }

  /** A 32 MiB file on the server, and a device about to download it, killed half way. */
  async function killedDownload(): Promise<{ d: TestDevice; content: Buffer; firstRun: number }> {
    const d = await s.addDevice('receiver');
    d.env = { KEEPSYNC_TRACE: '1' };
    const src = await s.addDevice('sender');
    const content = randomBytes(FILE);
    src.write('big.bin', content);
    await src.syncOnce();
    await killMidway(d, ['--max-download', RATE], () => sum(sentTo('receiver')) >= FILE / 2);
    const firstRun = sum(sentTo('receiver'));
    assert.ok(!d.exists('big.bin'), 'the download was cut short');
    assert.equal(leftovers(d.dir).length, 1, 'the killed download left its temporary file');
    return { d, content, firstRun };
  }

  it('resumes a download after the process was killed: the chunks that arrived are not sent again, the file arrives whole (B2)', async () => {
    const { d, content, firstRun } = await killedDownload();
    const r = await d.syncOnce(120_000);
    assert.equal(sha256(fs.readFileSync(d.p('big.bin'))), sha256(content));
    assert.deepEqual(leftovers(d.dir), []);
    const resumed = /resuming big\.bin after (\d+) verified chunks \((\d+) of (\d+) bytes kept\)/.exec(r.stderr);
    assert.ok(resumed, `the second run did not resume the temporary file:\n${r.stderr.slice(-2000)}`);
    const sent = sentTo('receiver');
    const twice = repeats(sent);
    figures.downloadKilled = {
      fileMiB: mib(FILE), sentBeforeKillMiB: mib(firstRun), keptMiB: mib(Number(resumed[2])), sentAfterRestartMiB: mib(sum(sent) - firstRun),
      chunks: new Set(sent.map((c) => c.hash)).size, chunksSentTwice: twice.chunks, bytesSentTwiceMiB: mib(twice.bytes),
    };
    process.stderr.write(`      download killed: ${JSON.stringify(figures.downloadKilled)}\n`);
    // What was in flight when the process died (the requests of 1 MiB the rate limit had let out) may come
    // again; nothing more. Fetching everything again would be 16 MiB.
    assert.ok(twice.bytes <= 4 * MiB, `${mib(twice.bytes)} MiB (${twice.chunks} chunks) were sent twice`);
    assert.ok(sum(sent) <= FILE + 4 * MiB, `${mib(sum(sent))} MiB sent for a ${mib(FILE)} MiB file`);
  });

  it('keeps only the verified chunks of a damaged temporary file, and removes temporary files nothing wants (B2, I4)', async () => {
    const { d, content } = await killedDownload();
    const [temp] = leftovers(d.dir);
    const tempFile = path.join(d.dir, temp);
    const length = fs.statSync(tempFile).size;
    assert.ok(length > 4 * MiB, `the killed download wrote ${length} bytes`);
    // One byte flipped in the middle: that chunk and everything after it must come from the server again.
    const at = Math.floor(length / 2);
    const fd = fs.openSync(tempFile, 'r+');
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, at);
    fs.writeSync(fd, Buffer.from([byte[0] ^ 0xff]), 0, 1, at);
    fs.closeSync(fd);
    // Leftovers of downloads no longer wanted, in a subfolder too: removed, never synced.
    d.write('photos/keep.txt', 'mine');
    d.write(`photos/.keepsync-${'ab'.repeat(16)}`, 'stale partial download');
    d.write('.keepsync-0123456789ab', 'an older release\'s temporary file');
    const before = sentTo('receiver').length;

    const r = await d.syncOnce(120_000);
    assert.equal(sha256(fs.readFileSync(d.p('big.bin'))), sha256(content));
    assert.equal(d.read('photos/keep.txt'), 'mine');
    assert.deepEqual(leftovers(d.dir), []);
    const resumed = /resuming big\.bin after (\d+) verified chunks \((\d+) of (\d+) bytes kept\)/.exec(r.stderr);
    assert.ok(resumed, `the second run did not resume the temporary file:\n${r.stderr.slice(-2000)}`);
    const kept = Number(resumed[2]);
    assert.ok(kept <= at, `kept ${kept} bytes, past the damaged byte at ${at}`);
    assert.ok(kept > 0, 'the chunks before the damaged byte were kept');
    // The damaged chunk was sent again: its bytes were not trusted.
    const again = sentTo('receiver').slice(before);
    const firstHashes = new Set(sentTo('receiver').slice(0, before).map((c) => c.hash));
    assert.ok(again.some((c) => firstHashes.has(c.hash)), 'the chunk holding the damaged byte came from the server again');
  });

  it('resumes an upload after the process was killed without the server receiving stored chunks again (B1)', async () => {
    const up = await s.addDevice('uploader');
    const check = await s.addDevice('check');
    const content = randomBytes(FILE);
    up.write('up.bin', content);
    await killMidway(up, ['--max-upload', RATE], () => sum(received('stored')) >= FILE / 3);
    const firstRun = sum(received('stored'));
    await up.syncOnce(120_000);
    await check.syncOnce(120_000);
    assert.equal(sha256(fs.readFileSync(check.p('up.bin'))), sha256(content));
    assert.deepEqual(leftovers(up.dir), []);
    const again = received('received again');
    figures.uploadKilled = {
      fileMiB: mib(FILE), storedBeforeKillMiB: mib(firstRun), storedAfterRestartMiB: mib(sum(received('stored')) - firstRun),
      chunksReceivedTwice: again.length, bytesReceivedTwiceMiB: mib(sum(again)),
    };
    process.stderr.write(`      upload killed: ${JSON.stringify(figures.uploadKilled)}\n`);
    assert.ok(again.length <= 4, `${again.length} chunks reached the server twice`);
    assert.ok(sum(received('stored')) >= FILE, 'every chunk was stored');
  });
});
