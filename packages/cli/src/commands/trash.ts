import { ServerFolder } from '@keepsync/client';
import { parse } from '../args.js';
import { printJson } from '../output.js';
import { columns, humanSize, shortTime } from './folderOutput.js';
import { homeFrom } from './home.js';

/** `keepsync trash [--json]`: the deleted files and folders in the server's trash for this folder. */
export default async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { home: { type: 'string' }, json: { type: 'boolean' } });
  const remote = new ServerFolder(homeFrom(values.home));
  const items = await remote.trash();
  if (values.json) {
    printJson(items);
    return 0;
  }
  if (items.length === 0) {
    process.stdout.write(`the trash of folder ${remote.pairing.folder} is empty\n`);
    return 0;
  }
  const rows = [['ID', 'DELETED', 'BY', 'SIZE', 'PATH']];
  for (const i of items) rows.push([String(i.id), shortTime(i.deletedAt), i.deletedBy, humanSize(i.size), i.kind === 'dir' ? `${i.path}/` : i.path]);
  process.stdout.write(columns(rows));
  return 0;
}
