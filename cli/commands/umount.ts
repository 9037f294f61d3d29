/**
 * `strata umount MNT`: unmount a strata mount and wait for its driver to exit. A mount whose
 * driver died (the kernel answers ENOTCONN) is unmounted too, and its record removed.
 */
import { resolve } from 'node:path';
import { readState } from '../../driver/runtime.js';
import { stopMount } from '../../driver/launch.js';
import { errnoName } from '../../driver/fs/errno.js';
import { EXIT_MOUNT_FAILED, UserError } from '../errors.js';
import { mountAt, STRATA_FSTYPE } from '../mountinfo.js';

export interface UmountArgs {
  mountpoint: string;
  lazy: boolean;
}

export async function umount(args: UmountArgs): Promise<void> {
  const mountpoint = resolve(args.mountpoint);
  const entry = mountAt(mountpoint);
  if (entry === undefined) throw new UserError(`${mountpoint}: not mounted`, EXIT_MOUNT_FAILED);
  if (entry.fstype !== STRATA_FSTYPE) {
    throw new UserError(`${mountpoint} is not a strata mount (${entry.fstype})`, EXIT_MOUNT_FAILED);
  }
  const state = readState(mountpoint);
  const r = await stopMount(mountpoint, args.lazy);
  if (r < 0) {
    const why = errnoName(r) === 'EBUSY' ? 'target is busy' : errnoName(r);
    throw new UserError(`cannot unmount ${mountpoint}: ${why}`, EXIT_MOUNT_FAILED);
  }
  if (state?.storeRoot !== undefined) {
    // An image or layer mount: the store forgets it (and drops a writable layer made for it).
    const { withStore } = await import('./images.js');
    await withStore(state.storeRoot, (_images, store) => store.dropMount(mountpoint));
  }
}
