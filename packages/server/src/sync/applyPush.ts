import {
  KeepsyncError, ancestorsOf, applyManifestDelta, conflictPath, isWithin, manifestSize, rebase, restoredPath,
  type EntryKind, type Manifest, type Op, type OpResult, type RelPath,
} from '@keepsync/protocol';
import type { MetadataTx } from './MetadataStore.js';
import { HOLD_WINDOW_MS, crossesHold, type DeleteHoldRule, type DeleteOp } from './DeleteHold.js';
import type { DeletionRecord, EntryRecord, Folder, HeldDeleteRecord, TrashEntryRecord, TrashItemRecord, VersionRecord } from './model.js';
import { filesAt } from './pointInTime.js';

/**
 * Deletes inside a folder that the same device made this long before
 * deleting the folder itself join the folder's trash item.
 */
export const DELETE_BURST_MS = 2 * 60_000;

/** What a restore to a point in time did. */
export interface RewindCounts {
  /** Files given back their content of then. */
  restored: number;
  /** Files that were not there then, now in the trash. */
  trashed: number;
  /** Files that already held their content of then. */
  unchanged: number;
}

/** Who pushes, and when (the clock decides conflict names). */
export interface PushContext {
  folder: Folder;
  /** null when the admin acts through the API. */
  deviceId: number | null;
  deviceName: string;
  now: number;
}

/**
 * Applies a device's ops in order inside one transaction. Every op is checked
 * against the server's state by its base: a put on top of a newer version
 * becomes a conflict copy, a delete of a changed file is refused (the edit
 * wins), a folder delete spares what the device had not seen. Nothing
 * already on the server is ever overwritten: a new version keeps the old.
 */
export class PushApplier {
  private seq: number;
  private readonly cache = new Map<RelPath, EntryRecord | null>();
  private readonly dirty = new Map<RelPath, EntryRecord>();

