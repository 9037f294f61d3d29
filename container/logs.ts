/**
 * A container's output log in Docker's json-file format: one JSON object per line of output,
 * `{"log": "...\n", "stream": "stdout"|"stderr", "time": "..."}`, appended as the process writes
 * and replayed by `strata logs` to the stream each line came from.
 */
import { createReadStream, openSync, writeSync, closeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';

/** Appends one stream's lines to the log; a line without its newline yet waits for the rest. */
class LogStream extends Writable {
  private pending = '';

  constructor(
    private readonly fd: number,
    private readonly stream: 'stdout' | 'stderr',
    private readonly echo: Writable | undefined,
  ) {
    super({ decodeStrings: false });
  }

  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.echo?.write(chunk);
    const text = this.pending + (typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
    const lines = text.split('\n');
    this.pending = lines.pop()!;
    try {
      for (const line of lines) this.append(line + '\n');
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  /** The last line even without a newline, once the process is gone. */
  flushPending(): void {
    if (this.pending !== '') this.append(this.pending);
    this.pending = '';
  }

  private append(log: string): void {
    writeSync(this.fd, JSON.stringify({ log, stream: this.stream, time: new Date().toISOString() }) + '\n');
  }
}

export class LogWriter {
  private readonly fd: number;
  readonly stdout: LogStream;
  readonly stderr: LogStream;

  /** `echo`: also write the output there as it comes (an attached run). */
  constructor(path: string, echo?: { stdout: Writable; stderr: Writable }) {
    this.fd = openSync(path, 'a', 0o640);
    this.stdout = new LogStream(this.fd, 'stdout', echo?.stdout);
    this.stderr = new LogStream(this.fd, 'stderr', echo?.stderr);
  }

  close(): void {
    this.stdout.flushPending();
    this.stderr.flushPending();
    closeSync(this.fd);
  }
}

/** Replay the log to `out` and `err`; a damaged line is skipped, not fatal. */
export async function replayLog(path: string, out: Writable, err: Writable): Promise<void> {
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const line of lines) {
    let rec: { log?: unknown; stream?: unknown };
    try {
      rec = JSON.parse(line) as { log?: unknown; stream?: unknown };
    } catch {
      continue;
    }
    if (typeof rec.log !== 'string') continue;
    const target = rec.stream === 'stderr' ? err : out;
    if (!target.write(rec.log)) await new Promise((r) => target.once('drain', r));
  }
}
