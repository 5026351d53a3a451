#!/usr/bin/env node
import './threadpool.js';
import { Exit, UsageError, reportFailure, setDebug } from './output.js';
import { USAGE, commands } from './commands/index.js';

// File I/O, hashing and fsyncs of chunk transfers share libuv's thread pool;
// four threads (the default) make a large transfer wait on the disk. Read
// when the pool starts, which is after this line.
process.env.UV_THREADPOOL_SIZE ??= '16';

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
