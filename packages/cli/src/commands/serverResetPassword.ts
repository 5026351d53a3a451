import { AdminAuth, openDatabase } from '@keepsync/server';
import { parse } from '../args.js';
import { Exit } from '../output.js';
import { serverDatabase } from './serverDatabase.js';

/**
 * `keepsync server reset-password`: sets a new random admin password, ends
 * every admin session and prints the password on one line.
 */
export default async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { data: { type: 'string' }, 'database-url': { type: 'string' } });
  const db = await openDatabase(serverDatabase(values));
  try {
    const password = await new AdminAuth(db).resetPassword();
    process.stdout.write(`${password}\n`);
    return Exit.OK;
  } finally {
    await db.destroy();
  }
}
