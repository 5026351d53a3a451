import path from 'node:path';
import { KeepsyncError } from '@keepsync/protocol';
import { DeviceRegistry, Settings, openDatabase, pairingLink, readServerState } from '@keepsync/server';
import { parse } from '../args.js';
import { Exit } from '../output.js';

/**
 * `keepsync server pair`: creates a single-use pairing in the server's
 * database (the server may be running: SQLite WAL allows a second process)
 * and prints the link. The link's address and fingerprint come from the
 * public URL setting and DATA/server.json, which the server writes at start.
 */
export default async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    data: { type: 'string' },
    'database-url': { type: 'string' },
    name: { type: 'string' },
    folder: { type: 'string' },
  });
  const dataDir = path.resolve(values.data ?? process.env.KEEPSYNC_DATA ?? './data');
  const databaseUrl = values['database-url'] ?? process.env.DATABASE_URL ?? undefined;
  const state = await readServerState(dataDir);
  if (!state) {
    throw new KeepsyncError('UNAVAILABLE', 'the server has not been started with this data directory yet; run "keepsync server" first');
  }
  const db = await openDatabase({ databaseUrl: databaseUrl || undefined, dataDir });
  try {
    const { code } = await new DeviceRegistry(db).createPairing({ name: values.name, folder: values.folder });
    const base = (await new Settings(db).get()).publicUrl ?? state.url;
    process.stdout.write(`${pairingLink(base, code, state.fingerprint)}\n`);
    return Exit.OK;
  } finally {
    await db.destroy();
  }
}
