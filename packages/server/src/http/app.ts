import express from 'express';
import { KeepsyncError } from '@keepsync/protocol';
import { activityRoutes } from './api/activity.js';
import { certificateRoutes } from './api/certificate.js';
import { deviceRoutes } from './api/devices.js';
import { fileRoutes } from './api/files.js';
import { holdRoutes } from './api/holds.js';
import { trashRoutes } from './api/trash.js';
import { sessionRoutes } from './api/session.js';
import { settingsRoutes } from './api/settings.js';
import { statusRoutes } from './api/status.js';
import type { AppDeps } from './deps.js';
import { errorHandler } from './errors.js';
import { adminPageRoutes } from './adminPage.js';
import { pageRoutes } from './pages.js';
import { noStore, sameOrigin, securityHeaders } from './security.js';

export type { AppDeps, FolderDeps, Presence } from './deps.js';

/** Largest JSON body the API accepts. */
export const MAX_JSON_BODY = 64 * 1024;

/**
 * The admin web page and JSON API (SPEC section 6) and the device pairing
 * endpoint. Serve it with https.createServer({cert, key}, app), or over plain
 * HTTP only behind the explicit proxy option (`behindProxy`).
 */
export function createApp(deps: AppDeps): express.Express {
  const app = express();
  const log = deps.log ?? ((m: string) => console.error(m));
  app.disable('x-powered-by');
  // Behind the proxy, trust exactly one hop: the address the proxy itself saw.
  app.set('trust proxy', deps.behindProxy ? 1 : false);
  app.set('etag', false);

  app.use(securityHeaders());

  const api = express.Router();
  api.use(noStore());
  api.use(sameOrigin(deps.behindProxy ?? false));
  api.use(express.json({ limit: MAX_JSON_BODY, strict: true }));
  api.use(sessionRoutes(deps));
  api.use(deviceRoutes(deps));
  api.use(statusRoutes(deps));
  api.use(settingsRoutes(deps));
  api.use(fileRoutes(deps));
  api.use(trashRoutes(deps));
  api.use(holdRoutes(deps));
  api.use(activityRoutes(deps));
  api.use(certificateRoutes(deps));
  api.use((req) => {
    throw new KeepsyncError('NOT_FOUND', `no API endpoint ${req.method} /api/v1${req.path}`);
  });
  app.use('/api/v1', api);

  app.use(adminPageRoutes());
  app.use(pageRoutes(deps));
  app.use((_req, res) => {
    res.status(404).type('text/plain').send('not found\n');
  });
  app.use(errorHandler(log));
  return app;
}
