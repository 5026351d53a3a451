import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('Repository', () => {
  it('keeps only the README in certs/: generated certificates and keys never reach git', () => {
    const tracked = execFileSync('git', ['ls-files', 'certs'], { cwd: root, encoding: 'utf8' }).trim().split('\n');
    assert.deepEqual(tracked, ['certs/README.md']);
    for (const file of ['certs/server.key', 'certs/server.crt', 'data/keepsync.db']) {
      const ignored = spawnSync('git', ['check-ignore', '-q', file], { cwd: root });
      assert.equal(ignored.status, 0, `${file} must be ignored by git`);
    }
  });

  it('type-checks the tests themselves under the same strict settings as the product', function () {
    this.timeout(120_000);
    const r = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.test.json'], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, `type errors in the tests:\n${r.stdout}${r.stderr}`);
  });

  it('starts Node with the same flags from the keepsync command, npm start and the Dockerfile, and the command runs through its own first line', () => {
    const cli = path.join(root, 'packages/cli/dist/main.js');
    const shebang = /^#!\/usr\/bin\/env -S node (.+)$/.exec(fs.readFileSync(cli, 'utf8').split('\n', 1)[0]);
    assert.ok(shebang, 'the first line of the keepsync command names node and its flags');
    const flags = shebang[1];
    const start = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).scripts.start;
    assert.equal(start, `node ${flags} packages/cli/dist/main.js server`);
    const cmd = /^CMD (.+)$/m.exec(fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8'));
    assert.deepEqual(JSON.parse(cmd![1]), ['node', ...flags.split(' '), 'packages/cli/dist/main.js', 'server']);
    // Run as a program (as npx and an installed bin run it), not through `node FILE`.
    fs.chmodSync(cli, 0o755);
    const r = spawnSync(cli, ['--version'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${cli} --version: ${r.error ?? ''}${r.stderr}`);
    assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
  });

  it('has a docker-compose.yml that docker-compose accepts (server with PostgreSQL, volumes, port 8443)', function () {
    const probe = spawnSync('docker-compose', ['version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) this.skip();
    const r = spawnSync('docker-compose', ['-f', path.join(root, 'docker-compose.yml'), 'config'], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /DATABASE_URL: postgres:\/\//);
    assert.match(r.stdout, /8443/);
    assert.match(r.stdout, /\/data/);
    assert.match(r.stdout, /\/certs/);
  });
});
