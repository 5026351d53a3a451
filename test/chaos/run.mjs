#!/usr/bin/env node
// `npm run chaos -- --seeds N --devices D [--ops N] [--db sqlite|postgres] [--seed S]
// [--first-seed S] [--no-faults] [--verbose]`: passes the flags to the chaos spec
// through KEEPSYNC_CHAOS_* variables (mocha refuses flags it does not know) and runs it.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const valued = ['seeds', 'devices', 'ops', 'db', 'seed', 'first-seed'];
const env = { ...process.env };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const [flag, inline] = args[i].replace(/^--/, '').split('=', 2);
  const key = `KEEPSYNC_CHAOS_${flag.toUpperCase().replace(/-/g, '_')}`;
  if (flag === 'no-faults') env.KEEPSYNC_CHAOS_FAULTS = '0';
  else if (flag === 'verbose') env.KEEPSYNC_CHAOS_VERBOSE = '1';
  else if (valued.includes(flag) && (inline ?? args[i + 1]) !== undefined) env[key] = inline ?? args[++i];
  else {
    process.stderr.write(`unknown chaos option ${args[i]}; use --seeds N --devices D --ops N --db sqlite|postgres --seed S --first-seed S --no-faults --verbose\n`);
    process.exit(2);
  }
}
const mocha = path.join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');
const child = spawn(process.execPath, [mocha, '--no-config', '--import=tsx', '--timeout', '0', 'test/chaos/chaos.test.ts'], { cwd: root, env, stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
