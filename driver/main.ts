/**
 * Entry point of a driver process started by `strata mount`: the mount config arrives as JSON in
 * argv[2]; readiness ("ok" or "error <message>") is written to fd 3, which the CLI waits on.
 * Output goes wherever the CLI pointed stdout/stderr (a log file, or the terminal with --foreground).
 */
import { closeSync, writeSync } from 'node:fs';
import type { MountConfig } from './mount-config.js';
import { serve } from './server.js';

// Enough threadpool workers for parallel reads, writes and copy-ups of one mount.
process.env['UV_THREADPOOL_SIZE'] ??= '8';

const config = JSON.parse(process.argv[2] ?? '{}') as MountConfig;
const notify = (msg: string) => {
  try {
    writeSync(3, msg + '\n');
    closeSync(3);
  } catch {
    // No readiness pipe: started by hand.
  }
};
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
