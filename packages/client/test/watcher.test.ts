import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { watchFolder, type Watcher } from '../src/watcher/Watcher.js';

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('watchFolder', () => {
  let root: string;
  let w: Watcher | undefined;
  const seen: string[] = [];
  let rescans = 0;

  beforeEach(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-watch-'));
    fs.mkdirSync(path.join(root, 'a/b'), { recursive: true });
    fs.writeFileSync(path.join(root, 'a/b/f.txt'), '1');
    seen.length = 0;
    rescans = 0;
    w = await watchFolder(root, (rels) => seen.push(...rels), () => rescans++);
  });
  afterEach(async () => {
    await w?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('reports changes inside a folder under its new name after the folder was renamed, and asks for a rescan', async () => {
    fs.renameSync(path.join(root, 'a'), path.join(root, 'A'));
    await until('a rescan after the folder moved in', () => rescans > 0);
    seen.length = 0;
    fs.writeFileSync(path.join(root, 'A/b/f.txt'), 'changed');
    await until('the edit inside the renamed folder', () => seen.includes('A/b/f.txt'));
    fs.renameSync(path.join(root, 'A/b/f.txt'), path.join(root, 'A/b/g.txt'));
    await until('the rename inside the renamed folder', () => seen.includes('A/b/g.txt'));
    assert.ok(!seen.some((p) => p.startsWith('a/')), `stale paths reported: ${seen.join(', ')}`);
  });

  it('reports files written into a newly created folder', async () => {
    fs.mkdirSync(path.join(root, 'new'));
    await until('the new folder', () => seen.includes('new'));
    fs.writeFileSync(path.join(root, 'new/x'), '1');
    await until('the new file', () => seen.includes('new/x'));
  });

  it('reports later changes deep inside a folder that was removed and made again at once (rm -r, then mkdir -p)', async function () {
    this.timeout(60_000);
    // The native watcher reports the removal and the new folder together as one
    // update of the folder; a subfolder made before the new folder was watched
    // gets no watch of its own. Seen in about half of the tries: several are made.
    for (let i = 0; i < 6; i++) {
      const dir = `out${i}`;
      fs.mkdirSync(path.join(root, dir, 'b'), { recursive: true });
      await until(`the folder ${dir}`, () => seen.includes(dir));
      await new Promise((r) => setTimeout(r, 150));
      fs.rmSync(path.join(root, dir), { recursive: true });
      fs.mkdirSync(path.join(root, dir, 'b', 'c'), { recursive: true });
      // The user's next save lands a moment later, deep inside.
      await new Promise((r) => setTimeout(r, 400));
      const file = `${dir}/b/c/late.txt`;
      fs.writeFileSync(path.join(root, file), 'saved');
      await until(`the file saved in the made-again folder ${dir}`, () => seen.includes(file), 3000);
    }
  });

  it('keeps watching when its renewal runs into a folder being deleted, and asks for a rescan once it watches again', async function () {
    this.timeout(60_000);
    await w?.close();
    // Building the native watches walks the tree; a folder going meanwhile makes that fail.
    for (let d = 0; d < 60; d++) {
      fs.mkdirSync(path.join(root, 'big', `d${d}`), { recursive: true });
      for (let f = 0; f < 300; f++) fs.writeFileSync(path.join(root, 'big', `d${d}`, `f${f}`), '');
    }
    fs.mkdirSync(path.join(root, 'gone'));
    w = await watchFolder(root, (rels) => seen.push(...rels), () => rescans++, (rel) => rel === 'gone');
    // A synced folder deleted: the subscription is renewed a moment later, while `rm -r` runs.
    fs.rmdirSync(path.join(root, 'gone'));
    const rm = spawn('rm', ['-rf', path.join(root, 'big')]);
    await new Promise((r) => rm.on('exit', r));
    await until('a rescan after the renewal', () => rescans > 0);
    seen.length = 0;
    fs.writeFileSync(path.join(root, 'after.txt'), 'still watched');
    await until('the file written after the delete', () => seen.includes('after.txt'));
  });
});

/**
 * Runs `watchFolder` in a child process inside a user namespace of its own,
 * whose inotify limit `name` is set to `value` (the machine's limits are
 * untouched): answers what `onUnwatched` was told, and whether a file
 * written after the start was reported.
 */
function watchUnderLimit(root: string, name: string, value: number): { whys: Array<string | null>; sawFile: boolean } {
  const script = `
    import fs from 'node:fs';
    import { watchFolder } from ${JSON.stringify(new URL('../src/watcher/Watcher.ts', import.meta.url).pathname)};
    const root = process.argv[1];
    const whys = [];
    let sawFile = false;
    const w = await watchFolder(root, (rels) => (sawFile ||= rels.includes('late.txt')), () => {}, undefined, (why) => whys.push(why ?? null));
    fs.writeFileSync(root + '/late.txt', 'x');
    await new Promise((r) => setTimeout(r, 500));
    await w.close();
    console.log(JSON.stringify({ whys, sawFile }));
  `;
  const out = execFileSync(
    'unshare',
    ['-U', '-r', 'sh', '-c', `echo ${value} > /proc/sys/user/${name} && exec "$0" "$@"`, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script, root],
    { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return JSON.parse(out);
}

describe('watchFolder at the system\'s inotify limits', function () {
  this.timeout(60_000);
  let root: string;

  before(function () {
    // A user namespace of its own lets the test lower the limits for its child alone.
    const probe = spawnSync('unshare', ['-U', '-r', 'sh', '-c', 'echo 1 > /proc/sys/user/max_inotify_instances'], { stdio: 'ignore' });
    if (process.platform !== 'linux' || probe.status !== 0) this.skip();
  });
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'keepsync-watch-limits-'));
    for (let i = 0; i < 30; i++) fs.mkdirSync(path.join(root, `d${i}`));
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('says which limit to raise, and does not hang, when no inotify instance is left', () => {
    // The native watcher, left to itself, never returns from its start here: the process hangs.
    const r = watchUnderLimit(root, 'max_inotify_instances', 0);
    assert.equal(r.whys.length, 1);
    assert.match(r.whys[0]!, /limit of inotify instances is reached \(fs\.inotify\.max_user_instances = \d+.*sudo sysctl fs\.inotify\.max_user_instances=1024/);
    assert.equal(r.sawFile, false);
  });

  it('says which limit to raise when the folders need more inotify watches than are left', () => {
    const r = watchUnderLimit(root, 'max_inotify_watches', 10);
    assert.equal(r.whys.length, 1);
    assert.match(r.whys[0]!, /limit of inotify watches is reached \(fs\.inotify\.max_user_watches = \d+, one per folder\); raise it with "sudo sysctl fs\.inotify\.max_user_watches=524288"/);
  });

  it('watches as usual when the limits leave room', () => {
    const r = watchUnderLimit(root, 'max_inotify_watches', 1000);
    assert.deepEqual(r, { whys: [], sawFile: true });
  });
});
