import assert from 'node:assert/strict';
import type { RelPath } from '@keepsync/protocol';
import { filesAt, type DeletionRecord, type VersionSummary } from '@keepsync/server';

let nextId = 1;
const v = (path: string, createdAt: number, hash = `${path}@${createdAt}`): VersionSummary => ({
  id: nextId++, folderId: 1, path: path as RelPath, size: 1, hash, mtime: createdAt, exec: false, deviceId: null, createdAt,
});
const del = (of: VersionSummary, deletedAt: number, restoredAt?: number | null): DeletionRecord => ({
  trashItemId: 1, path: of.path, versionId: of.id, deletedAt, restoredAt: restoredAt ?? null, state: restoredAt === undefined ? 'trashed' : 'restored',
});
const at = (versions: VersionSummary[], deletions: DeletionRecord[], t: number) =>
  Object.fromEntries([...filesAt(versions, deletions, t)].map(([p, x]) => [p, x.hash]));

describe('filesAt', () => {
  it('gives each file its newest content saved at or before the time, and leaves out files saved only after', () => {
    const a1 = v('a', 10);
    const a2 = v('a', 20);
    const b = v('b', 30);
    assert.deepEqual(at([a1, a2, b], [], 5), {});
    assert.deepEqual(at([a1, a2, b], [], 10), { a: a1.hash });
    assert.deepEqual(at([a1, a2, b], [], 25), { a: a2.hash });
    assert.deepEqual(at([a1, a2, b], [], 30), { a: a2.hash, b: b.hash });
  });

  it('leaves out a file deleted by then, and counts it again once written anew', () => {
    const a1 = v('a', 10);
    const a2 = v('a', 40);
    const d = del(a1, 20);
    assert.deepEqual(at([a1, a2], [d], 15), { a: a1.hash });
    assert.deepEqual(at([a1, a2], [d], 20), {});
    assert.deepEqual(at([a1, a2], [d], 39), {});
    assert.deepEqual(at([a1, a2], [d], 40), { a: a2.hash });
  });

  it('counts a file restored from the trash from the time of its restore, with the content it was deleted with', () => {
    const a1 = v('a', 10);
    const a2 = v('a', 30);
    // a1 deleted at 20 and back at 50; a2 (written at 30) deleted at 40 and still in the trash.
    const versions = [a1, a2];
    const deletions = [del(a1, 20, 50), del(a2, 40)];
    assert.deepEqual(at(versions, deletions, 25), {});
    assert.deepEqual(at(versions, deletions, 35), { a: a2.hash });
    assert.deepEqual(at(versions, deletions, 45), {});
    assert.deepEqual(at(versions, deletions, 50), { a: a1.hash });
  });

  it('does not let a restore that went beside a taken place stand for the file at that place', () => {
    const a1 = v('a', 10);
    const a2 = v('a', 30);
    // a1 deleted at 20; a new a written at 30; a1 restored at 40 found its place taken.
    assert.deepEqual(at([a1, a2], [del(a1, 20, 40)], 45), { a: a2.hash });
  });

  it('counts trash items restored before restore times were kept as restored at once', () => {
    const a1 = v('a', 10);
    assert.deepEqual(at([a1], [del(a1, 20, null)].map((d) => ({ ...d, state: 'restored' as const })), 25), { a: a1.hash });
  });
});
