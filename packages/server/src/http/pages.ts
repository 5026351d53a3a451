import { Router } from 'express';
import type { AppDeps } from './deps.js';
import { pairingLink } from './api/devices.js';

/** Escapes text for HTML element content and double-quoted attributes. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title></head>
<body>
${body}
</body>
</html>
`;
}

const CODE = /^[A-Za-z0-9_-]{16,128}$/;
const FINGERPRINT = /^[0-9a-f]{64}$/;

/**
 * Pages for humans: /pair explains what to do with a pairing link (devices
 * pair from the command line). The admin page itself is adminPage.ts.
 */
export function pageRoutes(deps: AppDeps): Router {
  const router = Router();

  router.get('/', (_req, res) => res.redirect(302, '/admin'));

  router.get('/pair', async (req, res) => {
    const code = typeof req.query.code === 'string' ? req.query.code : '';
    const fp = typeof req.query.fp === 'string' ? req.query.fp.toLowerCase() : '';
    res.set('Cache-Control', 'no-store');
    if (!CODE.test(code) || !FINGERPRINT.test(fp)) {
      res.status(400).type('html').send(page('Keepsync pairing', '<h1>This pairing link is incomplete</h1>\n<p>Copy the whole link from the admin page or from <code>keepsync server pair</code>, or create a new one.</p>'));
      return;
    }
    const base = (await deps.settings.get()).publicUrl ?? deps.serverUrl();
    const link = pairingLink(base, code, fp);
    const body = [
      '<h1>Pair a device with Keepsync</h1>',
      '<p>On the computer that should sync, run this command (replace <code>~/Keepsync</code> with the folder to sync; files already in it are kept and merged):</p>',
      `<pre>keepsync pair "${escapeHtml(link)}" --dir ~/Keepsync</pre>`,
      '<p>The link works once, within 15 minutes of being created. The device checks that the server’s certificate has this fingerprint:</p>',
      `<p><code>sha256/${escapeHtml(fp)}</code></p>`,
    ].join('\n');
    res.type('html').send(page('Keepsync pairing', body));
  });

  return router;
}
