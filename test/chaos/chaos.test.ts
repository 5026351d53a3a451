import { databaseKinds } from '../helpers/databases.js';
import { runChaos } from './harness.js';

/**
 * The long randomized run: `npm run chaos -- --seeds N --devices D [--ops N]
 * [--db sqlite|postgres] [--seed S] [--first-seed S] [--no-faults] [--verbose]`
 * (test/chaos/run.mjs turns them into KEEPSYNC_CHAOS_SEEDS, _DEVICES, _OPS, _DB,
 * _SEED, _FIRST_SEED, _FAULTS=0, _VERBOSE=1). `--seed S` replays one seed. CI runs a small fixed set of seeds through
 * test/e2e/chaos-ci.test.ts.
 */
function flag(name: string): string | undefined {
  return process.env[`KEEPSYNC_CHAOS_${name.toUpperCase().replace(/-/g, '_')}`];
}

function intFlag(name: string, fallback: number): number {
  const v = flag(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, not ${v}`);
  return n;
}

const one = flag('seed');
const seeds = one !== undefined ? [intFlag('seed', 0)] : Array.from({ length: intFlag('seeds', 10) }, (_, i) => intFlag('first-seed', 1) + i);
const devices = intFlag('devices', 3);
const ops = intFlag('ops', 80);
const faults = process.env.KEEPSYNC_CHAOS_FAULTS !== '0';
const verbose = process.env.KEEPSYNC_CHAOS_VERBOSE === '1';
const dbName = flag('db');
const kinds = databaseKinds().filter((k) => !dbName || k.name === dbName);
if (dbName && kinds.length === 0) throw new Error(`--db ${dbName}: not available (PostgreSQL needs KEEPSYNC_TEST_DATABASE_URL)`);

describe(`Chaos: ${seeds.length} seeds × ${devices} devices × ${ops} operations${faults ? ' with faults' : ''}`, function () {
  this.timeout(0);
  for (const kind of kinds) {
    describe(`on ${kind.name}`, () => {
      const totals = { ops: 0, clientKills: 0, serverKills: 0, databaseDrops: 0, contents: 0 };
      after(() => process.stderr.write(`chaos on ${kind.name}: ${seeds.length} seeds, ${JSON.stringify(totals)}\n`));
      for (const seed of seeds) {
        it(`seed ${seed} loses nothing and converges`, async () => {
          const r = await runChaos({ seed, devices, ops, kind, faults, verbose });
          for (const k of Object.keys(totals) as Array<keyof typeof totals>) totals[k] += r[k];
          if (verbose) process.stderr.write(`seed ${seed}: ${JSON.stringify(r)}\n`);
        });
      }
    });
  }
});
