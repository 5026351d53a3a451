import { KeepsyncError, isWithin, type RelPath, type TrashInfo, type VersionInfo } from '@keepsync/protocol';
import type { FolderOps } from '../sessions/FolderOps.js';
import type { MetadataStore } from './MetadataStore.js';
import type { Folder, TrashEntryRecord, TrashItemRecord } from './model.js';
import type { SyncService } from './SyncService.js';
import type { RewindCounts } from './applyPush.js';

/** Who asks for a restore: a device, or the admin (id null). */
export interface Actor {
  id: number | null;
  name: string;
}

/** The admin acting through the API. */
export const ADMIN: Actor = { id: null, name: 'admin' };

/** What a restore did, for the user. */
export interface RestoreResult {
  message: string;
  /** Where the restored file or folder is now (beside its place when that was taken). */
  path: RelPath;
}

/**
 * Versions and trash, for devices and the admin API: list, restore as the
 * current content (on every device, through the changes feed), purge. Every
 * change runs under the folder's lock, and the trash item is read again
 * under it, so a restore and a purge of the same item cannot both happen.
 */
export class Restorer implements FolderOps {
  constructor(private readonly meta: MetadataStore, private readonly sync: SyncService, private readonly clock: () => number = Date.now) {}

  /** Versions of a file, newest first; NOT_FOUND when the folder never had that file. */
  async versions(folder: Folder, path: RelPath): Promise<VersionInfo[]> {
    const versions = await this.sync.versions(folder, path);
    if (versions.length === 0) throw new KeepsyncError('NOT_FOUND', `${path} has no versions on the server; check the path (it is relative to the synced folder)`);
    return versions;
  }

  /** Makes version `versionId` of `path` current again; 0 means the one before the current content. */
  async restoreVersion(folder: Folder, path: RelPath, versionId: number, actor: Actor): Promise<RestoreResult> {
    let id = versionId;
    const r = await this.sync.mutate(folder, actor, (a) => a.restoreVersion(path, id), async () => {
      if (id === 0) {
        const versions = await this.sync.versions(folder, path);
        const previous = versions.find((v) => !v.current);
        if (!previous) throw new KeepsyncError('NOT_FOUND', `${path} has no earlier version to restore; see "keepsync versions ${path}"`);
        id = previous.id;
        return;
      }
      const v = await this.meta.version(id);
      if (!v || v.folderId !== folder.id || v.path !== path) throw new KeepsyncError('NOT_FOUND', `${path} has no version ${id}; see "keepsync versions ${path}"`);
    });
    if (r.version === id) return { message: `version ${id} of ${path} is already the current one`, path: r.path };
    return { message: `restored version ${id} of ${path}${r.path !== path ? ` as ${r.path}, beside the folder ${path} that is there now` : ''}`, path: r.path };
  }

  /**
   * Restores `scope` (a folder or file path; the whole folder when
   * undefined) to how it was at `at`, on every device: see PushApplier.restoreAt.
   */
  async restoreAt(folder: Folder, scope: RelPath | undefined, at: number, actor: Actor): Promise<{ message: string; path?: RelPath } & RewindCounts> {
    if (!Number.isFinite(at) || at <= 0) throw new KeepsyncError('USAGE', 'the time to restore to is not a valid date; give one like 2026-12-01 14:00');
    if (at > this.clock()) throw new KeepsyncError('USAGE', `${new Date(at).toISOString()} is in the future; give a time in the past`);
    if (scope) {
      const e = await this.meta.entry(folder.id, scope);
      if (!e) throw new KeepsyncError('NOT_FOUND', `${scope} was never in ${folder.name}; check the path (it is relative to the synced folder)`);
    }
    const counts = await this.sync.mutate(folder, actor, (a) => a.restoreAt(scope, at));
    const where = scope ?? 'the whole folder';
    const parts = [`${counts.restored} ${counts.restored === 1 ? 'file' : 'files'} brought back`];
    if (counts.trashed > 0) parts.push(`${counts.trashed} newer ${counts.trashed === 1 ? 'file' : 'files'} moved to the trash`);
    if (counts.unchanged > 0) parts.push(`${counts.unchanged} already as then`);
    return { message: `restored ${where} to ${new Date(at).toISOString()}: ${parts.join(', ')}`, ...(scope ? { path: scope } : {}), ...counts };
  }

  async trash(folder: Folder): Promise<TrashInfo[]> {
    const items = await this.meta.trashItems(folder.id);
    const names = new Map<number, string>();
    for (const i of items) {
      if (i.deviceId !== null && !names.has(i.deviceId)) names.set(i.deviceId, (await this.meta.deviceName(i.deviceId)) ?? 'removed device');
    }
    return items.map((i) => ({
      id: i.id, path: i.path, kind: i.kind, size: i.size, deletedAt: new Date(i.deletedAt).toISOString(),
      deletedBy: i.deviceId === null ? 'admin' : (names.get(i.deviceId) ?? 'removed device'),
    }));
  }

  /** Brings a trash item back whole; NOT_FOUND when it is not in this folder's trash. */
  async restoreTrashItem(folder: Folder, itemId: number, actor: Actor): Promise<RestoreResult> {
    let item: TrashItemRecord | undefined;
    let entries: TrashEntryRecord[] = [];
    const root = await this.sync.mutate(folder, actor, (a) => a.restoreTrash(item!, entries), async () => {
      item = await this.trashed(folder, itemId);
      entries = await this.meta.trashEntries(item.id);
    });
    const what = item!.kind === 'dir' ? `the folder ${item!.path}` : item!.path;
    if (root === item!.path) return { message: `restored ${what}`, path: root };
    return { message: `restored ${what} as ${root}, beside the ${item!.path} that is there now`, path: root };
  }

  /** Restores the newest trash item deleted at `path`. */
  async restoreTrashPath(folder: Folder, path: RelPath, actor: Actor): Promise<RestoreResult> {
    const items = await this.meta.trashItems(folder.id);
    const item = items.find((i) => i.path === path);
    if (!item) {
      const holder = items.find((i) => i.kind === 'dir' && isWithin(path, i.path));
      if (holder) throw new KeepsyncError('NOT_FOUND', `${path} was deleted with the folder ${holder.path}; restore it with "keepsync trash restore ${holder.path}"`);
      throw new KeepsyncError('NOT_FOUND', `${path} is not in the trash; see "keepsync trash"`);
    }
    return this.restoreTrashItem(folder, item.id, actor);
  }

  /** Purges a trash item for good; NOT_FOUND when it is not in this folder's trash. */
  async purgeTrashItem(folder: Folder, itemId: number, actor: Actor): Promise<void> {
    let item: TrashItemRecord | undefined;
    await this.sync.mutate(folder, actor, (a) => a.purgeTrash(item!), async () => {
      item = await this.trashed(folder, itemId);
    });
  }

  private async trashed(folder: Folder, itemId: number): Promise<TrashItemRecord> {
    const item = await this.meta.trashItem(itemId);
    if (!item || item.folderId !== folder.id || item.state !== 'trashed') {
      throw new KeepsyncError('NOT_FOUND', `trash item ${itemId} is not in the trash of ${folder.name}; it may have been restored or purged`);
    }
    return item;
  }
}
