import { Router } from 'express';
import type { Knex } from 'knex';
import type { AppDeps } from '../deps.js';
import { requireSession } from '../session.js';

/** Current files and their bytes per folder (entries that are files and not deleted). */
async function folderTotals(db: Knex): Promise<Array<{ id: number; name: string; files: number; bytes: number }>> {
  const rows: Array<Record<string, unknown>> = await db('folders as f')
    .leftJoin('entries as e', (j) => j.on('e.folder_id', 'f.id').andOnVal('e.kind', 'file').andOnVal('e.deleted', false))
    .groupBy('f.id', 'f.name')
    .orderBy('f.id')
    .select('f.id', 'f.name')
    .count({ files: 'e.path' })
    .sum({ bytes: 'e.size' });
  return rows.map((r) => ({ id: Number(r.id), name: String(r.name), files: Number(r.files ?? 0), bytes: Number(r.bytes ?? 0) }));
}

/** GET /status (the admin page's header) and GET /folders. */
export function statusRoutes(deps: AppDeps): Router {
  const router = Router();
  const auth = requireSession(deps.admin);

  router.get('/status', auth, async (_req, res) => {
    const [folders, devices, settings, storage, holds] = await Promise.all([
      folderTotals(deps.db), deps.devices.list(), deps.settings.get(), deps.storage?.(), deps.folders.meta.holds('held'),
    ]);
    res.json({
      version: deps.version,
      fingerprint: deps.certificate().fingerprint,
      publicUrl: settings.publicUrl,
      folders: folders.length,
      devices: devices.length,
      online: deps.presence.online(),
      storage: storage ?? { currentBytes: folders.reduce((sum, f) => sum + f.bytes, 0) },
      /** Bursts of deletes waiting for the admin (GET /holds lists them). */
      heldDeletes: holds.length,
    });
  });

  router.get('/folders', auth, async (_req, res) => {
    res.json(await folderTotals(deps.db));
  });

  return router;
}
