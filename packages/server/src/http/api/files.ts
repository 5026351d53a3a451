import type { Response } from 'express';
import { Router } from 'express';
import { KeepsyncError, baseName, sha256Hex, unpackManifest, type RelPath } from '@keepsync/protocol';
import type { EntryRecord, Folder, VersionRecord } from '../../sync/model.js';
import { ADMIN } from '../../sync/Restorer.js';
import type { AppDeps } from '../deps.js';
import { requireSession } from '../session.js';
import { folderParam, idParam, pathParam, timeParam } from './params.js';

function entryJson(e: EntryRecord) {
  return {
    path: e.path,
    name: baseName(e.path),
    kind: e.kind,
    size: e.kind === 'file' ? e.size : 0,
    hash: e.kind === 'file' ? e.hash : '',
    modifiedAt: e.kind === 'file' ? new Date(e.mtime).toISOString() : null,
    version: e.kind === 'file' ? e.versionId : null,
  };
}

/**
 * Browsing a folder's files and their versions, downloading any version and
 * restoring one as current: GET /folders/:folder/files, /versions, /content
 * and POST /folders/:folder/restore (one file to a version, or a folder to
 * a point in time).
 */
export function fileRoutes(deps: AppDeps): Router {
  const router = Router();
  const auth = requireSession(deps.admin);
  const { meta } = deps.folders;

  router.get('/folders/:folder/files', auth, async (req, res) => {
    const folder = await folderParam(meta, req);
    const raw = req.query.path;
    const dir = raw === undefined || raw === '' ? undefined : pathParam(raw);
    if (dir) {
      const e = await meta.entry(folder.id, dir);
      if (!e || e.deleted) throw new KeepsyncError('NOT_FOUND', `${dir} is not in ${folder.name}; it may have been moved or deleted`);
      if (e.kind !== 'dir') throw new KeepsyncError('USAGE', `${dir} is a file; GET /folders/${folder.id}/versions?path=… lists its versions`);
    }
    res.json((await meta.liveChildren(folder.id, dir)).map(entryJson));
  });

  router.get('/folders/:folder/versions', auth, async (req, res) => {
    const folder = await folderParam(meta, req);
    res.json(await deps.folders.restorer.versions(folder, pathParam(req.query.path)));
  });

  router.get('/folders/:folder/content', auth, async (req, res) => {
    const folder = await folderParam(meta, req);
    const path = pathParam(req.query.path);
    const v = await versionToSend(deps, folder, path, req.query.version);
    await sendContent(deps, res, path, v);
  });

  router.post('/folders/:folder/restore', auth, async (req, res) => {
    const folder = await folderParam(meta, req);
    const body = (req.body ?? {}) as { path?: unknown; version?: unknown; at?: unknown };
    if (body.at !== undefined) {
      if (body.version !== undefined) throw new KeepsyncError('USAGE', 'give either version (one file) or at (a point in time), not both');
      const scope = body.path === undefined || body.path === '' ? undefined : pathParam(body.path);
      res.json(await deps.folders.restorer.restoreAt(folder, scope, timeParam(body.at), ADMIN));
      return;
    }
    const path = pathParam(body.path);
    const version = body.version === undefined || body.version === null ? 0 : idParam(body.version, 'version');
    const r = await deps.folders.restorer.restoreVersion(folder, path, version, ADMIN);
    res.json(r);
  });

  return router;
}

/** The version asked for, or the current content; NOT_FOUND when it is not a version of that file. */
async function versionToSend(deps: AppDeps, folder: Folder, path: RelPath, rawVersion: unknown): Promise<VersionRecord> {
  const { meta } = deps.folders;
  let id: number;
  if (rawVersion === undefined || rawVersion === '') {
    const e = await meta.entry(folder.id, path);
    if (!e || e.deleted || e.kind !== 'file') throw new KeepsyncError('NOT_FOUND', `${path} is not a file in ${folder.name}; ask for an earlier version with &version=ID`);
    id = e.versionId;
  } else {
    id = idParam(rawVersion, 'version');
  }
  const v = await meta.version(id);
  if (!v || v.folderId !== folder.id || v.path !== path) throw new KeepsyncError('NOT_FOUND', `${path} has no version ${id}; GET /folders/${folder.id}/versions?path=… lists them`);
  return v;
}

/**
 * Streams a version's bytes chunk by chunk, each verified against its hash,
 * as a download. A chunk that goes missing or corrupt mid-way cuts the
 * response short, so a damaged download never looks whole.
 */
async function sendContent(deps: AppDeps, res: Response, path: RelPath, v: VersionRecord): Promise<void> {
  const chunks = unpackManifest(v.manifest);
  const missing = await deps.folders.content.missing([...new Set(chunks.map((c) => c.hash))]);
  if (missing.length > 0) {
    throw new KeepsyncError('UNAVAILABLE', `${missing.length} chunks of ${path} are missing from the server's content store; run "keepsync server verify"`);
  }
  res.status(200);
  res.attachment(baseName(path));
  res.set({ 'Content-Type': 'application/octet-stream', 'Content-Length': String(v.size) });
  let closed = false;
  res.once('close', () => (closed = true));
  for (const c of chunks) {
    if (closed) return;
    const data = await deps.folders.content.get(c.hash);
    if (!data || data.byteLength !== c.size || sha256Hex(data) !== c.hash) {
      deps.log?.(`keepsync: chunk ${c.hash} of ${path} is missing or corrupt; the download was cut short`);
      res.destroy();
      return;
    }
    if (!res.write(data)) await drained(res);
  }
  res.end();
}

/** Resolves when the response can take more, or is gone. */
function drained(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
