import crypto from 'node:crypto';
import type { RelPath } from '@keepsync/protocol';
import type {
  ChangeRecord, ContentStore, EntryRecord, Folder, MetadataStore, MetadataTx, NewVersion, TrashEntryRecord, TrashItemRecord, VersionRecord,
} from '@keepsync/server';

interface Data {
  folders: Folder[];
  entries: Map<string, EntryRecord>;
  versions: VersionRecord[];
  trash: TrashItemRecord[];
  trashEntries: TrashEntryRecord[];
  restoredAt: Map<number, number | null>;
}

const key = (folderId: number, path: string) => `${folderId}\u0000${path}`;
const under = (p: string, dir: string) => p.startsWith(`${dir}/`);
const byPath = (a: { path: string }, b: { path: string }) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

function clone(d: Data): Data {
  return {
    folders: d.folders.map((f) => ({ ...f })),
    entries: new Map([...d.entries].map(([k, e]) => [k, { ...e }])),
    versions: [...d.versions],
    trash: d.trash.map((t) => ({ ...t })),
    trashEntries: [...d.trashEntries],
    restoredAt: new Map(d.restoredAt),
  };
}

/**
 * The MetadataStore contract in memory, for the deterministic simulation: a
 * transaction works on a copy that replaces the data only when it succeeds,
 * and every promise resolves without touching timers or I/O.
 */
export class MemoryMetadataStore implements MetadataStore {
  data: Data = { folders: [], entries: new Map(), versions: [], trash: [], trashEntries: [], restoredAt: new Map() };

  async transaction<T>(fn: (tx: MetadataTx) => Promise<T>): Promise<T> {
    const work = clone(this.data);
    const out = await fn(new MemoryTx(work));
    this.data = work;
    return out;
  }

  async holds() {
    return [];
  }

  async hold(): Promise<undefined> {
    return undefined;
  }

  async folderByName(name: string) {
    const f = this.data.folders.find((x) => x.name === name);
    return f && { ...f };
  }

  async folderById(id: number) {
    const f = this.data.folders.find((x) => x.id === id);
    return f && { ...f };
  }

  async folders() {
    return this.data.folders.map((f) => ({ ...f }));
  }

  async ensureFolder(name: string, epoch: string, _now?: number): Promise<Folder> {
    if (!this.data.folders.some((f) => f.name === name)) this.data.folders.push({ id: this.data.folders.length + 1, name, epoch, seq: 0 });
    return (await this.folderByName(name))!;
  }

  async changesSince(folderId: number, since: number, limit: number): Promise<ChangeRecord[]> {
    return [...this.data.entries.values()]
      .filter((e) => e.folderId === folderId && e.seq > since)
      .sort((a, b) => a.seq - b.seq)
      .slice(0, limit)
      .map((e) => ({ ...e, manifest: this.data.versions.find((v) => v.id === e.versionId)?.manifest ?? null }));
  }

  async version(id: number) {
    return this.data.versions.find((v) => v.id === id);
  }

  async versionsOf(folderId: number, path: RelPath) {
    return this.data.versions.filter((v) => v.folderId === folderId && v.path === path).reverse();
  }

  async entry(folderId: number, path: RelPath) {
    return this.data.entries.get(key(folderId, path));
  }

  async liveUnder(folderId: number, dir: RelPath | undefined) {
    return [...this.data.entries.values()].filter((e) => e.folderId === folderId && !e.deleted && (dir === undefined || under(e.path, dir))).sort(byPath);
  }

  async deviceName(id: number) {
    return `dev${id}`;
  }

  async trashItems(folderId: number) {
    return this.data.trash.filter((t) => t.folderId === folderId && t.state === 'trashed').reverse();
  }

  async trashItem(id: number) {
    return this.data.trash.find((t) => t.id === id);
  }

  async trashEntries(itemId: number) {
    return this.data.trashEntries.filter((t) => t.trashItemId === itemId).sort(byPath);
  }

  async activity(): Promise<void> {}

  async liveChildren(folderId: number, dir: RelPath | undefined) {
    return (await this.liveUnder(folderId, dir)).filter((e) => !e.path.slice(dir ? dir.length + 1 : 0).includes('/'));
  }
}

class MemoryTx implements MetadataTx {
  constructor(private readonly d: Data) {}

  async lockFolder(folderId: number) {
    const f = this.d.folders.find((x) => x.id === folderId);
    if (!f) throw new Error(`bug: folder ${folderId} vanished`);
    return { ...f };
  }

  async setFolderSeq(folderId: number, seq: number) {
    this.d.folders.find((x) => x.id === folderId)!.seq = seq;
  }

  async entries(folderId: number, paths: readonly RelPath[]) {
    const out = new Map<RelPath, EntryRecord>();
    for (const p of paths) {
      const e = this.d.entries.get(key(folderId, p));
      if (e) out.set(p, { ...e });
    }
    return out;
  }

  async entriesUnder(folderId: number, dir: RelPath) {
    return [...this.d.entries.values()].filter((e) => e.folderId === folderId && under(e.path, dir)).sort(byPath).map((e) => ({ ...e }));
  }

  async movedFrom(folderId: number, path: RelPath) {
    return [...this.d.entries.values()].filter((e) => e.folderId === folderId && e.movedFrom === path).map((e) => ({ ...e }));
  }

  async putEntries(rows: readonly EntryRecord[]) {
    for (const r of rows) this.d.entries.set(key(r.folderId, r.path), { ...r });
  }

