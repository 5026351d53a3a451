import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import ignoreFactory, { type Ignore } from 'ignore';
import { Chunker, DEFAULT_IGNORES, IGNORE_FILE, TEMP_PREFIX, tryParseRelPath, type ChunkedFile, type EntryKind, type RelPath } from '@keepsync/protocol';

/** A path as it is on this device's disk right now. */
export interface LocalState {
  path: RelPath;
  /** The name on disk, relative to the root (may differ from `path` in Unicode normalization). */
  localPath: string;
  kind: EntryKind;
  size: number;
  mtime: number;
  ino: number;
  exec: boolean;
}

const READ_BLOCK = 1024 * 1024;

/**
 * Reads the synced folder: walks it (or parts of it), applying the default
 * ignores and `.keepsyncignore`, never following symbolic links, and hashes
 * files into chunks in one streaming pass.
 */
export class Scanner {
  private ignore: Ignore = ignoreFactory().add([...DEFAULT_IGNORES]);
  /** Paths the walk skipped because another name maps to the same wire path. */
  readonly clashes: string[] = [];
  /** Temporary `.keepsync-*` files the walk passed (local paths): leftovers when no download runs. */
  readonly temps: string[] = [];

  constructor(readonly root: string) {}

  /** Re-reads `.keepsyncignore`. */
  loadIgnores(): void {
    const ig = ignoreFactory().add([...DEFAULT_IGNORES]);
    try {
      ig.add(fs.readFileSync(path.join(this.root, IGNORE_FILE), 'utf8'));
    } catch {
      // no ignore file
    }
    this.ignore = ig;
  }

  isIgnored(rel: string, isDir: boolean): boolean {
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    if (base.startsWith(TEMP_PREFIX)) return true;
    return this.ignore.ignores(isDir ? `${rel}/` : rel);
  }

  abs(localPath: string): string {
    return path.join(this.root, ...localPath.split('/'));
  }

  /**
   * The state of one local path, or undefined when absent, ignored or not a
   * file/folder. A wire path (NFC) finds the file under the name it has on
   * disk when that differs only in Unicode normalization (NFD on Linux).
   */
  async stat(localPath: string): Promise<LocalState | undefined> {
    const found = await this.lstatAnyForm(localPath);
    return found && this.toState(found.localPath, found.st);
  }

  private async lstatAnyForm(localPath: string): Promise<{ localPath: string; st: fs.Stats } | undefined> {
    const st = await fsp.lstat(this.abs(localPath)).catch(() => undefined);
    if (st || /^[\x00-\x7f]*$/.test(localPath)) return st && { localPath, st };
    let cur = '';
    for (const segment of localPath.split('/')) {
      const names = await fsp.readdir(cur ? this.abs(cur) : this.root).catch(() => undefined);
      const want = segment.normalize('NFC');
      const name = names?.includes(segment) ? segment : names?.find((n) => n.normalize('NFC') === want);
      if (!name) return undefined;
      cur = cur ? `${cur}/${name}` : name;
    }
    const found = await fsp.lstat(this.abs(cur)).catch(() => undefined);
    return found && { localPath: cur, st: found };
  }

  private toState(localPath: string, st: fs.Stats): LocalState | undefined {
    const wire = tryParseRelPath(localPath);
    if (!wire) return undefined;
    if (st.isDirectory()) {
      if (this.isIgnored(wire, true)) return undefined;
      return { path: wire, localPath, kind: 'dir', size: 0, mtime: 0, ino: st.ino, exec: false };
    }
    if (!st.isFile() || this.isIgnored(wire, false)) return undefined;
    return { path: wire, localPath, kind: 'file', size: st.size, mtime: st.mtimeMs, ino: st.ino, exec: (st.mode & 0o111) !== 0 };
  }

  /**
   * Every file and folder under `localDir` (the whole folder when undefined),
   * keyed by wire path. Unreadable directories are reported, not treated as empty.
   */
  async walk(localDir?: string, out = new Map<RelPath, LocalState>()): Promise<{ states: Map<RelPath, LocalState>; unreadable: string[] }> {
    const unreadable: string[] = [];
    const stack: string[] = [localDir ?? ''];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      let names: fs.Dirent[];
      try {
        names = await fsp.readdir(dir ? this.abs(dir) : this.root, { withFileTypes: true });
      } catch {
        unreadable.push(dir);
        continue;
      }
      for (const d of names) {
        if (!d.isFile() && !d.isDirectory()) continue;
        const rel = dir ? `${dir}/${d.name}` : d.name;
        if (d.isFile() && d.name.startsWith(TEMP_PREFIX)) {
          this.temps.push(rel);
          continue;
        }
        const st = await fsp.lstat(this.abs(rel)).catch(() => undefined);
        if (!st) continue;
        const state = this.toState(rel, st);
        if (!state) continue;
        if (out.has(state.path)) {
          this.clashes.push(rel);
          continue;
        }
        out.set(state.path, state);
        if (state.kind === 'dir') stack.push(rel);
      }
    }
    return { states: out, unreadable };
  }

  /** Hashes a file into chunks, streaming. Throws when it cannot be read. */
  async hash(localPath: string, expectedSize: number, signal?: AbortSignal): Promise<ChunkedFile> {
    const fh = await fsp.open(this.abs(localPath), 'r');
    try {
      const chunker = new Chunker(expectedSize);
      const buf = Buffer.allocUnsafe(READ_BLOCK);
      for (;;) {
        signal?.throwIfAborted();
        const { bytesRead } = await fh.read(buf, 0, READ_BLOCK, null);
        if (bytesRead === 0) break;
        chunker.update(buf.subarray(0, bytesRead));
      }
      return chunker.finish();
    } finally {
      await fh.close();
    }
  }
}
