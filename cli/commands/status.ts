/** `strata status MNT`: the driver's counters (dentry cache hits and misses, copy-ups). */
import { resolve } from 'node:path';
import { askDriverStats } from '../../driver/driver-stats.js';
import { processRunning } from '../../driver/proc.js';
import { readState } from '../../driver/runtime.js';
import { UserError } from '../errors.js';

export async function status(args: { mountpoint: string }): Promise<void> {
  const mountpoint = resolve(args.mountpoint);
  const state = readState(mountpoint);
  if (state === null) throw new UserError(`${mountpoint}: no strata driver is recorded for it`);
  if (!processRunning(state.pid)) throw new UserError(`${mountpoint}: its driver (pid ${state.pid}) is not running`);
  const answer = (await askDriverStats([mountpoint], 5000)).get(mountpoint);
  if (answer === undefined) throw new UserError(`${mountpoint}: the driver did not answer`);
  process.stdout.write(answer);
}
