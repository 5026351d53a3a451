import fs from 'node:fs';
import path from 'node:path';
import type { TestDevice } from '../helpers/cluster.js';
import type { Rng } from './rng.js';

/** What an operation needs from the run. */
export interface Ctx {
  rng: Rng;
  devices: TestDevice[];
  opNo: number;
  note(line: string): void;
  /** Records content a device wrote. */
  wrote(d: TestDevice, rel: string, data: Buffer): void;
  /** Called before the user overwrites or deletes a file. */
  beforeDestroy(d: TestDevice, abs: string): Promise<void>;
  /** A large write may have started a transfer: maybe kill someone in the middle of it. */
  killMidTransfer(writer: TestDevice): Promise<void>;
}

/** Names collide across devices on purpose: case twins, NFC and NFD twins. */
const DIRS = ['docs', 'docs/sub', 'Photos', 'photos', 'Café', 'a/b/c', 'music'];
const NAMES = ['a.txt', 'b.txt', 'Notes.md', 'notes.md', 'café.txt', 'cafe\u0301.txt', 'run.sh', 'data.bin', 'x'];
const FS_RACES = new Set(['ENOENT', 'ENOTDIR', 'EEXIST', 'ENOTEMPTY', 'EISDIR', 'EINVAL']);

const show = (rel: string) => (rel.normalize('NFC') === rel ? rel : JSON.stringify(rel));
const join = (dir: string, name: string) => (dir ? `${dir}/${name}` : name);
const isWithin = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);

/** The device's files and folders by on-disk relative path (anchors and temporaries left out). */
function listing(d: TestDevice): { files: string[]; dirs: string[] } {
  const files: string[] = [];
  const dirs: string[] = [];
  const walk = (abs: string, rel: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(abs, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = join(rel, e.name);
      if (e.name.startsWith('.keepsync-') || (!rel && e.name.startsWith('anchor-'))) continue;
      if (e.isDirectory()) {
        dirs.push(r);
        walk(path.join(abs, e.name), r);
      } else if (e.isFile()) files.push(r);
    }
  };
  walk(d.dir, '');
  return { files: files.sort(), dirs: dirs.sort() };
}

/** The name as this device spells it when a normalization twin exists there already. */
function spelled(d: TestDevice, dir: string, name: string): string {
  try {
    const twin = fs.readdirSync(d.p(dir || '.')).find((n) => n.normalize('NFC') === name.normalize('NFC'));
    return twin ?? name;
  } catch {
    return name;
  }
}

function content(ctx: Ctx, d: TestDevice): Buffer {
  const { rng } = ctx;
  const header = Buffer.from(`${d.name} #${ctx.opNo} ${rng.int(1e9)}\n`);
  const size = rng.weighted([
    [70, () => rng.int(2000)],
    [20, () => rng.range(10_000, 200_000)],
    [10, () => rng.range(1_000_000, 4_000_000)],
  ] as const)();
  return Buffer.concat([header, rng.bytes(size)]);
}

function exists(d: TestDevice, rel: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(d.p(rel));
  } catch {
    return undefined;
  }
}

async function writeFile(ctx: Ctx, d: TestDevice, rel: string, data: Buffer, mid = true): Promise<void> {
  const abs = d.p(rel);
  await ctx.beforeDestroy(d, abs);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  fs.writeFileSync(abs, data);
  ctx.wrote(d, rel, data);
  if (mid && data.length > 500_000) await ctx.killMidTransfer(d);
}

async function destroyTree(ctx: Ctx, d: TestDevice, rel: string): Promise<void> {
  for (const f of listing(d).files.filter((f) => isWithin(f, rel))) await ctx.beforeDestroy(d, d.p(f));
}

/** Devices that hold `rel` as the given kind. */
function holders(ctx: Ctx, rel: string, kind: 'file' | 'dir'): TestDevice[] {
  return ctx.devices.filter((d) => {
    const st = exists(d, rel);
    return st !== undefined && (kind === 'file' ? st.isFile() : st.isDirectory());
  });
}

type Op = (ctx: Ctx, d: TestDevice) => Promise<string | undefined>;

