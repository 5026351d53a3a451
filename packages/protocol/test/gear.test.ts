import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import wabt from 'wabt';
import { GEAR_SCAN_WASM, rollGear, rollGearJs, rollGearWasm, type RollGear } from '@keepsync/protocol';

const WAT = new URL('../src/gearScan.wat', import.meta.url);

/** Rolls over the whole of `buf[from..to)` the way the chunker does, collecting every cut point. */
function cutsOf(roll: RollGear, buf: Uint8Array, from: number, to: number, mask: number): number[] {
  const state = { h: 0 };
  const cuts: number[] = [];
  for (let i = from; i < to; ) {
    i = roll(buf, i, to, state, mask);
    if ((state.h & mask) === 0) {
      cuts.push(i);
      state.h = 0;
    }
  }
  cuts.push(state.h);
  return cuts;
}

describe('gear hash', () => {
  it('runs in WebAssembly here', () => {
    assert.ok(rollGearWasm, 'WebAssembly did not load');
    assert.equal(rollGear, rollGearWasm);
  });

  it('finds the same cut points and hash in WebAssembly as in JavaScript, across window boundaries', () => {
    const buf = randomBytes(3 * 1024 * 1024 + 17);
    // From a hard mask (one cut in about 512 KiB, so stretches span several windows) to an easy one.
    for (const bits of [19, 17, 14, 8]) {
      const mask = (0xffffffff << (32 - bits)) | 0;
      for (const [from, to] of [[0, buf.length], [5, buf.length - 3], [1000, 1001], [7, 7], [333_333, 2_999_999]]) {
        assert.deepEqual(cutsOf(rollGearWasm!, buf, from, to, mask), cutsOf(rollGearJs, buf, from, to, mask), `bits ${bits}, ${from}..${to}`);
      }
    }
  });

  it('carries the hash in, and stops right after a cut point', () => {
    const buf = randomBytes(64 * 1024);
    const mask = (0xffffffff << (32 - 10)) | 0;
    for (const start of [0, 1, -1, 0x12345678]) {
      const a = { h: start };
      const b = { h: start };
      const at = rollGearWasm!(buf, 0, buf.length, a, mask);
      assert.equal(at, rollGearJs(buf, 0, buf.length, b, mask));
      assert.equal(a.h, b.h);
      assert.ok(at < buf.length && (a.h & mask) === 0, 'no cut point in 64 KiB with a 10-bit mask');
    }
  });

  it('is gearScan.wat assembled', async () => {
    const tools = await wabt();
    const parsed = tools.parseWat('gearScan.wat', readFileSync(WAT, 'utf8'));
    try {
      assert.equal(Buffer.from(parsed.toBinary({}).buffer).toString('base64'), GEAR_SCAN_WASM);
    } finally {
      parsed.destroy();
    }
  });

  it('falls back to JavaScript where WebAssembly cannot run, with the same cut points', () => {
    const script = `
      import { rollGear, rollGearJs, rollGearWasm, chunkBuffer } from '@keepsync/protocol';
      const data = Buffer.alloc(2 * 1024 * 1024);
      for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
      const cuts = chunkBuffer(data).chunks.map((c) => c.size).join(',');
      console.log(JSON.stringify({ wasm: rollGearWasm !== undefined, js: rollGear === rollGearJs, cuts }));
    `;
    const run = (flags: string[]) =>
      JSON.parse(execFileSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    const jitless = run(['--jitless']);
    const normal = run([]);
    assert.deepEqual([jitless.wasm, jitless.js], [false, true]);
    assert.deepEqual([normal.wasm, normal.js], [true, false]);
    assert.equal(jitless.cuts, normal.cuts);
    assert.ok(normal.cuts.split(',').length > 10);
  });
});
