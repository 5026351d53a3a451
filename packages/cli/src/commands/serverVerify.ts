import path from 'node:path';
import { KeepsyncError } from '@keepsync/protocol';
import { FsContentStore, KnexMaintenanceStore, describeBadChunk, openDatabase, verifyStore } from '@keepsync/server';
import { parse } from '../args.js';
import { Exit } from '../output.js';
import { serverDatabase } from './serverDatabase.js';

/**
 * `keepsync server verify`: checks that every chunk the index refers to is
 * in the content store with the right SHA-256, and that the index hangs
 * together. Prints one line per problem, then exits 1; or one OK line and 0.
 * Reads only, so it may run beside the server.
 */
export default async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { data: { type: 'string' }, 'database-url': { type: 'string' } });
  const { dataDir, databaseUrl } = serverDatabase(values);
  const db = await openDatabase({ databaseUrl, dataDir });
  try {
    const report = await verifyStore(new KnexMaintenanceStore(db), new FsContentStore(dataDir));
    const out = (line: string) => process.stdout.write(`${line}\n`);
    for (const b of report.badChunks) out(describeBadChunk(b));
    for (const p of report.indexProblems) out(p);
    if (report.badChunks.length > 0 || report.indexProblems.length > 0) {
      const files = new Set(report.badChunks.flatMap((b) => b.affected.map((a) => `${a.folder}/${a.path}`)));
      const versions = new Set(report.badChunks.flatMap((b) => b.affected.map((a) => a.version)));
      const parts = [];
      if (report.badChunks.length > 0) {
        parts.push(`${report.badChunks.length} of ${report.chunks} chunks missing or corrupt, affecting ${versions.size} versions of ${files.size} files`);
      }
      const n = report.indexProblems.length;
      if (n > 0) parts.push(`${n} index problem${n === 1 ? '' : 's'}`);
      throw new KeepsyncError(
        report.badChunks.length > 0 ? 'CHUNK_MISSING' : 'INTERNAL',
        `verify found ${parts.join(' and ')}; restore ${report.badChunks.length > 0 ? path.join(dataDir, 'chunks') : 'the database'} from a backup (the lines above name what is affected)`,
      );
    }
    out(`ok: ${report.chunks} chunks (${report.bytes} bytes) of ${report.versions} versions in ${report.folders} folders are present and intact`);
    return Exit.OK;
  } finally {
    await db.destroy();
  }
}
