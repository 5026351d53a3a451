import { EventEmitter } from 'node:events';
import {
  CHANGES_PAGE_SIZE, INLINE_MANIFEST_CHUNKS, KeepsyncError, crashPoint, diffManifest, unpackManifest,
  type Entry, type ManifestRef, type Op, type OpResult, type RelPath,
} from '@keepsync/protocol';
import type { ContentStore } from '../storage/ContentStore.js';
import type { MetadataStore } from './MetadataStore.js';
import type { ChangeRecord, Folder } from './model.js';
import { Mutex } from './Mutex.js';
import { PushApplier } from './applyPush.js';
import type { DeleteHoldRule } from './DeleteHold.js';

export interface SyncServiceEvents {
  /** A folder's sequence advanced: devices should list the changes. */
  changed: [folderId: number, seq: number];
}

/**
 * The folder index as devices see it: changes feed, manifests, pushes. Pushes
 * to one folder are serialized; chunks are made durable before the
 * transaction that makes them visible, and a push naming a chunk the store
 * lacks is refused whole.
 */
export class SyncService extends EventEmitter<SyncServiceEvents> {
  private readonly locks = new Map<number, Mutex>();

  constructor(
    private readonly meta: MetadataStore,
    private readonly content: ContentStore,
    private readonly clock: () => number = Date.now,
    /** The deleteHold setting, read for each push that deletes; holding off by default. */
    private readonly holdRule: () => Promise<DeleteHoldRule> = async () => ({ files: 0, percent: 0, minFolderFiles: 0 }),
  ) {
    super();
  }

  private lock(folderId: number): Mutex {
    let m = this.locks.get(folderId);
    if (!m) this.locks.set(folderId, (m = new Mutex()));
    return m;
  }

  /**
   * One page of the changes feed after `since`. The folder's sequence is read
   * before the entries: a change committed in between is then either in the
   * page or above the answered sequence, never skipped.
   */
  async changes(folder: Folder, since: number): Promise<{ entries: Entry[]; seq: number; more: boolean }> {
    const current = (await this.meta.folderById(folder.id))?.seq ?? folder.seq;
    const rows = await this.meta.changesSince(folder.id, since, CHANGES_PAGE_SIZE + 1, INLINE_MANIFEST_CHUNKS);
    const more = rows.length > CHANGES_PAGE_SIZE;
    const page = more ? rows.slice(0, CHANGES_PAGE_SIZE) : rows;
    return { entries: page.map(toEntry), seq: more ? page[page.length - 1].seq : Math.max(current, page.at(-1)?.seq ?? 0), more };
  }

  /** A version's manifest, as a delta against `base` when that helps. */
  async manifest(folder: Folder, versionId: number, baseId: number): Promise<ManifestRef> {
    const v = await this.meta.version(versionId);
    if (!v || v.folderId !== folder.id) throw new KeepsyncError('VERSION_UNKNOWN', `version ${versionId} is not in this folder`);
    if (baseId > 0) {
      const base = await this.meta.version(baseId);
      if (base && base.folderId === folder.id) {
        const delta = diffManifest(base.id, base.manifest, v.manifest);
        if (delta.middle.byteLength < v.manifest.byteLength) return { delta };
      }
    }
    return { full: v.manifest };
  }

  /**
   * Applies a device's ops. Every chunk the puts name must already be stored:
   * otherwise nothing is applied and CHUNK_MISSING tells the device to upload.
   * A burst of deletes is held instead (see PushApplier.holdDeletes).
   */
  async push(folder: Folder, device: { id: number; name: string }, ops: Op[], stillAllowed: () => boolean): Promise<OpResult[]> {
    const rule = ops.some((o) => o.op === 'delete') ? await this.holdRule() : undefined;
    return this.mutate(folder, device, async (applier) => {
      await applier.prefetch(ops);
      const held = rule ? await applier.holdDeletes(ops, rule) : new Set<Op>();
      const out: OpResult[] = [];
      for (const op of ops) out.push(held.has(op) ? applier.heldResult() : await applier.apply(op));
      return out;
    }, async () => {
      if (!stillAllowed()) throw new KeepsyncError('TOKEN_REVOKED', 'this device was removed');
      // Durable first (chunks still syncing show as missing until then), then checked.
      await this.content.flush();
      await this.checkChunks(ops, (id) => this.meta.version(id));
      crashPoint('server:before-commit');
    });
  }

  /**
   * Runs `fn` with a PushApplier in one transaction, serialized with every
   * other change to the folder; devices hear of the new sequence afterwards.
   * `before` runs under the folder lock, before the transaction starts.
   */
  async mutate<T>(folder: Folder, device: { id: number | null; name: string }, fn: (applier: PushApplier) => Promise<T>, before?: () => Promise<void>): Promise<T> {
    return this.lock(folder.id).run(async () => {
      await before?.();
      const result = await this.meta.transaction(async (tx) => {
        const locked = await tx.lockFolder(folder.id);
        const applier = new PushApplier(tx, { folder: locked, deviceId: device.id, deviceName: device.name, now: this.clock() });
        const out = await fn(applier);
        await applier.finish();
        return { out, seq: applier.lastSeq, changed: applier.lastSeq !== locked.seq };
      });
      crashPoint('server:after-commit');
      if (result.changed) this.emit('changed', folder.id, result.seq);
      crashPoint('server:after-broadcast');
      return result.out;
    });
  }

  private async checkChunks(ops: Op[], version: (id: number) => Promise<{ manifest: Uint8Array } | undefined>): Promise<void> {
    const hashes = new Set<string>();
    for (const op of ops) {
      if (op.op !== 'put') continue;
      const m = 'full' in op.manifest ? op.manifest.full : op.manifest.delta.middle;
      for (const c of unpackManifest(m)) hashes.add(c.hash);
      if ('delta' in op.manifest && !(await version(op.manifest.delta.base))) {
        throw new KeepsyncError('VERSION_UNKNOWN', 'manifest delta refers to an unknown version');
      }
    }
    const missing = await this.content.missing([...hashes]);
    if (missing.length > 0) {
      throw new KeepsyncError('CHUNK_MISSING', `${missing.length} chunks are not on the server; upload them first`);
    }
  }

  /** Versions of a file, newest first, with device names. */
  async versions(folder: Folder, path: RelPath) {
    const [entry, versions] = await Promise.all([this.meta.entry(folder.id, path), this.meta.versionsOf(folder.id, path)]);
    const names = new Map<number, string>();
    for (const v of versions) {
      if (v.deviceId !== null && !names.has(v.deviceId)) names.set(v.deviceId, (await this.meta.deviceName(v.deviceId)) ?? 'removed device');
    }
    const currentId = entry && !entry.deleted ? entry.versionId : 0;
    return versions.map((v) => ({
      id: v.id,
      size: v.size,
      hash: v.hash,
      modifiedAt: new Date(v.mtime).toISOString(),
      createdAt: new Date(v.createdAt).toISOString(),
      device: v.deviceId === null ? 'server' : (names.get(v.deviceId) ?? 'removed device'),
      current: v.id === currentId,
    }));
  }
}

function toEntry(r: ChangeRecord): Entry {
  const e: Entry = {
    path: r.path, kind: r.kind, deleted: r.deleted, seq: r.seq, version: r.deleted ? 0 : r.versionId,
    size: r.size, hash: r.hash, mtime: r.mtime, exec: r.exec,
  };
  if (r.movedFrom && !r.deleted) e.from = r.movedFrom;
  if (r.manifest && !r.deleted) e.manifest = r.manifest;
  return e;
}
