/**
 * Entry point of a driver process started by `strata mount`: the mount config arrives as JSON in
 * argv[2]; readiness ("ok" or "error <message>") is written to fd 3, which the CLI waits on.
 * Output goes wherever the CLI pointed stdout/stderr (a log file, or the terminal with --foreground).
 *
 * With `--standby` the process starts, loads everything, and only then reads its config from
 * stdin: a builder keeps one such driver ready so that a step's mount costs no process start.
 * Its log file is renamed to the mount's once the config is known. EOF on stdin without a config
 * (the builder is gone) ends it.
 */
import { closeSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { setPriority } from 'node:os';
import type { MountConfig } from './mount-config.js';
import { serve } from './server.js';
import { stateFile } from './runtime.js';

// Enough threadpool workers for parallel reads, writes and copy-ups of one mount.
process.env['UV_THREADPOOL_SIZE'] ??= '8';

const notify = (msg: string) => {
  try {
    writeSync(3, msg + '\n');
    closeSync(3);
  } catch {
    // No readiness pipe: started by hand.
  }
};
function start(config: MountConfig): void {
serve(config, {
  ready(err) {
    if (err) {
      notify('error ' + err.message);
      process.stderr.write(`strata: ${err.message}\n`);
      process.exit(1);
    }
    notify('ok');
  },
  log(line) {
    process.stderr.write(line + '\n');
  },
});
}

/**
 * A spare starts niced (driver/launch.ts); serving a mount it runs at normal priority. Linux's
 * nice value is per thread, and threads made while niced inherit it: every one is raised.
 */
function normalPriority(): void {
  let tids: string[] = [];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    // No /proc: the main thread at least.
    tids = [String(process.pid)];
  }
  for (const tid of tids) {
    try {
      setPriority(Number(tid), 0);
    } catch {
      // A thread that ended meanwhile.
    }
  }
}

if (process.argv[2] === '--standby') {
  const standbyLog = process.argv[3];
  let input = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (c: string) => (input += c));
  process.stdin.on('end', () => {
    if (input.trim() === '') {
      // Never used: nothing to keep.
      if (standbyLog !== undefined) rmSync(standbyLog, { force: true });
      process.exit(0);
    }
    const config = JSON.parse(input) as MountConfig;
    normalPriority();
    if (standbyLog !== undefined) {
      try {
        renameSync(standbyLog, stateFile(config.mountpoint).replace(/\.json$/, '.log'));
      } catch {
        // The log keeps its standby name.
      }
    }
    start(config);
  });
} else {
  start(JSON.parse(process.argv[2] ?? '{}') as MountConfig);
}
