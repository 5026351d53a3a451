import type { Knex } from 'knex';
import { KeepsyncError } from '@keepsync/protocol';
import type { DeleteHoldRule } from '../sync/DeleteHold.js';

export type { DeleteHoldRule };

/** Server-wide settings the admin can change. */
export interface ServerSettings {
  /** Versions kept per file: at most `keep`, none older than `maxAgeDays` (the current one always stays). */
  versions: { keep: number; maxAgeDays: number };
  /** Days a trash item stays restorable before it is purged. */
  trashDays: number;
  /** The address put in pairing links (`https://nas.example.com`), or null for the listening address. */
  publicUrl: string | null;
  /** When a device's deletes are held for the admin to apply or undo (see sync/DeleteHold.ts). */
  deleteHold: DeleteHoldRule;
}


/** A change to some settings; omitted fields stay as they are. */
export interface SettingsUpdate {
  versions?: { keep?: number; maxAgeDays?: number };
  trashDays?: number;
  publicUrl?: string | null;
  deleteHold?: Partial<DeleteHoldRule>;
}

export const DEFAULT_SETTINGS: ServerSettings = {
  versions: { keep: 32, maxAgeDays: 90 }, trashDays: 30, publicUrl: null, deleteHold: { files: 100, percent: 25, minFolderFiles: 40 },
};

const RETENTION = 'retention';
const PUBLIC_URL = 'public_url';
const DELETE_HOLD = 'delete_hold';

/**
 * Reads and writes settings in the `settings` table (one JSON value per key).
 * Validation lives here, so the API and the CLI refuse the same things.
 */
export class Settings {
  constructor(private readonly db: Knex) {}

  /** The current settings; defaults for anything never set. */
  async get(): Promise<ServerSettings> {
    const rows: Array<{ key: string; value: string }> = await this.db('settings').whereIn('key', [RETENTION, PUBLIC_URL, DELETE_HOLD]);
    const value = (key: string): unknown => {
      const row = rows.find((r) => r.key === key);
      return row ? JSON.parse(row.value) : undefined;
    };
    const retention = (value(RETENTION) ?? {}) as { keep?: number; maxAgeDays?: number; trashDays?: number };
    const publicUrl = value(PUBLIC_URL);
    const hold = (value(DELETE_HOLD) ?? {}) as Partial<DeleteHoldRule>;
    return {
      versions: {
        keep: retention.keep ?? DEFAULT_SETTINGS.versions.keep,
        maxAgeDays: retention.maxAgeDays ?? DEFAULT_SETTINGS.versions.maxAgeDays,
      },
      trashDays: retention.trashDays ?? DEFAULT_SETTINGS.trashDays,
      publicUrl: typeof publicUrl === 'string' ? publicUrl : null,
      deleteHold: { ...DEFAULT_SETTINGS.deleteHold, ...hold },
    };
  }

  /** Validates and stores a change in one transaction; throws KeepsyncError('USAGE') on bad input. */
  async update(change: SettingsUpdate): Promise<ServerSettings> {
    const current = await this.get();
    const next = applyUpdate(current, change);
    await this.db.transaction(async (trx) => {
      const put = (key: string, value: unknown) =>
        trx('settings').insert({ key, value: JSON.stringify(value) }).onConflict('key').merge();
      await put(RETENTION, { keep: next.versions.keep, maxAgeDays: next.versions.maxAgeDays, trashDays: next.trashDays });
      await put(PUBLIC_URL, next.publicUrl);
      await put(DELETE_HOLD, next.deleteHold);
    });
    return next;
  }
}

/** True when `after` keeps less history than `before` (needs a recent admin login). */
export function lowersRetention(before: ServerSettings, after: ServerSettings): boolean {
  return (
    after.versions.keep < before.versions.keep ||
    after.versions.maxAgeDays < before.versions.maxAgeDays ||
    after.trashDays < before.trashDays
  );
}

/** True when `after` holds fewer bursts of deletes than `before` (needs a recent admin login too). */
export function weakensHold(before: ServerSettings, after: ServerSettings): boolean {
  const looser = (b: number, a: number) => (b > 0 && (a === 0 || a > b));
  const [b, a] = [before.deleteHold, after.deleteHold];
  return looser(b.files, a.files) || looser(b.percent, a.percent) || (b.percent > 0 && a.minFolderFiles > b.minFolderFiles);
}

/** Answers the settings with `change` applied, or throws a one-line KeepsyncError. */
export function applyUpdate(current: ServerSettings, change: SettingsUpdate): ServerSettings {
  if (typeof change !== 'object' || change === null) throw invalid('settings must be a JSON object');
  const versions = change.versions ?? {};
  if (typeof versions !== 'object' || versions === null) throw invalid('versions must be an object {keep, maxAgeDays}');
  return {
    versions: {
      keep: wholeNumber('versions.keep', versions.keep, 1, 1000) ?? current.versions.keep,
      maxAgeDays: wholeNumber('versions.maxAgeDays', versions.maxAgeDays, 1, 36500) ?? current.versions.maxAgeDays,
    },
    trashDays: wholeNumber('trashDays', change.trashDays, 1, 36500) ?? current.trashDays,
    publicUrl: change.publicUrl === undefined ? current.publicUrl : parsePublicUrl(change.publicUrl),
    deleteHold: holdUpdate(current.deleteHold, change.deleteHold),
  };
}

function holdUpdate(current: DeleteHoldRule, change: unknown): DeleteHoldRule {
  if (change === undefined) return current;
  if (typeof change !== 'object' || change === null) throw invalid('deleteHold must be an object {files, percent, minFolderFiles}; 0 turns a rule off');
  const c = change as Record<string, unknown>;
  return {
    files: wholeNumber('deleteHold.files', c.files, 0, 1_000_000) ?? current.files,
    percent: wholeNumber('deleteHold.percent', c.percent, 0, 100) ?? current.percent,
    minFolderFiles: wholeNumber('deleteHold.minFolderFiles', c.minFolderFiles, 0, 1_000_000) ?? current.minFolderFiles,
  };
}

function wholeNumber(name: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${name} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

/**
 * A public URL is `https://host[:port]` (or http:// behind a proxy) with no
 * path, query or credentials; stored without a trailing slash. Empty means none.
 */
export function parsePublicUrl(value: unknown): string | null {
  if (value === null || value === '') return null;
  const hint = 'publicUrl must look like https://nas.example.com or https://nas.example.com:8443, with no path';
  if (typeof value !== 'string' || value.length > 2048) throw invalid(hint);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(hint);
  }
  const ok =
    (url.protocol === 'https:' || url.protocol === 'http:') &&
    url.pathname === '/' &&
    !url.search &&
    !url.hash &&
    !url.username &&
    !url.password;
  if (!ok || /[?#]/.test(value)) throw invalid(hint);
  return url.origin;
}

function invalid(message: string): KeepsyncError {
  return new KeepsyncError('USAGE', message);
}
