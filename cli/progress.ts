/**
 * Byte progress for long commands on stderr: a bar redrawn in place on a terminal, and plain
 * lines (at most one every 5 s, and one at the end) otherwise, so logs stay readable.
 */
import { Transform, type Readable } from 'node:stream';

function human(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export class Progress {
  private done = 0;
  private readonly started = Date.now();
  /** The first line waits one interval: quick commands print nothing. */
  private lastDraw = this.started;
  private drawn = false;
  private readonly tty = process.stderr.isTTY === true;

  constructor(
    private readonly label: string,
    private readonly total: number | null,
  ) {}

  add(n: number): void {
    this.done += n;
    const now = Date.now();
    if (now - this.lastDraw < (this.tty ? 100 : 5000)) return;
    this.lastDraw = now;
    this.draw(false);
  }

  private draw(final: boolean): void {
    this.drawn = true;
    const pct = this.total !== null && this.total > 0 ? Math.min(100, Math.floor((this.done / this.total) * 100)) : null;
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    if (this.tty) {
      const width = 30;
      const bar = pct === null ? '' : '[' + '#'.repeat(Math.round((pct / 100) * width)).padEnd(width, '.') + '] ';
      const of = this.total !== null ? ` / ${human(this.total)}` : '';
      process.stderr.write(`\r${this.label}: ${bar}${human(this.done)}${of} ${secs}s\x1b[K${final ? '\n' : ''}`);
    } else {
      process.stderr.write(`${this.label}: ${human(this.done)}${pct !== null ? ` (${pct}%)` : ''}${final ? `, done in ${secs}s` : ''}\n`);
    }
  }

  finish(): void {
    if (this.drawn || Date.now() - this.started >= 2000) this.draw(true);
  }
}

/** `input`, counted into `progress` as it flows. */
export function counted(input: Readable, progress: Progress): Readable {
  const t = new Transform({
    transform(chunk: Buffer, _enc, done) {
      progress.add(chunk.length);
      done(null, chunk);
    },
  });
  input.on('error', (err) => t.destroy(err));
  return input.pipe(t);
}
