import type { RelPath, TrashInfo, VersionInfo } from '@keepsync/protocol';
import type { Folder } from '../sync/model.js';
import type { SessionDevice } from './DeviceSession.js';

/** Version and trash operations a device may ask for (see sync/Restorer.ts). */
export interface FolderOps {
  versions(folder: Folder, path: RelPath): Promise<VersionInfo[]>;
  restoreVersion(folder: Folder, path: RelPath, versionId: number, device: SessionDevice): Promise<{ message: string; path: string }>;
  restoreAt(folder: Folder, path: RelPath | undefined, at: number, device: SessionDevice): Promise<{ message: string; path?: string }>;
  trash(folder: Folder): Promise<TrashInfo[]>;
  restoreTrashPath(folder: Folder, path: RelPath, device: SessionDevice): Promise<{ message: string; path: string }>;
}
