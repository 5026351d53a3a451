#!/usr/bin/env -S node --initial-old-space-size=64
import './threadpool.js';
import { Exit, UsageError, reportFailure, setDebug } from './output.js';
import { USAGE, commands } from './commands/index.js';

// The flag on the first line (also in `npm start` and the Dockerfile; the
// repository test keeps them the same): chunks pass through as buffers
// outside V8's heap, which stays at 10 to 20 MB, and V8 counts what is
// allocated outside since its last full collection against the old
// generation's limit. With that limit as small as such a heap, a 512 MiB
// transfer made the server and a device collect the whole heap 40 to 50
// times (device B's CPU 4 to 5 s against 3.3 to 3.7 s); starting the limit
// at 64 MiB leaves room for it. Node takes the flag only on its command
// line: not from NODE_OPTIONS, nor once running.

async function main(argv: string[]): Promise<number> {
  setDebug(argv.includes('--debug'));
  const [first, second, ...rest] = argv;
  if (!first || first === 'help' || argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return first ? Exit.OK : Exit.USAGE;
  }
  if (first === '--version') {
    const { KEEPSYNC_VERSION } = await import('@keepsync/protocol');
    process.stdout.write(`${KEEPSYNC_VERSION}\n`);
    return Exit.OK;
  }
  // Two-word commands first (`server pair`, `trash restore`), then one-word ones.
  const two = second && commands[`${first} ${second}`];
  if (two) return two(rest);
  const one = commands[first];
  if (!one) throw new UsageError(`unknown command: ${first}`);
  return one(second === undefined ? rest : [second, ...rest]);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.exitCode = reportFailure(err);
  },
);
