import { execFileSync } from 'node:child_process';
import net from 'node:net';

/*
 * A small internet for tests: a network namespace joined to the host by a
 * veth pair, with a bandwidth limit (tc tbf) each way, and a TCP relay on the
 * host end that adds latency, cuts connections or silently drops everything.
 */

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

let counter = 0;

/** A network namespace reachable from the host at `hostAddress`; its own address is `address`. */
export class NetNamespace {
  private constructor(
    readonly name: string,
    private readonly hostIf: string,
    readonly hostAddress: string,
    readonly address: string,
  ) {}

  /**
   * Creates the namespace and its link, limited to `mbit` each way. Throws
   * with the reason when this machine does not allow it (not root, no ip).
   */
  static create(mbit: number): NetNamespace {
    const id = `${process.pid % 10000}${counter++}`;
    const net3 = `10.${200 + (counter % 50)}.${process.pid % 250}`;
    const ns = new NetNamespace(`keepsync${id}`, `ksh${id}`, `${net3}.1`, `${net3}.2`);
    const inner = `ksn${id}`;
    ip('netns', 'add', ns.name);
    try {
      ip('link', 'add', ns.hostIf, 'type', 'veth', 'peer', 'name', inner);
      ip('link', 'set', inner, 'netns', ns.name);
      ip('addr', 'add', `${ns.hostAddress}/24`, 'dev', ns.hostIf);
      ip('link', 'set', ns.hostIf, 'up');
      ns.exec('ip', 'addr', 'add', `${ns.address}/24`, 'dev', inner);
      ns.exec('ip', 'link', 'set', inner, 'up');
      ns.exec('ip', 'link', 'set', 'lo', 'up');
      // tbf on each end's egress: host → namespace is the device's download, the other way its upload.
      const tbf = ['root', 'tbf', 'rate', `${mbit}mbit`, 'burst', '64kb', 'latency', '300ms'];
      execFileSync('tc', ['qdisc', 'add', 'dev', ns.hostIf, ...tbf], { stdio: 'pipe' });
      ns.exec('tc', 'qdisc', 'add', 'dev', inner, ...tbf);
    } catch (err) {
      ns.remove();
      throw err;
    }
    return ns;
  }

  /** The prefix that runs a command inside the namespace. */
  get prefix(): string[] {
    return ['ip', 'netns', 'exec', this.name];
  }

  exec(...cmd: string[]): string {
    return ip('netns', 'exec', this.name, ...cmd);
  }

  /** Deletes the namespace (and with it both ends of the link). */
  remove(): void {
    try {
      ip('netns', 'del', this.name);
    } catch {
      // already gone
    }
    try {
      ip('link', 'del', this.hostIf);
    } catch {
      // went with the namespace
    }
  }
}

/** Bytes held per direction in the relay before it stops reading (TCP then slows the sender). */
const RELAY_BUFFER = 1024 * 1024;

/**
 * A TCP relay from `host:port` (port 0 picks one) to 127.0.0.1:`target`,
 * delaying every byte by `delayMs` each way, plus up to `jitterMs` more for
 * each piece read (random from `seed`; a piece never overtakes the one
 * before it, as in TCP). `blackhole` silently drops everything both ways
 * while keeping connections open; `cut` closes every connection and refuses
 * new ones until `restore`.
 */
export class Relay {
  target = 0;
  delayMs: number;
  jitterMs = 0;
  private random: () => number = Math.random;
  /** While set, bytes toward the server wait in the relay (nothing is lost); `release` lets them go, in order. */
  holdUp = false;
  /** Bytes held by `holdUp` right now. */
  heldUp = 0;
  /** The same toward the device: the server's answers wait in the relay until `release`. */
  holdDown = false;
  heldDown = 0;
  private readonly releasers = new Set<() => void>();
  blackhole = false;
  /**
   * While set, each new connection is cut (both sockets destroyed) once a
   * number of bytes, drawn between `min` and `max` from its seeded
   * generator, has passed through it either way: a cut at a random byte
   * offset, anywhere in a frame.
   */
  private cutAfter?: { min: number; max: number; random: () => number };
  /** Connections cut by `cutAfter`. */
  cuts = 0;
  private refusing = false;
  readonly counts = { up: 0, down: 0, connections: 0 };
  /** When the byte counts grew: [ms since the epoch, bytes so far] per direction. */
  readonly timeline: Record<'up' | 'down', Array<[number, number]>> = { up: [], down: [] };
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;

  private constructor(delayMs: number) {
    this.delayMs = delayMs;
    this.server = net.createServer((client) => this.accept(client));
  }

  static async listen(host: string, delayMs: number, jitter?: { jitterMs: number; seed: number }): Promise<Relay> {
    const relay = new Relay(delayMs);
    if (jitter) {
      relay.jitterMs = jitter.jitterMs;
      relay.random = seeded(jitter.seed);
    }
    await new Promise<void>((resolve, reject) => {
      relay.server.once('error', reject);
      relay.server.listen(0, host, () => resolve());
    });
    return relay;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  private accept(client: net.Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    this.counts.connections++;
    const upstream = net.connect(this.target, '127.0.0.1');
    const c = this.cutAfter;
    const budget = { left: c ? c.min + Math.floor(c.random() * (c.max - c.min + 1)) : Infinity, cut: false };
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('error', () => {});
      s.on('close', (hadError) => {
        this.sockets.delete(s);
        // A blackholed link carries no news of a closed connection either.
        if (hadError && !this.blackhole) {
          client.destroy();
          upstream.destroy();
        }
      });
    }
    const cut = () => {
      if (budget.cut) return;
      budget.cut = true;
      this.cuts++;
      client.destroy();
      upstream.destroy();
    };
    this.forward(client, upstream, 'up', budget, cut);
    this.forward(upstream, client, 'down', budget, cut);
  }

