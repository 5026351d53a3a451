import path from 'node:path';
import fs from 'node:fs';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { migrationSource } from './migrations/index.js';

// PostgreSQL returns BIGINT as strings; every BIGINT we store (sequences, sizes,
// times in ms) fits a double exactly, so read them as numbers.
pg.types.setTypeParser(20, (v: string) => Number(v));

export type Db = Knex;

/** Where the index lives: a PostgreSQL URL, or SQLite inside the data directory. */
export interface DatabaseLocation {
  databaseUrl?: string;
  dataDir: string;
}

export function isPostgres(db: Knex): boolean {
  return db.client.config.client === 'pg';
}

/**
 * Opens the index database and runs the migrations. SQLite runs in WAL mode
 * with one connection (better-sqlite3 is synchronous; one writer at a time).
 */
export async function openDatabase(loc: DatabaseLocation): Promise<Knex> {
  let db: Knex;
  if (loc.databaseUrl) {
    db = knexFactory({ client: 'pg', connection: loc.databaseUrl, pool: { min: 0, max: 8 } });
  } else {
    fs.mkdirSync(loc.dataDir, { recursive: true });
    db = knexFactory({
      client: 'better-sqlite3',
      connection: { filename: path.join(loc.dataDir, 'keepsync.db') },
      useNullAsDefault: true,
      pool: {
        min: 1,
        max: 1,
        afterCreate: (conn: { pragma(s: string): unknown }, done: (err: Error | null, conn: unknown) => void) => {
          conn.pragma('journal_mode = WAL');
          conn.pragma('synchronous = NORMAL');
          conn.pragma('foreign_keys = ON');
          conn.pragma('busy_timeout = 5000');
          done(null, conn);
        },
      },
    });
  }
  try {
    await db.migrate.latest({ migrationSource });
  } catch (err) {
    await db.destroy();
    throw err;
  }
  return db;
}
