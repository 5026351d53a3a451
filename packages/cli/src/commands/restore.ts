import path from 'node:path';
import { ServerFolder } from '@keepsync/client';
import { intFlag, parse, timeFlag } from '../args.js';
import { UsageError } from '../output.js';
import { homeFrom } from './home.js';

/**
 * `keepsync restore PATH [--version ID]`: makes a version of a file current
 * again; `keepsync restore PATH --at TIME`: brings a folder (the synced
 * folder itself included) or a file back to how it was at TIME. Either way
 * on every device.
 */
export default async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { home: { type: 'string' }, version: { type: 'string' }, at: { type: 'string' } }, 1);
  if (!positionals[0]) throw new UsageError('restore needs a path: keepsync restore PATH [--version ID | --at TIME]');
  if (values.version !== undefined && values.at !== undefined) throw new UsageError('give --version (one file) or --at (a point in time), not both');
  const at = timeFlag('at', values.at);
  const version = intFlag('version', values.version, 1, Number.MAX_SAFE_INTEGER) ?? 0;
  const remote = new ServerFolder(homeFrom(values.home));
  if (at) {
    const whole = path.resolve(positionals[0]) === path.resolve(remote.pairing.dir);
    const r = await remote.restoreAt(whole ? undefined : remote.relPath(positionals[0]), at);
    process.stdout.write(`${r.message}\n`);
    return 0;
  }
  const r = await remote.restoreVersion(remote.relPath(positionals[0]), version);
  process.stdout.write(`${r.message}\n`);
  return 0;
}
