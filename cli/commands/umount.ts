/**
 * `strata umount MNT`: unmount a strata mount and wait for its driver to exit. A mount whose
 * driver died (the kernel answers ENOTCONN) is unmounted too, and its record removed.
 */
import { resolve } from 'node:path';
import { sys } from '../../driver/native/sys.js';
import { readState, removeState } from '../../driver/runtime.js';
import { errnoName } from '../../driver/fs/errno.js';
import { EXIT_MOUNT_FAILED, UserError } from '../errors.js';
import { mountAt, STRATA_FSTYPE } from '../mountinfo.js';

export interface UmountArgs {
  mountpoint: string;
  lazy: boolean;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function umount(args: UmountArgs): Promise<void> {
  const mountpoint = resolve(args.mountpoint);
  const entry = mountAt(mountpoint);
  if (entry === undefined) throw new UserError(`${mountpoint}: not mounted`, EXIT_MOUNT_FAILED);
  if (entry.fstype !== STRATA_FSTYPE) {
    throw new UserError(`${mountpoint} is not a strata mount (${entry.fstype})`, EXIT_MOUNT_FAILED);
  }
  const state = readState(mountpoint);
  const r = sys.umount2(mountpoint, args.lazy ? sys.MNT_DETACH : 0);
  if (r < 0) {
    const why = errnoName(r) === 'EBUSY' ? 'target is busy' : errnoName(r);
    throw new UserError(`cannot unmount ${mountpoint}: ${why}`, EXIT_MOUNT_FAILED);
  }
  if (state !== null) {
    // The driver exits once the kernel ends the connection; give it a moment to close up.
    const deadline = Date.now() + 10_000;
    while (alive(state.pid) && Date.now() < deadline && !args.lazy) await new Promise((r) => setTimeout(r, 20));
    if (!alive(state.pid)) removeState(mountpoint);
    if (state.storeRoot !== undefined) {
      // An image mount: the store forgets it and drops its writable layer.
      const { withStore } = await import('./images.js');
      await withStore(state.storeRoot, (_images, store) => store.dropMount(mountpoint));
    }
  }
}
