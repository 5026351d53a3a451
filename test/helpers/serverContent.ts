import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { AdminClient } from './rawDevice.js';

export const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

const q = encodeURIComponent;

async function get(admin: AdminClient, apiPath: string): Promise<any> {
  const r = await admin.request('GET', apiPath);
  assert.equal(r.status, 200, `GET ${apiPath} answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** The server's current tree of folder `Sync` through the admin API: path → sha256 of the content, '/' for folders. */
export async function serverTree(admin: AdminClient, folder = 'Sync'): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string | undefined) => {
    const entries: Array<{ path: string; kind: string; hash: string }> = await get(admin, `/folders/${folder}/files${dir ? `?path=${q(dir)}` : ''}`);
    for (const e of entries) {
      out.set(e.path, e.kind === 'dir' ? '/' : e.hash);
      if (e.kind === 'dir') await walk(e.path);
    }
  };
  await walk(undefined);
  return out;
}

/**
 * Every content the server keeps for folder `Sync`: the current files and
 * all their versions, and the versions of `alsoPaths` (files since deleted
 * or moved, whose versions the trash keeps).
 */
export async function serverContents(admin: AdminClient, alsoPaths: Iterable<string> = [], folder = 'Sync'): Promise<Set<string>> {
  const tree = await serverTree(admin, folder);
  const out = new Set<string>();
  const files = new Set<string>(alsoPaths);
  for (const [p, h] of tree) if (h !== '/') files.add(p);
  for (const p of files) {
    const r = await admin.request('GET', `/folders/${folder}/versions?path=${q(p)}`);
    if (r.status !== 200) continue;
    for (const v of r.body as Array<{ hash: string }>) out.add(v.hash);
  }
  for (const h of tree.values()) if (h !== '/') out.add(h);
  return out;
}

/**
 * Keeps every content written to any device during a test and checks that
 * the server still holds each one: current, a version, in the trash or as a
 * conflict copy (SAFETY.md I1).
 */
export class ContentLog {
  private readonly written = new Map<string, { path: string; hash: string }>();

  /** Records `content` as written at `path`; answers the content, for chaining into a write. */
  add(path: string, content: string | Buffer): string | Buffer {
    const hash = sha256(content);
    this.written.set(`${path}\0${hash}`, { path, hash });
    return content;
  }

  async assertNothingLost(admin: AdminClient): Promise<void> {
    const all = [...this.written.values()];
    const kept = await serverContents(admin, all.map((w) => w.path));
    const lost = all.filter((w) => !kept.has(w.hash)).map((w) => `${w.path} (${w.hash.slice(0, 12)})`);
    assert.deepEqual(lost, [], `content lost on the server: ${lost.join(', ')}`);
  }
}
