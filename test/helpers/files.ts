import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { TestDevice } from './cluster.js';
import type { HttpAnswer } from './rawDevice.js';

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** The sha256 of a file's content, or undefined while it cannot be read (not there yet). */
export function fileSha(file: string): string | undefined {
  try {
    return sha256(fs.readFileSync(file));
  } catch {
    return undefined;
  }
}

/** Files under `rel` on a device: path → sha256 of the content, followed by the mtime when asked. */
export function filesOf(d: TestDevice, rel: string, opts: { mtimes?: boolean } = {}): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string, r: string) => {
    let list: fs.Dirent[];
    try {
      list = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of list) {
      const p = `${r}/${e.name}`;
      const abs = path.join(dir, e.name);
      if (e.isDirectory()) walk(abs, p);
      else out.set(p, opts.mtimes ? `${sha256(fs.readFileSync(abs))} ${fs.statSync(abs).mtimeMs}` : sha256(fs.readFileSync(abs)));
    }
  };
  walk(d.p(rel), rel);
  return out;
}

/** The body of an API answer with the expected status. */
export function ok(r: HttpAnswer, status = 200): any {
  assert.equal(r.status, status, `answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** A refusal: the status and one line saying what went wrong, no stack. */
export function refused(r: HttpAnswer, status: number, pattern: RegExp): void {
  assert.equal(r.status, status, `answered ${r.status}: ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body?.error, 'string', JSON.stringify(r.body));
  assert.ok(!r.body.error.includes('\n') && !/\bat .*\.(ts|js):\d+/.test(r.body.error), r.body.error);
  assert.match(r.body.error, pattern);
}
