/** `strata status MNT`: the driver's counters (dentry cache hits and misses, copy-ups). */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { readState, statusFile } from '../../driver/runtime.js';
import { UserError } from '../errors.js';

export async function status(args: { mountpoint: string }): Promise<void> {
  const mountpoint = resolve(args.mountpoint);
  const state = readState(mountpoint);
  if (state === null) throw new UserError(`${mountpoint}: no strata driver is recorded for it`);
  const file = statusFile(mountpoint);
  const before = mtime(file);
  try {
    process.kill(state.pid, 'SIGUSR1');
  } catch {
    throw new UserError(`${mountpoint}: its driver (pid ${state.pid}) is not running`);
  }
  const deadline = Date.now() + 5000;
  while (mtime(file) === before) {
    if (Date.now() > deadline) throw new UserError(`${mountpoint}: the driver did not answer`);
    await new Promise((r) => setTimeout(r, 10));
  }
  process.stdout.write(readFileSync(file, 'utf8'));
}

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}
