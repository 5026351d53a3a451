import type { Knex } from 'knex';
import { KeepsyncError } from '@keepsync/protocol';
import { randomToken, sha256Hex } from './tokens.js';
import { recordActivity } from '../settings/activity.js';
import { folderByName } from '../settings/folders.js';

/** A paired device that has not been removed. Times are ms since the epoch. */
export interface Device {
  id: number;
  name: string;
  platform: string;
  pairedAt: number;
  lastSeenAt: number | null;
  /** The address it last connected from. */
  address: string | null;
}

/** What a token turns out to be: a live device, a removed one, or nothing we issued. */
export type Authentication = { status: 'ok'; device: Device } | { status: 'revoked' } | { status: 'unknown' };

/** A freshly redeemed pairing. `token` exists only here and on the device; the server keeps its hash. */
export interface Redemption {
  deviceId: number;
  token: string;
  folder: string;
  deviceName: string;
}

/** How long a pairing link stays usable. */
export const PAIRING_TTL_MS = 15 * 60_000;

const PAIRING_INVALID = 'pairing link is invalid, expired or already used; create a new one with "keepsync server pair" or on the admin page';

/**
 * Devices and pairings. Secrets (pairing codes, device tokens) are random,
 * handed out once and stored only as SHA-256. Every change that an admin
 * would want to see later writes an activity row in the same transaction.
 */
