import { Router } from 'express';
import type { AppDeps } from '../deps.js';
import { requireSession } from '../session.js';
import { idParam } from './params.js';

/**
 * Held deletes (a burst of one device's deletes, kept from the other
 * devices until the admin decides): GET /holds lists those waiting, POST
 * /holds/:id/apply makes the deletes happen (into the trash), POST
 * /holds/:id/undo gives the files back to the device that deleted them.
 */
export function holdRoutes(deps: AppDeps): Router {
  const router = Router();
  const auth = requireSession(deps.admin);
  const { holds } = deps.folders;

  router.get('/holds', auth, async (_req, res) => {
    res.json(await holds.list());
  });

  router.post('/holds/:id/apply', auth, async (req, res) => {
    res.json(await holds.apply(idParam(req.params.id, 'the hold id')));
  });

  router.post('/holds/:id/undo', auth, async (req, res) => {
    res.json(await holds.undo(idParam(req.params.id, 'the hold id')));
  });

  return router;
}
