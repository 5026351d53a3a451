import { Router } from 'express';
import { KeepsyncError } from '@keepsync/protocol';
import type { AppDeps } from '../deps.js';
import { requireSession } from '../session.js';

/** Most activity rows one request answers. */
export const MAX_ACTIVITY = 200;

/**
 * GET /activity?limit=N: the most recent activity rows, newest first, as
 * `[{id, at, kind, message, device, folder}]` (device and folder are names,
 * or null when the row names none or the device is gone).
 */
export function activityRoutes(deps: AppDeps): Router {
  const router = Router();

  router.get('/activity', requireSession(deps.admin), async (req, res) => {
    const raw = req.query.limit;
    const limit = raw === undefined ? 50 : Number(raw);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_ACTIVITY) {
      throw new KeepsyncError('USAGE', `limit must be a whole number from 1 to ${MAX_ACTIVITY}`);
    }
    const rows: Array<Record<string, unknown>> = await deps.db('activity as a')
      .leftJoin('devices as d', 'd.id', 'a.device_id')
      .leftJoin('folders as f', 'f.id', 'a.folder_id')
      .orderBy('a.id', 'desc')
      .limit(limit)
      .select('a.id', 'a.at', 'a.kind', 'a.message', 'd.name as device', 'f.name as folder');
    res.json(
      rows.map((r) => ({
        id: Number(r.id),
        at: new Date(Number(r.at)).toISOString(),
        kind: String(r.kind),
        message: String(r.message),
        device: r.device == null ? null : String(r.device),
        folder: r.folder == null ? null : String(r.folder),
      })),
    );
  });

  return router;
}
