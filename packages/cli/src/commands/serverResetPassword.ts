import path from 'node:path';
import { AdminAuth, openDatabase } from '@keepsync/server';
import { parse } from '../args.js';
import { Exit } from '../output.js';

/**
 * `keepsync server reset-password`: sets a new random admin password, ends
 * every admin session and prints the password on one line.
 */
export default async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { data: { type: 'string' }, 'database-url': { type: 'string' } });
  const dataDir = path.resolve(values.data ?? process.env.KEEPSYNC_DATA ?? './data');
  const databaseUrl = values['database-url'] ?? process.env.DATABASE_URL ?? undefined;
  const db = await openDatabase({ databaseUrl: databaseUrl || undefined, dataDir });
  try {
    const password = await new AdminAuth(db).resetPassword();
    process.stdout.write(`${password}\n`);
    return Exit.OK;
  } finally {
    await db.destroy();
  }
}
