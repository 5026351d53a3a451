import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { databaseKinds } from '../helpers/databases.js';
import { scenario, type Scenario } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A laptop where other programs took every inotify instance (the per-user
 * limit, 128 on many systems) still syncs: `keepsync sync` says which limit
 * to raise, in one line, and finds changes by scanning. Its `keepsync sync`
 * runs in a user namespace of its own whose limit is 0; the machine's limits
 * are untouched. The client alone is under test: one database is enough.
 */
describe('Sync where no inotify instance is left', function () {
  this.timeout(120_000);
  let s: Scenario;

  before(function () {
    const probe = spawnSync('unshare', ['-U', '-r', 'sh', '-c', 'echo 0 > /proc/sys/user/max_inotify_instances'], { stdio: 'ignore' });
    if (process.platform !== 'linux' || probe.status !== 0) this.skip();
  });
  afterEach(async () => s?.cleanup());

  it('says which limit to raise, and sends and receives changes by scanning', async () => {
    s = await scenario(databaseKinds()[0]);
    const laptop = await s.addDevice('laptop');
    const desktop = await s.addDevice('desktop');
    laptop.prefix = ['unshare', '-U', '-r', 'sh', '-c', 'echo 0 > /proc/sys/user/max_inotify_instances && exec "$0" "$@"'];
    await laptop.start();
    await desktop.start();
    await waitFor('the laptop saying why it cannot watch', () => /cannot watch .* for changes: the system's limit of inotify instances is reached/.test(laptop.live!.stderr));
    const said = laptop.live!.stderr.split('\n').filter((l) => l.includes('cannot watch'));
    assert.equal(said.length, 1, laptop.live!.stderr);
    assert.match(said[0], /raise it with "sudo sysctl fs\.inotify\.max_user_instances=1024"; until then its changes are found by scanning it every \d+ s or so$/);

    laptop.write('notes/from-laptop.txt', 'written where nothing is watched');
    await waitFor('the laptop change on the desktop', () => desktop.read('notes/from-laptop.txt') === 'written where nothing is watched', 60_000);
    desktop.write('notes/from-desktop.txt', 'sent live');
    await waitFor('the desktop change on the laptop', () => laptop.read('notes/from-desktop.txt') === 'sent live', 30_000);
    // Stopped as usual: nothing hangs.
    assert.equal(await laptop.stop(), 0);
  });
});
