import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** A database a test server can use: SQLite in its data dir, or a fresh PostgreSQL database. */
export interface TestDatabase {
  name: 'sqlite' | 'postgres';
  /** undefined for SQLite (the server uses DATA/keepsync.db). */
  url?: string;
  drop(): Promise<void>;
}

export interface DatabaseKind {
  name: 'sqlite' | 'postgres';
  create(): Promise<TestDatabase>;
}

const sqlite: DatabaseKind = {
  name: 'sqlite',
  create: async () => ({ name: 'sqlite', drop: async () => {} }),
};

function postgres(baseUrl: string): DatabaseKind {
  return {
    name: 'postgres',
    async create() {
      const dbName = `keepsync_t_${randomBytes(6).toString('hex')}`;
      const admin = new pg.Client({ connectionString: baseUrl });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${dbName}`);
      } finally {
        await admin.end();
      }
      const url = new URL(baseUrl);
      url.pathname = `/${dbName}`;
      return {
        name: 'postgres',
        url: url.toString(),
        async drop() {
          const c = new pg.Client({ connectionString: baseUrl });
          await c.connect();
          try {
            await c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
          } finally {
            await c.end();
          }
        },
      };
    },
  };
}

/**
 * The databases the suite runs on: SQLite always, PostgreSQL when
 * KEEPSYNC_TEST_DATABASE_URL is set (CI sets it; see .ci/run).
 */
export function databaseKinds(): DatabaseKind[] {
  const url = process.env.KEEPSYNC_TEST_DATABASE_URL;
  return url ? [sqlite, postgres(url)] : [sqlite];
}
