import { KeepsyncError } from '@keepsync/protocol';
import { parse } from '../args.js';
import { homeFrom } from './home.js';

/** `keepsync unpair`: forgets the pairing and the index; the folder's files stay. */
export default async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { home: { type: 'string' } });
  const home = homeFrom(values.home);
  const p = home.readPairing();
  const running = home.syncProcess();
  if (p && running !== undefined) {
    throw new KeepsyncError('USAGE', `keepsync sync is running for this device (process ${running}); stop it first (Ctrl-C), then unpair`);
  }
  if (!home.forget() || !p) {
    process.stdout.write('this device was not paired\n');
    return 0;
  }
  process.stdout.write(`unpaired from ${p.server}; the files in ${p.dir} stay where they are\n`);
  return 0;
}