  constructor(private readonly tx: MetadataTx, private readonly ctx: PushContext) {
    this.seq = ctx.folder.seq;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** The transaction this applier writes in, for what goes with its changes. */
  get transaction(): MetadataTx {
    return this.tx;
  }

  /** The time of this change. */
  get now(): number {
    return this.ctx.now;
  }

  /** Loads the paths the ops touch (and their parents) in a few queries. */
  async prefetch(ops: readonly Op[]): Promise<void> {
    const paths = new Set<RelPath>();
    for (const op of ops) {
      for (const p of op.op === 'move' ? [op.from, op.to] : [op.path]) {
        paths.add(p);
        for (const a of ancestorsOf(p)) paths.add(a);
      }
    }
    const found = await this.tx.entries(this.ctx.folder.id, [...paths]);
    for (const p of paths) this.cache.set(p, found.get(p) ?? null);
  }

  async apply(op: Op): Promise<OpResult> {
    try {
      switch (op.op) {
        case 'put':
          return await this.put(op);
        case 'mkdir':
          return await this.mkdir(op.path);
        case 'delete':
          return op.kind === 'file' ? await this.deleteFile(op.path, op.base) : await this.deleteDir(op.path, op.seq);
        case 'move':
          return await this.move(op.from, op.to, op.kind, op.base);
      }
    } catch (err) {
      if (err instanceof KeepsyncError) return { status: 'error', code: err.code, message: err.message };
      throw err;
    }
  }

  /** Writes every changed entry and the folder's new sequence. */
  async finish(): Promise<void> {
    await this.tx.putEntries([...this.dirty.values()]);
    if (this.seq !== this.ctx.folder.seq) await this.tx.setFolderSeq(this.ctx.folder.id, this.seq);
  }

  // ---- reading and writing the working set ----

  private async get(path: RelPath): Promise<EntryRecord | undefined> {
    if (!this.cache.has(path)) {
      const found = await this.tx.entries(this.ctx.folder.id, [path]);
      this.cache.set(path, found.get(path) ?? null);
    }
    return this.cache.get(path) ?? undefined;
  }

  private async live(path: RelPath): Promise<EntryRecord | undefined> {
    const e = await this.get(path);
    return e && !e.deleted ? e : undefined;
  }

  private set(path: RelPath, fields: Partial<EntryRecord> & Pick<EntryRecord, 'kind' | 'deleted'>): EntryRecord {
    const e: EntryRecord = {
      folderId: this.ctx.folder.id,
      path,
      seq: ++this.seq,
      versionId: 0,
      size: 0,
      hash: '',
      mtime: 0,
      exec: false,
      movedFrom: null,
      deviceId: this.ctx.deviceId,
      updatedAt: this.ctx.now,
      ...fields,
    };
    this.cache.set(path, e);
    this.dirty.set(path, e);
    return e;
  }

  private tombstone(e: EntryRecord): void {
    this.set(e.path, { kind: e.kind, deleted: true });
  }

  /** Makes every ancestor a live folder; fails when a file stands in the way. */
  private async ensureParents(path: RelPath): Promise<void> {
    for (const dir of ancestorsOf(path)) {
      const e = await this.live(dir);
      if (e?.kind === 'dir') continue;
      if (e?.kind === 'file') {
        throw new KeepsyncError('CONFLICT', `cannot create ${path}: ${dir} is a file on the server`);
      }
      this.set(dir, { kind: 'dir', deleted: false });
    }
  }

  private async freeConflictPath(path: RelPath): Promise<RelPath> {
    for (let attempt = 0; ; attempt++) {
      const candidate = conflictPath(path, this.ctx.deviceName, new Date(this.ctx.now), attempt);
      if (!(await this.live(candidate))) return candidate;
    }
  }

  // ---- ops ----

  private async resolveManifest(op: Extract<Op, { op: 'put' }>): Promise<Manifest> {
    let manifest: Manifest;
    if ('full' in op.manifest) {
      manifest = op.manifest.full;
    } else {
      const base = await this.tx.version(op.manifest.delta.base);
      if (!base || base.folderId !== this.ctx.folder.id) {
        throw new KeepsyncError('VERSION_UNKNOWN', 'manifest delta refers to an unknown version');
      }
      manifest = applyManifestDelta(base.manifest, op.manifest.delta);
    }
    if (manifestSize(manifest) !== op.size) throw new KeepsyncError('FRAME_INVALID', `manifest of ${op.path} does not add up to its size`);
    return manifest;
  }

  private async put(op: Extract<Op, { op: 'put' }>): Promise<OpResult> {
    const manifest = await this.resolveManifest(op);
    // An edit of a file someone renamed meanwhile goes where the file is now,
    // a new file in a folder someone renamed into that folder.
    const path = (await this.movedTo(op.path, op.base)) ?? op.path;
    const moved = path !== op.path ? { path } : {};
    await this.ensureParents(path);
    const cur = await this.live(path);
    const content = { size: op.size, hash: op.hash, mtime: op.mtime, exec: op.exec };
    if (cur?.kind === 'file' && cur.hash === op.hash && cur.exec === op.exec) {
      // The same bytes: nothing to keep, no new version, no conflict (A7).
      // Touched on a device that knew this version: the new mtime is the
      // file's, and other devices take it from the feed.
      if (cur.versionId === op.base && cur.mtime !== op.mtime) {
        const e = this.set(path, { kind: 'file', deleted: false, versionId: cur.versionId, size: cur.size, hash: cur.hash, mtime: op.mtime, exec: cur.exec });
        return { status: 'ok', version: cur.versionId, seq: e.seq, ...moved };
      }
      // Made on a device that did not know of it: the device takes the kept
      // version's mtime, or it would keep its own for good.
      return { status: 'ok', version: cur.versionId, seq: cur.seq, mtime: cur.mtime, ...moved };
    }
    let target = path;
    const conflict = cur !== undefined && !(cur.kind === 'file' && cur.versionId === op.base);
    if (conflict) target = await this.freeConflictPath(path);
    const version = await this.tx.insertVersion({ folderId: this.ctx.folder.id, path: target, manifest, deviceId: this.ctx.deviceId, createdAt: this.ctx.now, ...content });
    const e = this.set(target, { kind: 'file', deleted: false, versionId: version, ...content });
    if (conflict) {
      await this.tx.activity('conflict', `conflict on ${path}: ${this.ctx.deviceName}'s copy kept as ${target}`, this.ctx.deviceId, this.ctx.folder.id, this.ctx.now);
      return { status: 'conflict', path: target, version, seq: e.seq };
    }
    return { status: 'ok', version, seq: e.seq, ...moved };
  }

  /**
   * Where a put meant for `path` goes when the file or its folder was moved
   * since the device looked: an edit (against version `base`) follows the
   * file, which came from `path` by a move and still holds that version; a
   * new file follows the nearest folder above it that was moved away.
   * Undefined when `path` is live, or its file or folder was deleted or
   * changed rather than moved (it is written at `path` as sent).
   */
  private async movedTo(path: RelPath, base: number): Promise<RelPath | undefined> {
    const old = await this.get(path);
    if (old && !old.deleted) return undefined;
    if (base !== 0) {
      if (!old) return undefined;
      const to = (await this.movesFrom(path)).find((e) => e.kind === 'file' && e.versionId === base);
      return to?.path;
    }
    for (const dir of ancestorsOf(path).reverse()) {
      const e = await this.get(dir);
      if (!e) continue;
      if (!e.deleted) return undefined;
      const to = (await this.movesFrom(dir)).find((m) => m.kind === 'dir');
      return to ? rebase(path, dir, to.path) : undefined;
    }
    return undefined;
  }

  /** The live entries whose last change was a move from `path`, this push's own writes included. */
  private async movesFrom(path: RelPath): Promise<EntryRecord[]> {
    const found = [...this.dirty.values()].filter((e) => e.movedFrom === path);
    for (const e of await this.tx.movedFrom(this.ctx.folder.id, path)) found.push(this.cached(e));
    return found.filter((e) => !e.deleted && e.movedFrom === path);
  }

  private async mkdir(path: RelPath): Promise<OpResult> {
    await this.ensureParents(path);
    const cur = await this.live(path);
    if (cur?.kind === 'dir') return { status: 'ok', version: 0, seq: cur.seq };
    if (cur?.kind === 'file') {
      const target = await this.freeConflictPath(path);
      const e = this.set(target, { kind: 'dir', deleted: false });
      return { status: 'conflict', path: target, version: 0, seq: e.seq };
    }
    const e = this.set(path, { kind: 'dir', deleted: false });
    return { status: 'ok', version: 0, seq: e.seq };
  }

  private async deleteFile(path: RelPath, base: number): Promise<OpResult> {
    const cur = await this.live(path);
    if (!cur) return { status: 'ok', version: 0, seq: this.seq };
    if (cur.kind !== 'file') return { status: 'stale', reason: `${path} is a folder on the server` };
    if (cur.versionId !== base) return { status: 'stale', reason: `${path} changed on the server; the edit wins over the delete` };
    await this.trashFile(cur);
    await this.tx.activity('delete', `${this.ctx.deviceName} deleted ${path}; it is in the trash`, this.ctx.deviceId, this.ctx.folder.id, this.ctx.now);
    return { status: 'ok', version: 0, seq: this.seq };
  }

  /** `ownSince`: this device's own changes after that sequence survive too (a held delete applied later). */
  private async deleteDir(path: RelPath, knownSeq: number, ownSince = Number.MAX_SAFE_INTEGER): Promise<OpResult> {
    const cur = await this.live(path);
    if (!cur) return { status: 'ok', version: 0, seq: this.seq };
    if (cur.kind !== 'dir') return { status: 'stale', reason: `${path} is a file on the server` };
    const under = await this.liveUnder(path);
    // What another device changed after what this device has seen survives (edit wins).
    const spared = under.filter((e) => e.seq > knownSeq && (e.deviceId !== this.ctx.deviceId || e.seq > ownSince));
    const keep = new Set<string>();
    for (const e of spared) {
      keep.add(e.path);
      for (const a of ancestorsOf(e.path)) keep.add(a);
    }
    const gone = under.filter((e) => !keep.has(e.path));
    for (const e of gone) this.tombstone(e);
    if (!keep.has(path)) this.tombstone(cur);
    // A folder kept for what survives in it is written again: the deleting device
    // took it for gone and hears of it only from a change newer than what it saw.
    for (const e of [cur, ...under]) if (e.kind === 'dir' && keep.has(e.path) && e.seq <= knownSeq) this.set(e.path, { kind: 'dir', deleted: false });
    const files = gone.filter((e) => e.kind === 'file');
    const itemId = await this.tx.insertTrashItem(
      {
        folderId: this.ctx.folder.id, path, kind: 'dir', size: files.reduce((n, e) => n + e.size, 0), files: files.length,
        deletedAt: this.ctx.now, deviceId: this.ctx.deviceId, state: 'trashed',
      },
      [
        ...(keep.has(path) ? [] : [{ path, kind: 'dir' as EntryKind, versionId: 0 }]),
        ...gone.map((e) => ({ path: e.path, kind: e.kind, versionId: e.versionId })),
      ],
    );
    // What this device deleted inside the folder just before (a watcher reports
    // files before their folder) belongs to the folder's one trash item.
    const earlier = await this.tx.trashedUnder(this.ctx.folder.id, path, this.ctx.deviceId, this.ctx.now - DELETE_BURST_MS);
    await this.tx.mergeTrashItems(itemId, earlier);
    const count = files.length + earlier.reduce((n, i) => n + i.files, 0);
    await this.tx.activity('delete', `${this.ctx.deviceName} deleted the folder ${path} (${count} ${count === 1 ? 'file' : 'files'}); it is in the trash`, this.ctx.deviceId, this.ctx.folder.id, this.ctx.now);
    return { status: 'ok', version: 0, seq: this.seq };
  }

  /** Live entries strictly under `dir`, this push's own writes included, parents first. */
  private async liveUnder(dir: RelPath): Promise<EntryRecord[]> {
    const byPath = new Map<RelPath, EntryRecord>();
    for (const e of await this.tx.entriesUnder(this.ctx.folder.id, dir)) byPath.set(e.path, this.cached(e));
    for (const [p, e] of this.dirty) if (p !== dir && isWithin(p, dir)) byPath.set(p, e);
    return [...byPath.values()].filter((e) => !e.deleted).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** Prefers this push's own writes over what the database answered. */
  private cached(e: EntryRecord): EntryRecord {
    const c = this.cache.get(e.path);
    if (c === undefined) {
      this.cache.set(e.path, e);
      return e;
    }
    return c ?? e;
  }

  private async move(from: RelPath, to: RelPath, kind: EntryKind, base: number): Promise<OpResult> {
    if (isWithin(to, from)) throw new KeepsyncError('PATH_INVALID', `cannot move ${from} into itself`);
    const src = await this.live(from);
    if (!src || src.kind !== kind) return { status: 'stale', reason: `${from} is no longer on the server` };
    // A file edited on another device meanwhile moves with its edit: the
    // answer's version tells the device which one went.
    if (await this.live(to)) return { status: 'stale', reason: `${to} is taken on the server` };
    await this.ensureParents(to);
    const moved = [src];
    if (kind === 'dir') {
      moved.push(...(await this.liveUnder(from)));
    }
    let first = 0;
    for (const e of moved) {
      const next = this.set(rebase(e.path, from, to), {
        kind: e.kind, deleted: false, versionId: e.versionId, size: e.size, hash: e.hash, mtime: e.mtime, exec: e.exec, movedFrom: e.path,
      });
      first ||= next.seq;
    }
    for (const e of moved) this.tombstone(e);
    await this.tx.moveVersions(this.ctx.folder.id, from, to, kind === 'dir');
    return { status: 'ok', version: kind === 'file' ? src.versionId : 0, seq: this.seq };
  }

  // ---- held deletes (SAFETY.md E2) ----

  /**
   * Decides, before any op of a push is applied, which of its deletes are
   * held: all of them while the device has a hold open in this folder, or
   * when they and the deletes it made in the last HOLD_WINDOW_MS reach the
   * rule (those earlier ones join the new hold, to be undone with it). A
   * held delete changes nothing but the hold: the files stay current here
   * and on every other device, and the device is answered as if applied, so
   * it does not push them again.
   */
  async holdDeletes(ops: readonly Op[], rule: DeleteHoldRule): Promise<Set<Op>> {
    const deletes = ops.filter((o): o is DeleteOp => o.op === 'delete');
    const device = this.ctx.deviceId;
    if (deletes.length === 0 || device === null || (rule.files === 0 && rule.percent === 0)) return new Set();
    const counted: Omit<HeldDeleteRecord, 'holdId'>[] = [];
    for (const op of deletes) {
      counted.push({
        kind: op.kind, path: op.path, base: op.kind === 'file' ? op.base : 0, seq: op.kind === 'dir' ? op.seq : 0, heldSeq: this.seq, trashItemId: null, files: await this.filesDeletedBy(op),
      });
    }
    const folderId = this.ctx.folder.id;
    let holdId = (await this.tx.openHold(folderId, device))?.id;
    if (holdId === undefined) {
      const files = counted.reduce((n, c) => n + c.files, 0);
      if (files === 0) return new Set();
      // A decision ends a burst: what came before it does not count again.
      const since = Math.max(this.ctx.now - HOLD_WINDOW_MS, (await this.tx.lastHoldDecision(folderId, device)) + 1);
      const earlier = await this.tx.trashedBy(folderId, device, since);
      const earlierFiles = earlier.reduce((n, i) => n + i.files, 0);
      const folderFiles = (await this.tx.liveFileCount(folderId)) + earlierFiles;
      if (!crossesHold(rule, files + earlierFiles, folderFiles)) return new Set();
      holdId = await this.tx.insertHold({ folderId, deviceId: device, state: 'held', files: 0, heldAt: this.ctx.now, decidedAt: null });
      await this.tx.addHeldDeletes(holdId, earlier.map((i) => ({ kind: 'trash' as const, path: i.path, base: 0, seq: 0, heldSeq: this.seq, trashItemId: i.id, files: i.files })));
      const total = files + earlierFiles;
      await this.tx.activity('hold', `${this.ctx.deviceName} deleted ${total} of ${folderFiles} files at once; the deletes are held until the admin applies or undoes them`, device, folderId, this.ctx.now);
    }
    await this.tx.addHeldDeletes(holdId, counted);
    return new Set(deletes);
  }

  /** What a held delete answers: as if applied, changing nothing. */
  heldResult(): OpResult {
    return { status: 'ok', version: 0, seq: this.seq, held: true };
  }

  /** Files a delete would take away now. */
  private async filesDeletedBy(op: DeleteOp): Promise<number> {
    const cur = await this.live(op.path);
    if (!cur || cur.kind !== op.kind) return 0;
    if (cur.kind === 'file') return 1;
    return (await this.liveUnder(op.path)).filter((e) => e.kind === 'file').length;
  }

  /**
   * Applies held deletes as their device sent them: an edit made since
   * still wins, and so does whatever the deleting device itself wrote into a
   * held folder after the hold.
   */
  async applyHeld(rows: readonly HeldDeleteRecord[]): Promise<void> {
    for (const r of rows) {
      if (r.kind === 'file') await this.deleteFile(r.path, r.base);
      else if (r.kind === 'dir') await this.deleteDir(r.path, r.seq, r.heldSeq);
    }
  }

  /**
   * Gives held deletes back: each held path (with what is under it) is
   * written again to the changes feed unchanged, so the device that deleted
   * it downloads it again while the others have it already; trash items of
   * the burst come back from the trash.
   */
  async undoHeld(rows: readonly HeldDeleteRecord[], trashed: ReadonlyArray<{ item: TrashItemRecord; entries: TrashEntryRecord[] }>): Promise<void> {
    for (const r of rows) {
      if (r.kind === 'trash') continue;
      const cur = await this.live(r.path);
      if (!cur) continue;
      for (const e of [cur, ...(cur.kind === 'dir' ? await this.liveUnder(r.path) : [])]) {
        this.set(e.path, { kind: e.kind, deleted: false, versionId: e.versionId, size: e.size, hash: e.hash, mtime: e.mtime, exec: e.exec });
      }
    }
    for (const t of trashed) if (t.item.state === 'trashed') await this.restoreTrash(t.item, t.entries);
  }

  // ---- restores ----

  /**
   * Makes a version the current content of `path` again. The replaced
   * content stays in the history; a folder in the way sends the restored
   * file beside it.
   */
  async restoreVersion(path: RelPath, versionId: number): Promise<{ path: RelPath; version: number }> {
    const v = await this.tx.version(versionId);
    if (!v || v.folderId !== this.ctx.folder.id) throw new KeepsyncError('VERSION_UNKNOWN', `version ${versionId} is not a version of this folder`);
    const cur = await this.live(path);
    if (cur?.kind === 'file' && cur.versionId === v.id) return { path, version: v.id };
    const restored = await this.putVersion(path, v);
    await this.tx.activity('restore', `${this.ctx.deviceName} restored ${restored.path} to the version of ${new Date(v.createdAt).toISOString()}`, this.ctx.deviceId, this.ctx.folder.id, this.ctx.now);
    return restored;
  }

  /** Writes `v`'s content as a new current version of `path`, or beside a folder in the way. */
  private async putVersion(path: RelPath, v: VersionRecord): Promise<{ path: RelPath; version: number }> {
    const target = (await this.live(path))?.kind === 'dir' ? await this.freeRestoredPath(path, false) : path;
    await this.ensureParents(target);
    const content = { size: v.size, hash: v.hash, mtime: v.mtime, exec: v.exec };
    const id = await this.tx.insertVersion({ folderId: v.folderId, path: target, manifest: v.manifest, deviceId: this.ctx.deviceId, createdAt: this.ctx.now, ...content });
    this.set(target, { kind: 'file', deleted: false, versionId: id, ...content });
    return { path: target, version: id };
  }

  /**
   * Brings `scope` (a folder or a file; the whole folder when undefined) back
   * to how it was at `at` (see filesAt): each file that was there gets its
   * content of then as a new current version (what it holds now stays in its
   * history), and each file that was not is moved to the trash. Nothing is
   * destroyed. NOT_FOUND when no file of the scope existed at `at`.
   */
  async restoreAt(scope: RelPath | undefined, at: number): Promise<RewindCounts> {
    const { versions, deletions } = await this.tx.history(this.ctx.folder.id, scope);
    const then = filesAt(versions, deletions, at);
    const where = scope ?? this.ctx.folder.name;
    if (then.size === 0) throw new KeepsyncError('NOT_FOUND', `no file of ${where} was on the server at ${new Date(at).toISOString()}; pick a later time`);
    const paths = [...new Set(versions.map((v) => v.path))].sort();
    const uncached = paths.filter((p) => !this.cache.has(p));
    const found = await this.tx.entries(this.ctx.folder.id, uncached);
    for (const p of uncached) this.cache.set(p, found.get(p) ?? null);
    const counts: RewindCounts = { restored: 0, trashed: 0, unchanged: 0 };
    // Newer files go first: one may stand where a folder of then must come back.
    for (const p of paths) {
      const cur = await this.live(p);
      if (then.has(p) || cur?.kind !== 'file') continue;
      await this.trashFile(cur);
      counts.trashed++;
    }
    for (const [p, old] of then) {
      const cur = await this.live(p);
      if (cur?.kind === 'file' && cur.hash === old.hash && cur.exec === old.exec) {
        counts.unchanged++;
        continue;
      }
      const v = await this.tx.version(old.id);
      if (!v) throw new Error(`bug: version ${old.id} vanished under the folder lock`);
      await this.putVersion(p, v);
      counts.restored++;
    }
    await this.settleTrash(deletions);
    const when = new Date(at).toISOString();
    await this.tx.activity('restore', `${this.ctx.deviceName} restored ${where} to how it was at ${when}: ${counts.restored} files brought back, ${counts.trashed} newer files moved to the trash`, this.ctx.deviceId, this.ctx.folder.id, this.ctx.now);
    return counts;
  }

  /**
   * Trash items whose every file is current again with the content it was
   * deleted with (a restore to a time brought them back) count as restored:
   * the trash lists only what is still gone.
   */
  private async settleTrash(deletions: readonly DeletionRecord[]): Promise<void> {
    for (const id of new Set(deletions.filter((d) => d.state === 'trashed').map((d) => d.trashItemId))) {
      const files = (await this.tx.trashEntries(id)).filter((e) => e.kind === 'file');
      let back = files.length > 0;
      for (const e of files) {
        const [cur, v] = [await this.live(e.path), await this.tx.version(e.versionId)];
        if (!v || cur?.kind !== 'file' || cur.hash !== v.hash || cur.exec !== v.exec) back = false;
        if (!back) break;
      }
      if (back) await this.tx.setTrashState(id, 'restored', this.ctx.now);
    }
  }

  /** Deletes a live file into the trash, as one item of its own. */
  private async trashFile(cur: EntryRecord): Promise<void> {
    this.tombstone(cur);
    await this.tx.insertTrashItem(
      { folderId: this.ctx.folder.id, path: cur.path, kind: 'file', size: cur.size, files: 1, deletedAt: this.ctx.now, deviceId: this.ctx.deviceId, state: 'trashed' },
      [{ path: cur.path, kind: 'file', versionId: cur.versionId }],
    );
  }

  /**
   * Brings a trash item back with every file and folder it held, at its
   * place, or beside it as `NAME (restored DATE)` when the place is taken.
   */
  async restoreTrash(item: TrashItemRecord, entries: TrashEntryRecord[]): Promise<RelPath> {
    if (item.state !== 'trashed') throw new KeepsyncError('NOT_FOUND', 'that trash item was already restored or purged');
    const root = (await this.live(item.path)) ? await this.freeRestoredPath(item.path, item.kind === 'dir') : item.path;
    await this.ensureParents(root);
    // One query for what is at the new place now, instead of one per restored path.
    if (item.kind === 'dir') for (const e of await this.tx.entriesUnder(this.ctx.folder.id, root)) this.cached(e);
    for (const e of [...entries].sort((a, b) => (a.path < b.path ? -1 : 1))) {
      const target = rebase(e.path, item.path, root);
      if (e.kind === 'dir') {
        if (!(await this.live(target))) this.set(target, { kind: 'dir', deleted: false });
        continue;
      }
      const v = await this.tx.version(e.versionId);
      if (!v) continue;
      await this.ensureParents(target);
      let versionId = v.id;
      const content = { size: v.size, hash: v.hash, mtime: v.mtime, exec: v.exec };
      if (v.path !== target) {
        versionId = await this.tx.insertVersion({ folderId: v.folderId, path: target, manifest: v.manifest, deviceId: v.deviceId, createdAt: v.createdAt, ...content });
      }
      this.set(target, { kind: 'file', deleted: false, versionId, ...content });
    }
    if (item.kind === 'dir' && !(await this.live(root))) this.set(root, { kind: 'dir', deleted: false });
    await this.tx.setTrashState(item.id, 'restored', this.ctx.now);
    await this.tx.activity('restore', `${this.ctx.deviceName} restored ${root} from the trash`, this.ctx.deviceId, this.ctx.folder.id, this.ctx.now);
    return root;
  }

  /** Purges a trash item for good; NOT_FOUND when it is no longer in the trash. */
  async purgeTrash(item: TrashItemRecord): Promise<void> {
    if (!(await this.tx.purgeTrashItem(item.id))) throw new KeepsyncError('NOT_FOUND', `trash item ${item.id} was already restored or purged`);
    await this.tx.activity('purge', `${this.ctx.deviceName} purged ${item.path} from the trash for good`, this.ctx.deviceId, this.ctx.folder.id, this.ctx.now);
  }

  private async freeRestoredPath(path: RelPath, isDir: boolean): Promise<RelPath> {
    for (let attempt = 0; ; attempt++) {
      const candidate = restoredPath(path, new Date(this.ctx.now), isDir, attempt);
      if (!(await this.live(candidate))) return candidate;
    }
  }
}
