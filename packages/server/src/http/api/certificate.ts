import { Router } from 'express';
import type { AppDeps } from '../deps.js';
import { requireSession } from '../session.js';

/**
 * GET /certificate: the certificate served right now, as the admin page's
 * settings show it: `{subject, validFrom, validTo, fingerprint, selfSigned}`.
 * The fingerprint is what pairing links carry and devices pin.
 */
export function certificateRoutes(deps: AppDeps): Router {
  const router = Router();

  router.get('/certificate', requireSession(deps.admin), (_req, res) => {
    const c = deps.certificate();
    res.json({ subject: c.subject, validFrom: c.validFrom, validTo: c.validTo, fingerprint: c.fingerprint, selfSigned: c.selfSigned });
  });

  return router;
}
