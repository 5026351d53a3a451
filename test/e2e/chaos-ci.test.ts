import { forEachDatabase } from '../helpers/cluster.js';
import { runChaos } from '../chaos/harness.js';

/**
 * The fixed seeds of the randomized whole-system test that run with every
 * `npm test` (SAFETY.md I1–I8 under client, server and database faults). The
 * long run is `npm run chaos -- --seeds N --devices D`; see test/chaos/README.md.
 */
const SEEDS = [1, 2];

describe('Chaos (fixed seeds)', function () {
  this.timeout(240_000);
  forEachDatabase((kind) => {
    for (const seed of SEEDS) {
      it(`seed ${seed}: 3 devices × 30 operations with faults lose nothing and converge`, async () => {
        await runChaos({ seed, devices: 3, ops: 30, kind });
      });
    }
  });
});
