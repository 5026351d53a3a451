import { ServerFolder } from '@keepsync/client';
import { parse } from '../args.js';
import { UsageError } from '../output.js';
import { homeFrom } from './home.js';

/** `keepsync trash restore PATH`: brings a deleted file or whole folder back, on every device. */
export default async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { home: { type: 'string' } }, 1);
  if (!positionals[0]) throw new UsageError('trash restore needs the deleted path: keepsync trash restore PATH (see "keepsync trash")');
  const remote = new ServerFolder(homeFrom(values.home));
  const r = await remote.restoreTrash(remote.relPath(positionals[0]));
  process.stdout.write(`${r.message}\n`);
  return 0;
}
