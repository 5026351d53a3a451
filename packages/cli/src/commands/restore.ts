import { ServerFolder } from '@keepsync/client';
import { intFlag, parse } from '../args.js';
import { UsageError } from '../output.js';
import { homeFrom } from './home.js';

/** `keepsync restore PATH [--version ID]`: makes a version current again, on every device. */
export default async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { home: { type: 'string' }, version: { type: 'string' } }, 1);
  if (!positionals[0]) throw new UsageError('restore needs the file: keepsync restore PATH [--version ID]');
  const version = intFlag('version', values.version, 1, Number.MAX_SAFE_INTEGER) ?? 0;
  const remote = new ServerFolder(homeFrom(values.home));
  const r = await remote.restoreVersion(remote.relPath(positionals[0]), version);
  process.stdout.write(`${r.message}\n`);
  return 0;
}
