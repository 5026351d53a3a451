/**
 * The gear hash that FastCDC rolls over a file's bytes to find cut points
 * (see chunker.ts). Its inner loop runs in WebAssembly (gearScan.wat), about
 * three times the speed of the same loop in JavaScript, which stays as the
 * fallback where WebAssembly cannot run (`node --jitless`) and as the
 * reference the tests compare against.
 */

/** 256 fixed pseudo-random 32-bit values (xorshift32 from a fixed seed). Never change. */
export const GEAR: Int32Array = (() => {
  const table = new Int32Array(256);
  let x = 0x9e3779b9;
  for (let i = 0; i < 256; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    table[i] = x | 0;
  }
  return table;
})();

/** The rolling hash, carried from one call to the next. */
export interface GearState {
  h: number;
}

/**
 * Rolls `state.h` over `buf[from..to)`, stopping after the first byte where
 * `(h & mask) === 0` (a cut point). Answers the index after the last byte
 * rolled: `to` unless it stopped at a cut point.
 */
export type RollGear = (buf: Uint8Array, from: number, to: number, state: GearState, mask: number) => number;

export const rollGearJs: RollGear = (buf, from, to, state, mask) => {
  const gear = GEAR;
  let h = state.h;
  let i = from;
  while (i < to) {
    h = ((h << 1) + gear[buf[i++]]) | 0;
    if ((h & mask) === 0) break;
  }
  state.h = h;
  return i;
};

/** gearScan.wat assembled (test/gear.test.ts checks that it still is). */
export const GEAR_SCAN_WASM =
  'AGFzbQEAAAABCQFgBH9/f38BfwMCAQAFAwEABQYGAX8BQQALBxUDBm1lbW9yeQIAAWgDAARyb2xsAAAKOAE2AAJAA0AgACABTw0BIAJBAXQgAC0AAEECdCgCAGohAiAAQQFqIQAgAiADcQ0ACwsgAiQAIAAL';

/** Where the bytes to roll over start in the module's memory (the gear table is below). */
const DATA_AT = 1024;
/** Bytes copied into the module's memory per call: its 5 pages less the table. */
const WINDOW = 5 * 65536 - DATA_AT;

interface GearScanExports {
  memory: WebAssembly.Memory;
  h: WebAssembly.Global;
  roll: (at: number, end: number, h: number, mask: number) => number;
}

function loadWasm(): RollGear | undefined {
  // The module reads the table as little-endian, as WebAssembly memory is; a typed array writes it in the machine's order.
  if (new Uint8Array(new Int32Array([1]).buffer)[0] !== 1) return undefined;
  let exports: GearScanExports;
  try {
    const module = new WebAssembly.Module(Buffer.from(GEAR_SCAN_WASM, 'base64'));
    exports = new WebAssembly.Instance(module).exports as unknown as GearScanExports;
  } catch {
    return undefined; // no WebAssembly here (node --jitless)
  }
  const { memory, h: rolledHash, roll } = exports;
  const bytes = new Uint8Array(memory.buffer);
  new Int32Array(memory.buffer, 0, 256).set(GEAR);
  return (buf, from, to, state, mask) => {
    let h = state.h;
    let i = from;
    while (i < to) {
      const n = Math.min(to - i, WINDOW);
      bytes.set(buf.subarray(i, i + n), DATA_AT);
      i += roll(DATA_AT, DATA_AT + n, h, mask) - DATA_AT;
      h = rolledHash.value as number;
      if ((h & mask) === 0) break;
    }
    state.h = h;
    return i;
  };
}

/** The WebAssembly loop, or undefined where it cannot run. */
export const rollGearWasm: RollGear | undefined = loadWasm();

export const rollGear: RollGear = rollGearWasm ?? rollGearJs;
