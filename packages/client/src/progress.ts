/**
 * Shows what a long sync is doing: on a terminal one line redrawn in place,
 * otherwise a line every few seconds. Quiet for short work.
 */
export class Progress {
  private upBytes = 0;
  private downBytes = 0;
  private filesUp = 0;
  private filesDown = 0;
  private totalUp = 0;
  private totalDown = 0;
  private lastDraw = 0;
  private started = 0;
  private drawn = false;
  private active = false;

  constructor(private readonly out: NodeJS.WriteStream | undefined = process.stderr, private readonly enabled = true) {}

  begin(filesUp: number, filesDown: number): void {
    this.totalUp = filesUp;
    this.totalDown = filesDown;
    this.filesUp = this.filesDown = this.upBytes = this.downBytes = 0;
    this.started = Date.now();
    this.active = true;
  }

  up(bytes: number): void {
    this.upBytes += bytes;
    this.draw();
  }
  down(bytes: number): void {
    this.downBytes += bytes;
    this.draw();
  }
  fileUp(n = 1): void {
    this.filesUp += n;
    this.draw();
  }
  fileDown(n = 1): void {
    this.filesDown += n;
    this.draw();
  }

  private draw(force = false): void {
    if (!this.enabled || !this.out || !this.active) return;
    const now = Date.now();
    const tty = this.out.isTTY === true;
    if (!force && (now - this.started < 1000 || now - this.lastDraw < (tty ? 200 : 3000))) return;
    this.lastDraw = now;
    const line = `syncing: up ${this.filesUp}/${this.totalUp} files (${mib(this.upBytes)}), down ${this.filesDown}/${this.totalDown} files (${mib(this.downBytes)})`;
    this.out.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    this.drawn = true;
  }

  /** Ends the display (a final line when anything was shown). */
  end(): void {
    if (this.drawn && this.active) {
      this.draw(true);
      if (this.out?.isTTY) this.out.write('\n');
    }
    this.drawn = false;
    this.active = false;
  }
}

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
