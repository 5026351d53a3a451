import { Router } from 'express';
import { applyUpdate, lowersRetention, weakensHold, type SettingsUpdate } from '../../settings/Settings.js';
import type { AppDeps } from '../deps.js';
import { requireRecentLogin, requireSession } from '../session.js';

/** GET and PUT /settings: `{versions: {keep, maxAgeDays}, trashDays, publicUrl, deleteHold: {files, percent, minFolderFiles}}`. */
export function settingsRoutes(deps: AppDeps): Router {
  const router = Router();
  const auth = requireSession(deps.admin);

  router.get('/settings', auth, async (_req, res) => {
    res.json(await deps.settings.get());
  });

  router.put('/settings', auth, async (req, res) => {
    const change = (req.body ?? {}) as SettingsUpdate;
    const before = await deps.settings.get();
    // Keeping less history deletes it for good later, and holding fewer mass
    // deletes lets them through: ask for the password again.
    const after = applyUpdate(before, change);
    if (lowersRetention(before, after) || weakensHold(before, after)) requireRecentLogin(deps.admin, res);
    const saved = await deps.settings.update(change);
    deps.retentionChanged?.();
    res.json(saved);
  });

  return router;
}