  async insertVersion(v: NewVersion) {
    const id = this.d.versions.length + 1;
    this.d.versions.push({ ...v, id });
    return id;
  }

  async version(id: number) {
    return this.d.versions.find((v) => v.id === id);
  }

  async moveVersions(folderId: number, from: RelPath, to: RelPath, subtree: boolean) {
    this.d.versions = this.d.versions.map((v) => {
      if (v.folderId !== folderId) return v;
      if (v.path === from) return { ...v, path: to };
      if (subtree && under(v.path, from)) return { ...v, path: (to + v.path.slice(from.length)) as RelPath };
      return v;
    });
  }

  async insertTrashItem(item: Omit<TrashItemRecord, 'id'>, entries: Omit<TrashEntryRecord, 'trashItemId'>[]) {
    const id = this.d.trash.length + 1;
    this.d.trash.push({ ...item, id });
    for (const e of entries) this.d.trashEntries.push({ ...e, trashItemId: id });
    return id;
  }

  async setTrashState(id: number, state: TrashItemRecord['state'], at: number) {
    const item = this.d.trash.find((t) => t.id === id)!;
    item.state = state;
    this.d.restoredAt.set(id, state === 'restored' ? at : null);
  }

  async trashEntries(itemId: number) {
    return this.d.trashEntries.filter((e) => e.trashItemId === itemId).map((e) => ({ ...e }));
  }

  // Holding deletes is off in the simulation (SyncService's default rule): nothing is ever held.
  async liveFileCount(folderId: number) {
    return [...this.d.entries.values()].filter((e) => e.folderId === folderId && !e.deleted && e.kind === 'file').length;
  }

  async trashedBy(folderId: number, deviceId: number, since: number) {
    return this.d.trash.filter((t) => t.folderId === folderId && t.state === 'trashed' && t.deviceId === deviceId && t.deletedAt >= since).map((t) => ({ ...t }));
  }

  async openHold(): Promise<undefined> {
    return undefined;
  }

  async lastHoldDecision() {
    return 0;
  }

  async insertHold(): Promise<number> {
    throw new Error('bug: the simulation holds no deletes');
  }

  async addHeldDeletes(): Promise<void> {
    throw new Error('bug: the simulation holds no deletes');
  }

  async heldDeletes() {
    return [];
  }

  async hold(): Promise<undefined> {
    return undefined;
  }

  async setHoldState(): Promise<void> {
    throw new Error('bug: the simulation holds no deletes');
  }

  async history(folderId: number, scope: RelPath | undefined) {
    const inScope = (p: string) => scope === undefined || p === scope || under(p, scope);
    const versions = this.d.versions.filter((v) => v.folderId === folderId && inScope(v.path)).map(({ manifest: _, ...v }) => v);
    const deletions = [];
    for (const e of this.d.trashEntries) {
      const item = this.d.trash.find((t) => t.id === e.trashItemId)!;
      const v = this.d.versions.find((x) => x.id === e.versionId);
      if (e.kind !== 'file' || item.folderId !== folderId || !v || !inScope(v.path)) continue;
      deletions.push({ trashItemId: item.id, path: v.path, versionId: v.id, deletedAt: item.deletedAt, restoredAt: this.d.restoredAt.get(item.id) ?? null, state: item.state });
    }
    return { versions, deletions };
  }

  async activity(): Promise<void> {}

  async trashedUnder(folderId: number, dir: RelPath, deviceId: number | null, since: number) {
    return this.d.trash.filter((t) => t.folderId === folderId && t.state === 'trashed' && under(t.path, dir) && t.deviceId === deviceId && t.deletedAt >= since).map((t) => ({ ...t }));
  }

  async mergeTrashItems(into: number, from: readonly TrashItemRecord[]) {
    const target = this.d.trash.find((t) => t.id === into)!;
    for (const f of from) {
      target.size += f.size;
      target.files += f.files;
      for (const e of this.d.trashEntries) if (e.trashItemId === f.id) e.trashItemId = into;
    }
    const gone = new Set(from.map((f) => f.id));
    this.d.trash = this.d.trash.filter((t) => !gone.has(t.id));
  }

  async purgeTrashItem(id: number) {
    const item = this.d.trash.find((t) => t.id === id);
    if (!item || item.state !== 'trashed') return false;
    item.state = 'purged';
    this.d.trashEntries = this.d.trashEntries.filter((e) => e.trashItemId !== id);
    return true;
  }
}

/** Chunks in memory, verified by hash like the disk store. */
export class MemoryContentStore implements ContentStore {
  readonly chunks = new Map<string, Uint8Array>();

  async missing(hashes: readonly string[]) {
    return hashes.filter((h) => !this.chunks.has(h));
  }

  async put(hash: string, data: Uint8Array) {
    if (crypto.createHash('sha256').update(data).digest('hex') !== hash) throw new Error('chunk content does not match its hash');
    this.chunks.set(hash, data);
  }

  async flush() {}

  async get(hash: string) {
    return this.chunks.get(hash);
  }

  async delete(hash: string) {
    this.chunks.delete(hash);
  }

  async deleteUnused(hash: string) {
    const size = this.chunks.get(hash)?.byteLength ?? 0;
    this.chunks.delete(hash);
    return size;
  }

  async *list() {
    for (const [hash, data] of this.chunks) yield { hash, size: data.byteLength, usedAt: 0 };
  }

  async usage() {
    return { chunks: this.chunks.size, bytes: [...this.chunks.values()].reduce((n, d) => n + d.byteLength, 0) };
  }
}
