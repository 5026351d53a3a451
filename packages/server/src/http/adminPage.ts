import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { Router } from 'express';

/**
 * The admin page's files: `packages/server/admin/`, beside `src/` and
 * `dist/`, so the same path works from the sources and from the build.
 */
export const ADMIN_ASSETS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../admin');

/**
 * Serves the admin page at /admin and its scripts and styles under /admin/.
 * Every asset comes from this server (no CDN): the page works offline on a
 * LAN. The page itself holds no data; it talks to /api/v1 only.
 */
export function adminPageRoutes(): Router {
  const router = Router();
  const sendIndex: express.RequestHandler = (_req, res) => {
    res.set('Cache-Control', 'no-store');
    res.sendFile(path.join(ADMIN_ASSETS, 'index.html'));
  };
  router.get('/admin', sendIndex);
  router.get('/admin/', sendIndex);
  router.use(
    '/admin',
    express.static(ADMIN_ASSETS, {
      index: false,
      dotfiles: 'ignore',
      redirect: false,
      // Short cache with revalidation: an upgraded server serves its own page at once.
      maxAge: 0,
      setHeaders: (res) => res.set('Cache-Control', 'no-cache'),
    }),
  );
  return router;
}
