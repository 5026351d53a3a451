import path from 'node:path';
import fs from 'node:fs';
import knexFactory, { type Knex } from 'knex';
import { KeepsyncError, errorMessage } from '@keepsync/protocol';
import { migrationSource } from './migrations/index.js';

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
    if (!/^postgres(ql)?:\/\//i.test(loc.databaseUrl)) {
      throw new KeepsyncError('USAGE', 'the database URL must look like postgres://USER:PASSWORD@HOST:PORT/DATABASE; leave it unset for SQLite in the data directory');
    }
    // Loaded only here: a server on SQLite does not carry the PostgreSQL driver.
    const { default: pg } = await import('pg');
    // PostgreSQL returns BIGINT as strings; every BIGINT we store (sequences, sizes,
    // times in ms) fits a double exactly, so read them as numbers.
    pg.types.setTypeParser(20, (v: string) => Number(v));
    db = knexFactory({ client: 'pg', connection: loc.databaseUrl, pool: { min: 0, max: 8 }, log });
  } else {
    fs.mkdirSync(loc.dataDir, { recursive: true });
    db = knexFactory({
      client: 'better-sqlite3',
      connection: { filename: path.join(loc.dataDir, 'keepsync.db') },
      useNullAsDefault: true,
      log,
      pool: {
        min: 1,
        max: 1,
        afterCreate: (conn: SqliteConnection, done: (err: Error | null, conn: unknown) => void) => {
          keepStatements(conn);
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
    throw openError(loc, err);
  }
  return db;
}

interface SqliteConnection {
  pragma(s: string): unknown;
  prepare(sql: string): unknown;
}

/** Compiled statements kept per SQLite connection, the most recently used. */
const KEPT_STATEMENTS = 256;

/**
 * Keeps the connection's compiled statements for reuse. knex compiles every
 * query anew, and a push of 1,000 new files runs 1,000 inserts of one text
 * (a version each). better-sqlite3 runs a statement to its end in one call
 * (knex never iterates), so one compiled statement serves every query of its
 * text.
 */
function keepStatements(conn: SqliteConnection): void {
  const compile = conn.prepare.bind(conn);
  const kept = new Map<string, unknown>();
  conn.prepare = (sql: string) => {
    let statement = kept.get(sql);
    if (statement === undefined) {
      statement = compile(sql);
      if (kept.size >= KEPT_STATEMENTS) kept.delete(kept.keys().next().value!);
    } else {
      kept.delete(sql);
    }
    kept.set(sql, statement);
    return statement;
  };
}

/**
 * knex's own warnings, one line each. A failed connection is left out: the
 * query that needed it fails too, and its caller reports it once.
 */
const log = {
  warn(message: string) {
    if (!message.startsWith('Acquire connection error')) process.stderr.write(`knex: ${message.split('\n')[0]}\n`);
  },
};

/** Why the database cannot be opened, naming it without its password. */
function openError(loc: DatabaseLocation, err: unknown): KeepsyncError {
  if (!loc.databaseUrl) {
    const file = path.join(loc.dataDir, 'keepsync.db');
    return new KeepsyncError('UNAVAILABLE', `cannot open the database ${file}: ${errorMessage(err)}; check the --data directory (restore keepsync.db from a backup if it is damaged)`, { cause: err });
  }
  let where = 'at the database URL';
  try {
    const url = new URL(loc.databaseUrl);
    where = `${url.host}${url.pathname}`;
  } catch {
    // an unparsable URL is named generically
  }
  return new KeepsyncError('UNAVAILABLE', `cannot open the PostgreSQL database ${where}: ${errorMessage(err)}; check --database-url and that PostgreSQL is running`, { cause: err });
}
