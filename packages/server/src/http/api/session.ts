import { Router } from 'express';
import type { AppDeps } from '../deps.js';
import { clientAddress } from '../security.js';
import { SESSION_COOKIE, clearSessionCookie, readCookie, requireSession, sessionOf, setSessionCookie } from '../session.js';

/**
 * POST /session {password} logs in (answers {csrfToken}, sets the cookie);
 * GET /session answers the token again for a reloaded page; DELETE logs out.
 */
export function sessionRoutes(deps: AppDeps): Router {
  const router = Router();
  const behindProxy = deps.behindProxy ?? false;

  router.post('/session', async (req, res) => {
    const password: unknown = req.body?.password;
    const session = await deps.admin.login(password, clientAddress(req));
    // A fresh id on every login, and the old session gone: no session fixation.
    await deps.admin.logout(readCookie(req, SESSION_COOKIE));
    setSessionCookie(req, res, session.cookie, behindProxy);
    res.json({ csrfToken: session.csrfToken });
  });

  router.get('/session', requireSession(deps.admin), (_req, res) => {
    res.json({ csrfToken: sessionOf(res).csrfToken });
  });

  router.delete('/session', requireSession(deps.admin), async (req, res) => {
    await deps.admin.logout(readCookie(req, SESSION_COOKIE));
    clearSessionCookie(req, res, behindProxy);
    res.status(204).end();
  });

  return router;
}
