import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built CLI, run as users run it. */
export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../packages/cli/dist/main.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The command line for `keepsync ARGS`, run through `prefix` when given
 * (e.g. `ip netns exec NAME`, to run a device inside a network namespace).
 */
function commandLine(args: string[], prefix: string[] = []): [string, string[]] {
  const full = [process.execPath, CLI, ...args];
  return prefix.length > 0 ? [prefix[0], [...prefix.slice(1), ...full]] : [full[0], full.slice(1)];
}

/**
 * With KEEPSYNC_TEST_LOGS=DIR, what each process prints on stderr is also
 * appended to DIR/COMMAND-PID.log as it comes, kept after the test (with
 * KEEPSYNC_TRACE=1, devices print each cycle's plan): for a failure seen
 * only in a full run, where a test's message holds the tail alone.
 */
function keepLog(child: ChildProcess, args: string[]): void {
  const dir = process.env.KEEPSYNC_TEST_LOGS;
  if (!dir || !child.pid) return;
  fs.mkdirSync(dir, { recursive: true });
  const command = args.slice(0, 2).filter((a) => /^[a-z][a-z-]*$/.test(a)).join('-');
  const file = path.join(dir, `${command || 'keepsync'}-${child.pid}.log`);
  child.stderr!.on('data', (d: Buffer) => fs.appendFileSync(file, d));
}

/** Runs `keepsync ARGS` to completion. */
export function keepsync(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; prefix?: string[]; uid?: number; gid?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [cmd, argv] = commandLine(args, opts.prefix);
    const child = spawn(cmd, argv, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], uid: opts.uid, gid: opts.gid });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    keepLog(child, args);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`keepsync ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 60_000} ms\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** A long-running `keepsync …` process whose output is collected. */
export class Proc {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(args: string[], env: NodeJS.ProcessEnv = {}, opts: { prefix?: string[]; uid?: number; gid?: number } = {}) {
    const [cmd, argv] = commandLine(args, opts.prefix);
    this.child = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], uid: opts.uid, gid: opts.gid });
    this.child.stdout!.on('data', (d) => (this.stdout += d));
    this.child.stderr!.on('data', (d) => (this.stderr += d));
    keepLog(this.child, args);
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Stops with SIGTERM (or the given signal) and waits for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }
}
