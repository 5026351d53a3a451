import fs from 'node:fs';
import path from 'node:path';
import { KeepsyncError } from '@keepsync/protocol';

/** Where a server command finds the server's data and database. */
export interface ServerDatabase {
  dataDir: string;
  databaseUrl?: string;
}

/**
 * The server's data directory and database from `--data`, `--database-url`
 * and the environment, as `keepsync server` resolves them. Without a
 * database URL the SQLite file must already exist: a command run in the
 * wrong directory says so instead of creating an empty server there.
 */
export function serverDatabase(values: { data?: string; 'database-url'?: string }): ServerDatabase {
  const dataDir = path.resolve(values.data ?? process.env.KEEPSYNC_DATA ?? './data');
  const databaseUrl = values['database-url'] || process.env.DATABASE_URL || undefined;
  if (!databaseUrl && !fs.existsSync(path.join(dataDir, 'keepsync.db'))) {
    throw new KeepsyncError('NOT_FOUND', `no keepsync database in ${dataDir}; pass the server's --data DIR or --database-url URL`);
  }
  return { dataDir, databaseUrl };
}
