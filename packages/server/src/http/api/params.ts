import type { Request } from 'express';
import { KeepsyncError, parseRelPath, type RelPath } from '@keepsync/protocol';
import type { MetadataStore } from '../../sync/MetadataStore.js';
import type { Folder } from '../../sync/model.js';

/** The folder named by `:folder`, its id or its name; NOT_FOUND otherwise. */
export async function folderParam(meta: MetadataStore, req: Request): Promise<Folder> {
  const raw = String(req.params.folder ?? '');
  const byId = /^[0-9]{1,9}$/.test(raw) ? await meta.folderById(Number(raw)) : undefined;
  const folder = byId ?? (raw.length <= 255 ? await meta.folderByName(raw) : undefined);
  if (!folder) throw new KeepsyncError('NOT_FOUND', `no folder ${JSON.stringify(raw.slice(0, 60))}; GET /api/v1/folders lists them`);
  return folder;
}

/** A folder-relative path from the query or the body, validated as every path is. */
export function pathParam(value: unknown, what = 'path'): RelPath {
  if (value === undefined || value === '') throw new KeepsyncError('USAGE', `${what} is required: a path relative to the folder, like Photos/2024/a.jpg`);
  return parseRelPath(value);
}

/** A whole-number id (a version or a trash item); `what` names it in the error. */
export function idParam(value: unknown, what: string): number {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !/^[1-9][0-9]{0,14}$/.test(text)) {
    throw new KeepsyncError('USAGE', `${what} must be a positive whole number`);
  }
  return Number(text);
}

/** A point in time: an ISO 8601 date-time (with its offset) or milliseconds since 1970. */
export function timeParam(value: unknown, what = 'at'): number {
  const ms = typeof value === 'number' ? value : typeof value === 'string' && value.length <= 64 ? Date.parse(value) : NaN;
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new KeepsyncError('USAGE', `${what} must be a date and time, like 2026-12-01T14:00:00Z`);
  return ms;
}
