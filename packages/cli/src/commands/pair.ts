import path from 'node:path';
import { pairDevice } from '@keepsync/client';
import { parse } from '../args.js';
import { UsageError } from '../output.js';
import { homeFrom } from './home.js';

/** `keepsync pair LINK --dir DIR [--name NAME] [--folder NAME]`. */
export default async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { home: { type: 'string' }, dir: { type: 'string' }, name: { type: 'string' }, folder: { type: 'string' } }, 1);
  const link = positionals[0];
  if (!link) throw new UsageError('pair needs the pairing link: keepsync pair LINK --dir DIR');
  if (!values.dir) throw new UsageError('pair needs --dir DIR, the folder to sync on this device');
  const home = homeFrom(values.home);
  const p = await pairDevice(home, { link, dir: values.dir, name: values.name, folder: values.folder });
  const homeFlag = values.home ? ` --home ${path.resolve(home.dir)}` : '';
  process.stdout.write(`paired with ${p.server} as "${p.deviceName}": folder ${p.folder} <-> ${p.dir}\nrun "keepsync sync${homeFlag}" to start syncing\n`);
  return 0;
}