  /** Cuts every new connection after a random number of bytes between `min` and `max` (seeded); `undefined` stops it. */
  cutAfterBytes(range: { min: number; max: number; seed: number } | undefined): void {
    this.cutAfter = range && { min: range.min, max: range.max, random: seeded(range.seed) };
  }

  private forward(src: net.Socket, dst: net.Socket, dir: 'up' | 'down', budget: { left: number; cut: boolean } = { left: Infinity, cut: false }, cut: () => void = () => {}): void {
    let held = 0;
    const resumeIfRoom = () => {
      if (src.isPaused() && held < RELAY_BUFFER / 2 && dst.writableLength < RELAY_BUFFER) src.resume();
    };
    // One queue per direction, due times never decreasing, emptied in order by one timer:
    // timers of different lengths may fire out of the order they were set in.
    type Piece = { buf?: Buffer; end?: true };
    const queue: Array<Piece & { at: number }> = [];
    let lastAt = 0;
    let timer: NodeJS.Timeout | undefined;
    const deliver = (p: Piece) => {
      if (p.end) {
        if (!this.blackhole) dst.end();
        return;
      }
      let buf = p.buf!;
      held -= buf.length;
      if (!this.blackhole && !dst.destroyed && !budget.cut) {
        // Past the connection's budget: its last bytes go out, then the cut.
        const last = buf.length >= budget.left;
        if (last) buf = buf.subarray(0, budget.left);
        budget.left -= buf.length;
        this.counts[dir] += buf.length;
        this.timeline[dir].push([Date.now(), this.counts[dir]]);
        if (last) {
          dst.write(buf, cut);
          return;
        }
        dst.write(buf);
        if (dst.writableLength >= RELAY_BUFFER) src.pause();
      }
      resumeIfRoom();
    };
    const pump = () => {
      timer = undefined;
      while (queue.length > 0 && queue[0].at <= Date.now()) deliver(queue.shift()!);
      if (queue.length > 0) timer = setTimeout(pump, queue[0].at - Date.now());
    };
    const send = (p: Piece) => {
      lastAt = Math.max(lastAt, Date.now() + this.delayMs + Math.floor(this.random() * (this.jitterMs + 1)));
      queue.push({ ...p, at: lastAt });
      timer ??= setTimeout(pump, Math.max(0, queue[0].at - Date.now()));
    };
    // Held back by `holdUp` (toward the server) or `holdDown` (toward the device), sent in order on `release`.
    const waiting: Piece[] = [];
    const count = (n: number) => {
      if (dir === 'up') this.heldUp += n;
      else this.heldDown += n;
    };
    const hold = (p: Piece) => {
      if (!(dir === 'up' ? this.holdUp : this.holdDown) && waiting.length === 0) return false;
      waiting.push(p);
      count(p.buf?.length ?? 0);
      return true;
    };
    const release = () => {
      for (const p of waiting.splice(0)) {
        count(-(p.buf?.length ?? 0));
        send(p);
      }
    };
    this.releasers.add(release);
    src.on('close', () => this.releasers.delete(release));
    src.on('data', (buf: Buffer) => {
      if (this.blackhole) return;
      held += buf.length;
      if (held > RELAY_BUFFER) src.pause();
      if (!hold({ buf })) send({ buf });
    });
    dst.on('drain', resumeIfRoom);
    // The end of the stream travels behind its last bytes.
    src.on('end', () => {
      if (this.blackhole) return;
      if (!hold({ end: true })) send({ end: true });
    });
  }

  /**
   * Bytes per second forwarded `dir` while the count went from `from` + 10% of
   * `size` to `from` + 90%: the steady rate of a transfer of `size` bytes that
   * started when the count was `from`, without its start and end.
   */
  steadyRate(dir: 'up' | 'down', from: number, size: number): number {
    const at = (bytes: number) => this.timeline[dir].find(([, b]) => b >= bytes)?.[0];
    const t1 = at(from + 0.1 * size);
    const t2 = at(from + 0.9 * size);
    if (t1 === undefined || t2 === undefined || t2 === t1) return 0;
    return (0.8 * size * 1000) / (t2 - t1);
  }

  /** Closes every connection and refuses new ones until `restore`. */
  cut(): void {
    this.refusing = true;
    for (const s of this.sockets) s.destroy();
  }

  /** Lets the bytes held by `holdUp` and `holdDown` go, in order, and holds no more. */
  release(): void {
    this.holdUp = false;
    this.holdDown = false;
    for (const r of this.releasers) r();
  }

  restore(): void {
    this.refusing = false;
    this.blackhole = false;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A small seeded generator (mulberry32): numbers in [0, 1). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
