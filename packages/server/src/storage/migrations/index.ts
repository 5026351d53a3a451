import type { Knex } from 'knex';
import * as m001 from './001_initial.js';
import * as m002 from './002_trash_restored_at.js';
import * as m003 from './003_delete_holds.js';
import * as m004 from './004_entries_moved_from.js';

interface Migration {
  up(db: Knex): Promise<void>;
  down(db: Knex): Promise<void>;
}

const migrations: Record<string, Migration> = {
  '001_initial': m001,
  '002_trash_restored_at': m002,
  '003_delete_holds': m003,
  '004_entries_moved_from': m004,
};

/** Migrations compiled into the package (no directory scanning at run time). */
export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(migrations).sort(),
  getMigrationName: (name) => name,
  getMigration: async (name) => migrations[name],
};
