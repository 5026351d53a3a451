import { ancestorsOf, parallel, sha256Hex, unpackManifest, type RelPath } from '@keepsync/protocol';
import type { ContentStore } from '../storage/ContentStore.js';
import type { MaintenanceStore, VersionRole } from './MaintenanceStore.js';

const PAGE = 500;
const READ_PARALLEL = 8;
/** Affected versions named per bad chunk; the rest are counted. */
const NAMED_PER_CHUNK = 10;

/** A referenced chunk that is absent or whose bytes do not hash to its name. */
export interface BadChunk {
  hash: string;
  problem: 'missing' | 'corrupt';
  /** The versions whose content needs this chunk. */
  affected: Array<{ folder: string; path: RelPath; version: number; role: VersionRole }>;
}

/** What `keepsync server verify` found. */
export interface VerifyReport {
  folders: number;
  versions: number;
  /** Distinct chunks referenced and checked. */
  chunks: number;
  /** Their bytes, read and hashed. */
  bytes: number;
  badChunks: BadChunk[];
  /** Index inconsistencies, one sentence each (an entry without a parent folder, a file without content). */
  indexProblems: string[];
}

/**
 * Checks the store against the index: every chunk any version needs is
 * present and hashes to its name, every live entry's parent is a live
 * folder, every live file has its version. Reads only; safe while the server
 * runs (a chunk found bad is reported only if a version still needs it).
 */
export async function verifyStore(store: MaintenanceStore, content: ContentStore): Promise<VerifyReport> {
  const folders = await store.folders();
  const folderName = new Map(folders.map((f) => [f.id, f.name]));
  const report: VerifyReport = { folders: folders.length, versions: 0, chunks: 0, bytes: 0, badChunks: [], indexProblems: [] };

  // Pass 1: every distinct referenced chunk, read and hashed once.
  const seen = new Set<string>();
  const bad = new Map<string, BadChunk['problem']>();
  for (let after = 0; ;) {
    const page = await store.versionsAfter(after, PAGE);
    const fresh: string[] = [];
    for (const v of page) {
      report.versions++;
      for (const c of unpackManifest(v.manifest)) {
        if (seen.has(c.hash)) continue;
        seen.add(c.hash);
        fresh.push(c.hash);
      }
    }
    await parallel(fresh, READ_PARALLEL, async (hash) => {
      const data = await content.get(hash);
      report.chunks++;
      if (!data) return void bad.set(hash, 'missing');
      report.bytes += data.byteLength;
      if (sha256Hex(data) !== hash) bad.set(hash, 'corrupt');
    });
    if (page.length < PAGE) break;
    after = page[page.length - 1].id;
  }

  // Pass 2, only when something is wrong: which versions need the bad chunks.
  if (bad.size > 0) {
    const needing = new Map<string, Array<{ id: number; folderId: number; path: RelPath }>>();
    for (let after = 0; ;) {
      const page = await store.versionsAfter(after, PAGE);
      for (const v of page) {
        for (const c of unpackManifest(v.manifest)) {
          if (!bad.has(c.hash)) continue;
          const list = needing.get(c.hash) ?? [];
          if (!list.some((x) => x.id === v.id)) list.push({ id: v.id, folderId: v.folderId, path: v.path });
          needing.set(c.hash, list);
        }
      }
      if (page.length < PAGE) break;
      after = page[page.length - 1].id;
    }
    const roles = await store.roles([...new Set([...needing.values()].flat().map((v) => v.id))]);
    for (const [hash, problem] of bad) {
      // A version removed by retention meanwhile no longer counts.
      const affected = (needing.get(hash) ?? [])
        .filter((v) => roles.has(v.id))
        .map((v) => ({ folder: folderName.get(v.folderId) ?? `folder ${v.folderId}`, path: v.path, version: v.id, role: roles.get(v.id)! }));
      if (affected.length > 0) report.badChunks.push({ hash, problem, affected });
    }
  }

  for (const f of folders) await checkParents(store, f, report.indexProblems);
  for (const e of await store.filesWithoutVersion()) {
    report.indexProblems.push(`file without content: ${folderName.get(e.folderId) ?? e.folderId}/${e.path} points at a version that is not in the index`);
  }
  return report;
}

/** Walks a folder's live entries in path order; a parent sorts before its children. */
async function checkParents(store: MaintenanceStore, folder: { id: number; name: string }, problems: string[]): Promise<void> {
  const dirs = new Set<string>();
  for (let after = ''; ;) {
    const page = await store.liveEntriesAfter(folder.id, after, PAGE * 4);
    for (const e of page) {
      const parent = ancestorsOf(e.path).at(-1);
      if (parent !== undefined && !dirs.has(parent)) problems.push(`entry without a parent folder: ${folder.name}/${e.path}`);
      if (e.kind === 'dir') dirs.add(e.path);
    }
    if (page.length < PAGE * 4) break;
    after = page[page.length - 1].path;
  }
}

/** One line per bad chunk: what is wrong and which files and versions it takes with it. */
export function describeBadChunk(b: BadChunk): string {
  const named = b.affected.slice(0, NAMED_PER_CHUNK).map((a) => `${a.folder}/${a.path} (${a.role === 'history' ? 'earlier' : a.role} version ${a.version})`);
  const more = b.affected.length > NAMED_PER_CHUNK ? ` and ${b.affected.length - NAMED_PER_CHUNK} more` : '';
  return `${b.problem} chunk ${b.hash}: needed by ${named.join(', ')}${more}`;
}
