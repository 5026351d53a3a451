import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';

/** The shell that answers each line it reads with the outcome of one sync of the file system holding `$1`. */
const LOOP = 'while read -r _; do if sync --file-system "$1" >/dev/null 2>&1; then echo 1; else echo 0; fi; done';

/**
 * Syncs the whole file system holding a folder (`sync --file-system`),
 * through one long-lived shell started at the first sync. Starting `sync`
 * from the server each time would fork the server: a copy of its page tables
 * and a copy-on-write fault on every page it writes next, which cost more
 * than the sync itself (measured: half of the server's CPU while a 512 MiB
 * file went up and down again).
 *
 * One sync runs at a time. Callers that arrive while one runs share the
 * next one, which starts after their writes and so covers them.
 */
export class FileSystemSyncer {
  private child: ChildProcess | undefined;
  private output = '';
  /** Callers of the sync that runs now. */
  private running: Array<(ok: boolean) => void> | undefined;
  /** Callers waiting for the next sync. */
  private next: Array<(ok: boolean) => void> = [];

  constructor(private readonly dir: string) {}

  /** Resolves true once the file system is synced; false when it cannot be synced this way (no such command, or it failed). */
  sync(): Promise<boolean> {
    return new Promise((resolve) => {
      this.next.push(resolve);
      if (!this.running) this.startNext();
    });
  }

  private startNext(): void {
    if (this.next.length === 0) {
      this.running = undefined;
      this.child?.unref();
      return;
    }
    this.running = this.next;
    this.next = [];
    const child = this.child ?? this.spawn();
    if (!child) return this.answer(false);
    // Keeps the process alive while a sync runs; an idle shell never does.
    child.ref();
    child.stdin!.write('\n');
  }

  private spawn(): ChildProcess | undefined {
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', LOOP, 'sh', this.dir], { stdio: ['pipe', 'pipe', 'ignore'] });
    } catch {
      return undefined;
    }
    this.child = child;
    this.output = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => {
      this.output += text;
      for (let nl = this.output.indexOf('\n'); nl >= 0; nl = this.output.indexOf('\n')) {
        const line = this.output.slice(0, nl);
        this.output = this.output.slice(nl + 1);
        this.answer(line === '1');
      }
    });
    // A shell that went away answers the sync in progress with false; the next sync starts another.
    const gone = () => {
      if (this.child !== child) return;
      this.child = undefined;
      if (this.running) this.answer(false);
    };
    child.on('error', gone);
    child.on('exit', gone);
    child.stdin!.on('error', gone);
    // Its pipes never keep the process alive either (they are sockets underneath).
    for (const pipe of [child.stdin, child.stdout]) (pipe as unknown as Socket).unref();
    return child;
  }

  private answer(ok: boolean): void {
    const callers = this.running ?? [];
    this.running = undefined;
    for (const done of callers) done(ok);
    this.startNext();
  }
}
