import { spawn, type ChildProcess } from 'node:child_process';
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
