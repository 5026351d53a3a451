import { KeepsyncError, type RelPath, type TrashInfo } from '@keepsync/protocol';
import type { FolderOps } from '../sessions/FolderOps.js';
import type { MetadataStore } from './MetadataStore.js';
import type { Folder } from './model.js';
import type { SyncService } from './SyncService.js';

/** Who asks for a restore: a device, or the admin (id null). */
export interface Actor {
  id: number | null;
  name: string;
}

/**
 * Versions and trash, for devices and the admin API: list, restore as the
 * current content (on every device, through the changes feed), purge.
 */
export class Restorer implements FolderOps {
  constructor(private readonly meta: MetadataStore, private readonly sync: SyncService) {}

  async restoreVersion(folder: Folder, path: RelPath, versionId: number, actor: Actor): Promise<{ message: string; path: string }> {
    let id = versionId;
    if (id === 0) {
      const versions = await this.sync.versions(folder, path);
      const previous = versions.find((v) => !v.current);
      if (!previous) throw new KeepsyncError('NOT_FOUND', `${path} has no earlier version to restore`);
      id = previous.id;
    } else {
      const v = await this.meta.version(id);
      if (!v || v.folderId !== folder.id || v.path !== path) throw new KeepsyncError('NOT_FOUND', `${path} has no version ${id}; see "keepsync versions ${path}"`);
    }
    const r = await this.sync.mutate(folder, actor, (a) => a.restoreVersion(path, id));
    return { message: `restored version ${id} of ${path}${r.path !== path ? ` as ${r.path}` : ''}`, path: r.path };
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

  async restoreTrashItem(folder: Folder, itemId: number, actor: Actor): Promise<{ message: string; path: string }> {
    const item = await this.meta.trashItem(itemId);
    if (!item || item.folderId !== folder.id || item.state !== 'trashed') throw new KeepsyncError('NOT_FOUND', `trash item ${itemId} is not in the trash of ${folder.name}`);
    const entries = await this.meta.trashEntries(item.id);
    const root = await this.sync.mutate(folder, actor, (a) => a.restoreTrash(item, entries));
    return { message: `restored ${root}${root !== item.path ? ` (its place ${item.path} was taken)` : ''}`, path: root };
  }

  async restoreTrashPath(folder: Folder, path: RelPath, actor: Actor): Promise<{ message: string; path: string }> {
    const item = (await this.meta.trashItems(folder.id)).find((i) => i.path === path);
    if (!item) throw new KeepsyncError('NOT_FOUND', `${path} is not in the trash; see "keepsync trash"`);
    return this.restoreTrashItem(folder, item.id, actor);
  }
}
