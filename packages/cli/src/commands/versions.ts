import { ServerFolder } from '@keepsync/client';
import { parse } from '../args.js';
import { UsageError, printJson } from '../output.js';
import { columns, humanSize, shortTime } from './folderOutput.js';
import { homeFrom } from './home.js';

/** `keepsync versions PATH [--json]`: the server's versions of a file, newest first. */
export default async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { home: { type: 'string' }, json: { type: 'boolean' } }, 1);
  if (!positionals[0]) throw new UsageError('versions needs the file: keepsync versions PATH');
  const remote = new ServerFolder(homeFrom(values.home));
  const path = remote.relPath(positionals[0]);
  const versions = await remote.versions(path);
  if (values.json) {
    printJson(versions);
    return 0;
  }
  const rows = [['ID', 'SAVED', 'SIZE', 'MODIFIED', 'BY', '']];
  for (const v of versions) {
    rows.push([String(v.id), shortTime(v.createdAt), humanSize(v.size), shortTime(v.modifiedAt), v.device, v.current ? 'current' : '']);
  }
  process.stdout.write(columns(rows));
  return 0;
}
