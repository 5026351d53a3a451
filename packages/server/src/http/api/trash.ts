import { Router } from 'express';
import { ADMIN } from '../../sync/Restorer.js';
import type { AppDeps } from '../deps.js';
import { requireRecentLogin, requireSession } from '../session.js';
import { folderParam, idParam } from './params.js';

/**
 * A folder's trash: GET /folders/:folder/trash, POST …/trash/:id/restore
 * (a folder comes back whole) and DELETE …/trash/:id (purged for good,
 * after a recent login).
 */
export function trashRoutes(deps: AppDeps): Router {
  const router = Router();
  const auth = requireSession(deps.admin);
  const { meta, restorer } = deps.folders;

  router.get('/folders/:folder/trash', auth, async (req, res) => {
    const folder = await folderParam(meta, req);
    res.json(await restorer.trash(folder));
  });

  router.post('/folders/:folder/trash/:id/restore', auth, async (req, res) => {
    const folder = await folderParam(meta, req);
    res.json(await restorer.restoreTrashItem(folder, trashId(req.params.id), ADMIN));
  });

  router.delete('/folders/:folder/trash/:id', auth, async (req, res) => {
    // Nothing can bring a purged item back: ask for the password again after a while.
    requireRecentLogin(deps.admin, res);
    const folder = await folderParam(meta, req);
    await restorer.purgeTrashItem(folder, trashId(req.params.id), ADMIN);
    res.status(204).end();
  });

  return router;
}

function trashId(raw: unknown): number {
  return idParam(raw, 'the trash item id');
}
