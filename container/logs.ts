/**
 * A container's output log in Docker's json-file format: one JSON object per line of output,
 * `{"log": "...\n", "stream": "stdout"|"stderr", "time": "..."}`, appended as the process writes
 * and replayed by `strata logs` to the stream each line came from.
 */
import { createReadStream, openSync, writeSync, closeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/** Docker's json-file splits longer lines into entries of this size. */
const MAX_ENTRY = 16 * 1024;

/** Appends one stream's lines to the log; a line without its newline yet waits for the rest. */
class LogStream extends Writable {
  private pending = '';
  // A character split across two reads of the pipe is joined, not garbled.
  private readonly decoder = new StringDecoder('utf8');
  private echoing = true;

  constructor(
    private readonly fd: number,
    private readonly stream: 'stdout' | 'stderr',
    private readonly echo: Writable | undefined,
  ) {
    super({ decodeStrings: false });
  }

  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.echo !== undefined && this.echoing) this.echo.write(chunk);
    const text = this.pending + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    const lines = text.split('\n');
    this.pending = lines.pop()!;
    try {
      const entries = lines.map((line) => line + '\n');
      while (this.pending.length >= MAX_ENTRY) {
        entries.push(this.pending.slice(0, MAX_ENTRY));
        this.pending = this.pending.slice(MAX_ENTRY);
      }
      this.append(entries);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  /** The reader of the echo went away (`strata run IMG cmd | head`): the log goes on alone. */
  stopEcho(): void {
    this.echoing = false;
  }

  /** The last line even without a newline, once the process is gone. */
  flushPending(): void {
    this.pending += this.decoder.end();
    if (this.pending !== '') this.append([this.pending]);
    this.pending = '';
  }

  /** One write for all the entries of a chunk (a chatty process sends thousands of lines at once). */
  private append(logs: string[]): void {
    if (logs.length === 0) return;
    const time = new Date().toISOString();
    writeSync(this.fd, logs.map((log) => JSON.stringify({ log, stream: this.stream, time }) + '\n').join(''));
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
    // A closed pipe on our own output stops the echo, never the container or its bookkeeping.
    echo?.stdout.on('error', () => this.stdout.stopEcho());
    echo?.stderr.on('error', () => this.stderr.stopEcho());
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
