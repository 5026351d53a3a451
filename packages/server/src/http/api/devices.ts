import { Router } from 'express';
import { KeepsyncError } from '@keepsync/protocol';
import type { Device } from '../../auth/DeviceRegistry.js';
import { RateLimiter, PAIRING_POLICY } from '../../auth/RateLimiter.js';
import { folderByName } from '../../settings/folders.js';
import type { AppDeps } from '../deps.js';
import { clientAddress } from '../security.js';
import { requireRecentLogin, requireSession } from '../session.js';

/** A device as the API shows it: ISO times and whether it is connected now. */
export function deviceJson(device: Device, online: boolean) {
  return {
    id: device.id,
    name: device.name,
    platform: device.platform,
    pairedAt: new Date(device.pairedAt).toISOString(),
    lastSeenAt: device.lastSeenAt === null ? null : new Date(device.lastSeenAt).toISOString(),
    online,
    address: device.address,
  };
}

/**
 * The pairing link for a code: public URL if set, else the listening address.
 * Without a fingerprint (plain HTTP behind a proxy) the device trusts the
 * address's publicly valid certificate instead of pinning one.
 */
export function pairingLink(base: string, code: string, fingerprint: string): string {
  return `${base.replace(/\/+$/, '')}/pair?code=${encodeURIComponent(code)}${fingerprint ? `&fp=${fingerprint}` : ''}`;
}

function deviceId(raw: string): number {
  const id = Number(raw);
  if (!/^[0-9]{1,9}$/.test(raw) || !Number.isSafeInteger(id)) throw new KeepsyncError('NOT_FOUND', `no device with id ${raw.slice(0, 20)}`);
  return id;
}

/** Routes for admins (devices, pairings) and the one route for devices (POST /pair). */
export function deviceRoutes(deps: AppDeps): Router {
  const router = Router();
  const auth = requireSession(deps.admin);
  const pairLimiter = new RateLimiter(PAIRING_POLICY, deps.clock);

  router.get('/devices', auth, async (_req, res) => {
    const devices = await deps.devices.list();
    res.json(devices.map((d) => deviceJson(d, deps.presence.isOnline(d.id))));
  });

  router.patch('/devices/:id', auth, async (req, res) => {
    const id = deviceId(req.params.id as string);
    const device = await deps.devices.rename(id, req.body?.name);
    if (!device) throw new KeepsyncError('NOT_FOUND', `no device with id ${id}; it may have been removed`);
    res.json(deviceJson(device, deps.presence.isOnline(id)));
  });

  router.delete('/devices/:id', auth, async (req, res) => {
    const id = deviceId(req.params.id as string);
    if (!(await deps.devices.remove(id))) throw new KeepsyncError('NOT_FOUND', `no device with id ${id}; it may have been removed already`);
    deps.presence.disconnect(id);
    res.status(204).end();
  });

  router.post('/pairings', auth, async (req, res) => {
    requireRecentLogin(deps.admin, res);
    const body = (req.body ?? {}) as { name?: unknown; folder?: unknown };
    const name = body.name === undefined || body.name === null || body.name === '' ? undefined : body.name;
    if (name !== undefined && typeof name !== 'string') throw new KeepsyncError('USAGE', 'name must be a string');
    if (body.folder !== undefined && typeof body.folder !== 'string') throw new KeepsyncError('USAGE', 'folder must be a folder name');
    const { code, expiresAt } = await deps.devices.createPairing({ name, folder: body.folder });
    const fingerprint = deps.certificate().fingerprint;
    const base = (await deps.settings.get()).publicUrl ?? deps.serverUrl();
    const link = pairingLink(base, code, fingerprint);
    // The QR code travels as SVG text; the page shows it as an image, never as markup.
    const { default: QRCode } = await import('qrcode');
    const qr = await QRCode.toString(link, { type: 'svg', margin: 2, errorCorrectionLevel: 'M' });
    res.status(201).json({ code, link, fingerprint, expiresAt: new Date(expiresAt).toISOString(), qr });
  });

  // Called by a device after it checked the certificate fingerprint from the link.
  router.post('/pair', async (req, res) => {
    const address = clientAddress(req);
    pairLimiter.attempt(address, 'too many pairing attempts from this address; wait 10 minutes and try again');
    const body = (req.body ?? {}) as { code?: unknown; name?: unknown; platform?: unknown; folder?: unknown };
    if (typeof body.code !== 'string') throw new KeepsyncError('USAGE', 'code must be the code from the pairing link');
    // A device binding another folder than the link's (`keepsync pair --folder`) learns of a wrong name before the code is used up.
    if (typeof body.folder === 'string' && !(await folderByName(deps.db, body.folder))) {
      throw new KeepsyncError('FOLDER_UNKNOWN', `the server has no folder named ${body.folder}; pair again without --folder to use the link's folder`);
    }
    const redeemed = await deps.devices.redeemPairing({
      code: body.code,
      name: typeof body.name === 'string' ? body.name : '',
      platform: typeof body.platform === 'string' ? body.platform : '',
      address,
    });
    pairLimiter.succeed(address);
    // The public address lets a device paired on the LAN find the server from outside.
    const publicUrl = (await deps.settings.get()).publicUrl;
    res.status(201).json({ ...redeemed, ...(publicUrl ? { publicUrl } : {}) });
  });

  return router;
}
