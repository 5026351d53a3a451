import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The benchmark's small default, so that `npm run bench` keeps working: real
 * processes sync each case and the copies are checked. Its figures are
 * printed, never asserted (timings depend on the machine).
 */
describe('Benchmark (quick sizes)', function () {
  this.timeout(10 * 60_000);

  it('runs every sync case and verifies what arrived, printing its figures', async () => {
    const only = 'initialSync10k,largeFile512MiB,editLatency,insert1MiB';
    const child = spawn(process.execPath, [path.join(ROOT, 'test/bench/run.mjs'), '--quick', '--only', only], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, `the benchmark failed:\n${err.slice(-2000)}`);
    const report = JSON.parse(out);
    assert.equal(report.initialSync10k.verified, true, 'the small files arrived');
    assert.equal(report.largeFile512MiB.verified, true, 'the large file arrived intact');
    assert.equal(report.insert1MiB.verified, true, 'the edited file arrived intact');
    assert.ok(report.editLatency.p50Ms > 0, 'edits were timed');
    const figures = {
      smallFilesSeconds: report.initialSync10k.seconds,
      largeFileSeconds: report.largeFile512MiB.seconds,
      editP50Ms: report.editLatency.p50Ms,
      insertUploadBytes: report.insert1MiB.uploadBytes,
      peakRssMB: report.largeFile512MiB.peakRssMB,
    };
    process.stdout.write(`    benchmark (quick sizes): ${JSON.stringify(figures)}\n`);
  });
});
