import assert from 'node:assert/strict';
import { Simulation } from './simulation.js';

/**
 * The deterministic simulation (see simulation.ts for what it covers):
 * KEEPSYNC_SIM_SEEDS seeds (default 400) of 3 devices × 60 steps with crashes
 * mid-cycle and lost push answers; each must converge and lose nothing, and
 * the same seed twice must end in the same state.
 */
const SEEDS = Number(process.env.KEEPSYNC_SIM_SEEDS ?? 400);
const FIRST = Number(process.env.KEEPSYNC_SIM_FIRST_SEED ?? 1);

describe('Simulation of devices and the server (deterministic)', function () {
  this.timeout(300_000);

  it(`converges and loses nothing over ${SEEDS} seeds`, async () => {
    const started = Date.now();
    for (let seed = FIRST; seed < FIRST + SEEDS; seed++) {
      const sim = new Simulation(seed);
      const r = await sim.run();
      if (r.problems.length > 0) {
        assert.fail(`simulation seed ${seed} failed (replay: KEEPSYNC_SIM_FIRST_SEED=${seed} KEEPSYNC_SIM_SEEDS=1):\n  ${r.problems.slice(0, 15).join('\n  ')}\nsteps:\n  ${sim.log.join('\n  ')}`);
      }
    }
    const perMinute = Math.round((SEEDS / (Date.now() - started)) * 60_000);
    if (process.env.KEEPSYNC_SIM_VERBOSE) process.stderr.write(`simulation: ${SEEDS} seeds, ${perMinute} seeds a minute\n`);
  });

  it('gives the same final state for the same seed (I8)', async () => {
    for (const seed of [FIRST, FIRST + 1, FIRST + 7]) {
      const a = await new Simulation(seed).run();
      const b = await new Simulation(seed).run();
      assert.equal(a.digest, b.digest, `seed ${seed}`);
    }
    const c = await new Simulation(FIRST + 100).run();
    assert.notEqual(c.digest, (await new Simulation(FIRST).run()).digest, 'different seeds gave the same run');
  });
});
