import assert from 'node:assert/strict';
import type { Op, RelPath } from '@keepsync/protocol';
import { MemoryContentStore, MemoryMetadataStore } from '../../../test/sim/memoryStores.js';
import { SyncService } from '../src/sync/SyncService.js';

const p = (s: string) => s as RelPath;

/*
 * A folder deleted on one device while another added a file in it (SAFETY.md
 * A3): the add wins and the folder stays. The deleting device took the folder
 * for gone, so the server must tell it the folder is still there.
 */
describe('A folder delete racing an add inside it (A3)', () => {
  it('writes again the folders it keeps, so the deleting device hears they stay', async () => {
    const meta = new MemoryMetadataStore();
    const sync = new SyncService(meta, new MemoryContentStore(), () => 1_700_000_000_000);
    const folder = await meta.ensureFolder('Sync', 'epoch', 1);
    const laptop = { id: 1, name: 'laptop' };
    const desktop = { id: 2, name: 'desktop' };
    await sync.push(folder, laptop, [{ op: 'mkdir', path: p('shared/sub') }], () => true);
    const seen = (await sync.changes(folder, 0)).seq;
    // The laptop adds a file the desktop has not heard of; the desktop deletes the folder.
    const put: Op = { op: 'put', path: p('shared/sub/run.sh'), base: 0, size: 0, hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', mtime: 1, exec: false, manifest: { full: new Uint8Array(0) } };
    await sync.push(folder, laptop, [put], () => true);
    const [deleted] = await sync.push(folder, desktop, [{ op: 'delete', path: p('shared'), kind: 'dir', base: 0, seq: seen }], () => true);
    assert.equal(deleted.status, 'ok');
    // What the desktop pulls next (everything after what it had seen) names the folders kept.
    const next = await sync.changes(folder, seen);
    const kept = next.entries.filter((e) => e.kind === 'dir' && !e.deleted).map((e) => e.path).sort();
    assert.deepEqual(kept, ['shared', 'shared/sub']);
    assert.ok(next.entries.some((e) => e.path === 'shared/sub/run.sh' && !e.deleted), 'the added file stays');
  });
});