export class DeviceRegistry {
  constructor(
    private readonly db: Knex,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Creates a single-use pairing for `folder` valid for 15 minutes. The code
   * (128 bits, base64url) is returned once. Unknown folder → FOLDER_UNKNOWN.
   */
  async createPairing(opts: { folder?: string; name?: string } = {}): Promise<{ code: string; expiresAt: number }> {
    const folderName = opts.folder ?? 'Sync';
    const name = opts.name === undefined ? null : validateDeviceName(opts.name);
    const folder = await folderByName(this.db, folderName);
    if (!folder) throw new KeepsyncError('FOLDER_UNKNOWN', `folder "${folderName}" does not exist on this server; use one of the folders on the admin page`);
    const code = randomToken(16);
    const now = this.clock();
    const expiresAt = now + PAIRING_TTL_MS;
    await this.db.transaction(async (trx) => {
      await trx('pairings').insert({ code_hash: sha256Hex(code), name, folder_id: folder.id, created_at: now, expires_at: expiresAt });
      const what = name ? `pairing link created for "${name}" (folder ${folder.name})` : `pairing link created (folder ${folder.name})`;
      await recordActivity(trx, now, { kind: 'pairing-created', message: what, folderId: folder.id });
    });
    return { code, expiresAt };
  }

  /**
   * Turns a pairing code into a device and its token, atomically: of two
   * redemptions of one code exactly one succeeds. Expired, used or unknown
   * codes throw PAIRING_INVALID; a bad `name` throws USAGE before the code is spent.
   */
  async redeemPairing(opts: { code: string; name: string; platform: string; address: string | null }): Promise<Redemption> {
    const now = this.clock();
    const platform = cleanPlatform(opts.platform);
    const token = randomToken(32);
    if (typeof opts.code !== 'string' || opts.code.length > 128) throw new KeepsyncError('PAIRING_INVALID', PAIRING_INVALID);
    return this.db.transaction(async (trx) => {
      const pairing = await trx('pairings as p')
        .join('folders as f', 'f.id', 'p.folder_id')
        .where('p.code_hash', sha256Hex(opts.code))
        .first('p.id', 'p.name', 'p.expires_at', 'p.used_at', 'p.folder_id', 'f.name as folder');
      if (!pairing || pairing.used_at !== null || Number(pairing.expires_at) <= now) {
        throw new KeepsyncError('PAIRING_INVALID', PAIRING_INVALID);
      }
      const deviceName = pairing.name ?? validateDeviceName(opts.name);
      // The guarded update is what makes a code single-use under concurrency.
      const claimed = await trx('pairings').where({ id: pairing.id }).whereNull('used_at').update({ used_at: now });
      if (claimed !== 1) throw new KeepsyncError('PAIRING_INVALID', PAIRING_INVALID);
      const inserted = await trx('devices')
        .insert({ name: deviceName, platform, token_hash: sha256Hex(token), paired_at: now, last_seen_at: null, address: opts.address })
        .returning('id');
      const deviceId = Number(typeof inserted[0] === 'object' ? inserted[0].id : inserted[0]);
      await trx('pairings').where({ id: pairing.id }).update({ device_id: deviceId });
      await recordActivity(trx, now, {
        kind: 'device-paired',
        message: `device "${deviceName}" paired (${platform || 'unknown platform'}, folder ${pairing.folder})`,
        deviceId,
        folderId: pairing.folder_id,
      });
      return { deviceId, token, folder: pairing.folder, deviceName };
    });
  }

  /** Looks a device token up by its hash (I10: removed → revoked, anything else → unknown). */
  async authenticate(token: string): Promise<Authentication> {
    if (typeof token !== 'string' || token.length === 0 || token.length > 256) return { status: 'unknown' };
    const row = await this.db('devices').where({ token_hash: sha256Hex(token) }).first();
    if (!row) return { status: 'unknown' };
    if (row.removed_at !== null) return { status: 'revoked' };
    return { status: 'ok', device: toDevice(row) };
  }

  /** Devices not removed, in pairing order. */
  async list(): Promise<Device[]> {
    const rows = await this.db('devices').whereNull('removed_at').orderBy('id');
    return rows.map(toDevice);
  }

  /** The device, or undefined when unknown or removed. */
  async get(id: number): Promise<Device | undefined> {
    const row = await this.db('devices').where({ id }).whereNull('removed_at').first();
    return row ? toDevice(row) : undefined;
  }

  /** Renames a device; undefined when unknown or removed. A bad name throws USAGE. */
  async rename(id: number, name: string): Promise<Device | undefined> {
    const newName = validateDeviceName(name);
    return this.db.transaction(async (trx) => {
      const row = await trx('devices').where({ id }).whereNull('removed_at').first();
      if (!row) return undefined;
      await trx('devices').where({ id }).update({ name: newName });
      await recordActivity(trx, this.clock(), { kind: 'device-renamed', message: `device "${row.name}" renamed to "${newName}"`, deviceId: id });
      return { ...toDevice(row), name: newName };
    });
  }

  /**
   * Removes a device: its token stops working at once (authenticate says
   * revoked). False when unknown or already removed. Closing its live
   * connections is the caller's job (Presence.disconnect).
   */
  async remove(id: number): Promise<boolean> {
    return this.db.transaction(async (trx) => {
      const now = this.clock();
      const row = await trx('devices').where({ id }).whereNull('removed_at').first('name');
      if (!row) return false;
      const changed = await trx('devices').where({ id }).whereNull('removed_at').update({ removed_at: now });
      if (changed !== 1) return false;
      await recordActivity(trx, now, { kind: 'device-removed', message: `device "${row.name}" removed`, deviceId: id });
      return true;
    });
  }

  /** Records that the device was seen now, from `address`. */
  async touch(id: number, opts: { address: string | null }): Promise<void> {
    await this.db('devices').where({ id }).update({ last_seen_at: this.clock(), address: opts.address });
  }
}

/** A device name: 1–64 characters, no control characters, trimmed. Throws USAGE otherwise. */
export function validateDeviceName(name: unknown): string {
  const trimmed = typeof name === 'string' ? name.normalize('NFC').trim() : '';
  if (trimmed.length < 1 || [...trimmed].length > 64 || /\p{Cc}/u.test(trimmed)) {
    throw new KeepsyncError('USAGE', 'device name must be 1 to 64 characters without control characters');
  }
  return trimmed;
}

function cleanPlatform(platform: unknown): string {
  return typeof platform === 'string' ? platform.replace(/\p{Cc}/gu, '').slice(0, 64) : '';
}

function toDevice(row: Record<string, unknown>): Device {
  return {
    id: Number(row.id),
    name: String(row.name),
    platform: String(row.platform ?? ''),
    pairedAt: Number(row.paired_at),
    lastSeenAt: row.last_seen_at === null || row.last_seen_at === undefined ? null : Number(row.last_seen_at),
    address: (row.address as string | null) ?? null,
  };
}