const ops: Array<readonly [number, string, Op]> = [
  [20, 'create', async (ctx, d) => {
    const dir = ctx.rng.pick(['', ...DIRS, ...listing(d).dirs]);
    const rel = join(dir, spelled(d, dir, ctx.rng.pick(NAMES)));
    if (exists(d, rel)?.isDirectory()) return undefined;
    const data = content(ctx, d);
    await writeFile(ctx, d, rel, data);
    return `write ${show(rel)} (${data.length} bytes)`;
  }],
  [14, 'edit', async (ctx, d) => {
    const rel = ctx.rng.pick(listing(d).files);
    const data = content(ctx, d);
    await writeFile(ctx, d, rel, data);
    return `edit ${show(rel)} (${data.length} bytes)`;
  }],
  [6, 'partial edit', async (ctx, d) => {
    const rel = ctx.rng.pick(listing(d).files);
    const old = fs.readFileSync(d.p(rel));
    const at = ctx.rng.int(old.length + 1);
    const patch = ctx.rng.bytes(ctx.rng.range(1, 300));
    const data = Buffer.concat([old.subarray(0, at), patch, old.subarray(Math.min(old.length, at + patch.length))]);
    await writeFile(ctx, d, rel, data);
    return `patch ${show(rel)} at ${at}`;
  }],
  [4, 'truncate', async (ctx, d) => {
    const rel = ctx.rng.pick(listing(d).files);
    const size = fs.statSync(d.p(rel)).size;
    const to = ctx.rng.chance(0.3) ? 0 : ctx.rng.int(size + 1);
    await ctx.beforeDestroy(d, d.p(rel));
    fs.truncateSync(d.p(rel), to);
    ctx.wrote(d, rel, fs.readFileSync(d.p(rel)));
    return `truncate ${show(rel)} to ${to}`;
  }],
  [8, 'delete', async (ctx, d) => {
    const rel = ctx.rng.pick(listing(d).files);
    await ctx.beforeDestroy(d, d.p(rel));
    fs.rmSync(d.p(rel));
    return `delete ${show(rel)}`;
  }],
  [6, 'rename', async (ctx, d) => {
    const rel = ctx.rng.pick(listing(d).files);
    const dir = path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel);
    const to = join(dir, spelled(d, dir, ctx.rng.pick(NAMES)));
    if (exists(d, to)) return undefined;
    fs.renameSync(d.p(rel), d.p(to));
    return `rename ${show(rel)} → ${show(to)}`;
  }],
  [4, 'move file', async (ctx, d) => {
    const { files, dirs } = listing(d);
    const rel = ctx.rng.pick(files);
    const dir = ctx.rng.pick(['', ...DIRS, ...dirs]);
    const to = join(dir, spelled(d, dir, path.posix.basename(rel)));
    if (exists(d, to) || exists(d, dir)?.isFile()) return undefined;
    fs.mkdirSync(d.p(dir || '.'), { recursive: true });
    fs.renameSync(d.p(rel), d.p(to));
    return `move ${show(rel)} → ${show(to)}`;
  }],
  [4, 'case-only rename', async (ctx, d) => {
    const { files, dirs } = listing(d);
    const rel = ctx.rng.pick([...files, ...dirs]);
    const base = path.posix.basename(rel);
    const flipped = base[0] === base[0].toUpperCase() ? base[0].toLowerCase() + base.slice(1) : base[0].toUpperCase() + base.slice(1);
    const to = join(path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel), flipped);
    if (flipped === base || exists(d, to)) return undefined;
    fs.renameSync(d.p(rel), d.p(to));
    return `case rename ${show(rel)} → ${show(to)}`;
  }],
  [3, 'chmod', async (ctx, d) => {
    const rel = ctx.rng.pick(listing(d).files);
    const exec = (fs.statSync(d.p(rel)).mode & 0o111) === 0;
    fs.chmodSync(d.p(rel), exec ? 0o755 : 0o644);
    return `chmod ${exec ? '+x' : '-x'} ${show(rel)}`;
  }],
  [4, 'mkdir', async (ctx, d) => {
    const rel = ctx.rng.chance(0.5) ? ctx.rng.pick(DIRS) : join(ctx.rng.pick(['', ...listing(d).dirs]), `new${ctx.rng.int(3)}`);
    if (exists(d, rel)) return undefined;
    fs.mkdirSync(d.p(rel), { recursive: true });
    return `mkdir ${show(rel)}`;
  }],
  [4, 'delete folder', async (ctx, d) => {
    const rel = ctx.rng.pick(listing(d).dirs);
    await destroyTree(ctx, d, rel);
    fs.rmSync(d.p(rel), { recursive: true });
    return `delete folder ${show(rel)}`;
  }],
  [4, 'move folder', async (ctx, d) => {
    const { dirs } = listing(d);
    const rel = ctx.rng.pick(dirs);
    const parent = ctx.rng.pick(['', ...dirs.filter((x) => !isWithin(x, rel))]);
    const to = join(parent, ctx.rng.pick(['moved', 'Archive', `${path.posix.basename(rel)}2`]));
    if (exists(d, to) || isWithin(to, rel)) return undefined;
    fs.renameSync(d.p(rel), d.p(to));
    return `move folder ${show(rel)} → ${show(to)}`;
  }],
  [6, 'concurrent edits', async (ctx, d) => {
    const rel = ctx.rng.pick(listing(d).files);
    const on = ctx.rng.sample(holders(ctx, rel, 'file'), ctx.rng.range(2, 4));
    if (on.length < 2) return undefined;
    for (const x of on) await ctx.beforeDestroy(x, x.p(rel));
    const datas = on.map((x) => content(ctx, x));
    on.forEach((x, i) => {
      fs.writeFileSync(x.p(rel), datas[i]);
      ctx.wrote(x, rel, datas[i]);
    });
    return `concurrent edits of ${show(rel)} on ${on.map((x) => x.name).join(', ')}`;
  }],
  [5, 'edit races delete', async (ctx, d) => {
    const rel = ctx.rng.pick(listing(d).files);
    const other = ctx.rng.pick(holders(ctx, rel, 'file').filter((x) => x !== d).concat([d]));
    if (other === d) return undefined;
    await ctx.beforeDestroy(d, d.p(rel));
    await ctx.beforeDestroy(other, other.p(rel));
    const data = content(ctx, d);
    fs.writeFileSync(d.p(rel), data);
    ctx.wrote(d, rel, data);
    fs.rmSync(other.p(rel));
    return `${show(rel)}: edited here, deleted on ${other.name}`;
  }],
  [4, 'folder delete races edit inside', async (ctx, d) => {
    const dir = ctx.rng.pick(listing(d).dirs);
    const other = ctx.rng.pick(holders(ctx, dir, 'dir').filter((x) => x !== d).concat([d]));
    if (other === d) return undefined;
    const inside = listing(other).files.filter((f) => isWithin(f, dir));
    const rel = inside.length > 0 && ctx.rng.chance(0.6) ? ctx.rng.pick(inside) : join(dir, spelled(other, dir, ctx.rng.pick(NAMES)));
    if (exists(other, rel)?.isDirectory()) return undefined;
    await destroyTree(ctx, d, dir);
    await ctx.beforeDestroy(other, other.p(rel));
    const data = content(ctx, other);
    fs.rmSync(d.p(dir), { recursive: true });
    fs.writeFileSync(other.p(rel), data);
    ctx.wrote(other, rel, data);
    return `delete folder ${show(dir)} here while ${other.name} writes ${show(rel)}`;
  }],
  [2, 'crossing moves', async (ctx, d) => {
    const tops = listing(d).dirs.filter((x) => !x.includes('/'));
    const [x, y] = ctx.rng.sample(tops, 2);
    if (!y) return undefined;
    const other = ctx.rng.pick(ctx.devices.filter((o) => o !== d && exists(o, x)?.isDirectory() && exists(o, y)?.isDirectory()).concat([d]));
    if (other === d || exists(d, `${y}/${x}`) || exists(other, `${x}/${y}`)) return undefined;
    fs.renameSync(d.p(x), d.p(`${y}/${x}`));
    fs.renameSync(other.p(y), other.p(`${x}/${y}`));
    return `crossing moves: ${show(x)} → ${show(`${y}/${x}`)} here, ${show(y)} → ${show(`${x}/${y}`)} on ${other.name}`;
  }],
  [2, 'same bytes twice', async (ctx, d) => {
    const other = ctx.rng.pick(ctx.devices.filter((o) => o !== d).concat([d]));
    const rel = `same-${ctx.opNo}.txt`;
    if (other === d) return undefined;
    const data = content(ctx, d);
    for (const x of [d, other]) {
      fs.writeFileSync(x.p(rel), data);
      ctx.wrote(x, rel, data);
    }
    return `${show(rel)} created with the same bytes here and on ${other.name}`;
  }],
];

/** Picks and applies one random operation on a random device (a few tries to find one that applies). */
export async function chooseOp(ctx: Ctx): Promise<void> {
  for (let attempt = 0; attempt < 6; attempt++) {
    const d = ctx.rng.pick(ctx.devices);
    const [, name, op] = ctx.rng.weighted(ops.map(([w, n, fn]) => [w, [w, n, fn] as const] as const));
    try {
      const what = await op(ctx, d);
      if (what) {
        ctx.note(`${d.name}: ${what}`);
        return;
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code && FS_RACES.has(code)) {
        ctx.note(`${d.name}: ${name} raced the sync engine (${code}); skipped`);
        return;
      }
      if ((err as Error).message === 'bug: pick from an empty list') continue;
      throw err;
    }
  }
}
