/**
 * `strata mount`: validate the layers and the mountpoint, start one driver process for the
 * mount, and return once the mount is live. With --foreground this process serves the mount
 * itself, logging to stderr, until SIGINT/SIGTERM.
 */
import { mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { MountOptionError, parseOptionStrings, splitLowerdirs, type MountConfig } from '../../driver/mount-config.js';
import { LaunchError, startDriver as launch } from '../../driver/launch.js';
import { EXIT_MOUNT_FAILED, UserError } from '../errors.js';
import { mountAt } from '../mountinfo.js';

export interface MountArgs {
  mountpoint: string;
  lower?: string | undefined;
  upper?: string | undefined;
  work?: string | undefined;
  options: string[];
  foreground: boolean;
  debug: boolean;
  /** The upper and work directories are made right after the config is checked. */
  precreated?: boolean;
}

function isDir(path: string, what: string): void {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(code === 'ENOENT' ? `${what} ${path} does not exist` : `${what} ${path}: ${(err as Error).message}`);
  }
  if (!st.isDirectory()) throw new UserError(`${what} ${path} is not a directory`);
}

function within(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith('/') ? outer : outer + '/');
}

/** Turn command-line arguments into a checked mount config; throws UserError. */
export function buildConfig(args: MountArgs): MountConfig {
  let parsed;
  try {
    parsed = parseOptionStrings(args.options);
  } catch (err) {
    if (err instanceof MountOptionError) throw new UserError(err.message);
    throw err;
  }
  const lowers = (args.lower !== undefined ? splitLowerdirs(args.lower) : parsed.lowers ?? []).map((p) => resolve(p));
  const upperArg = args.upper ?? parsed.upper;
  const workArg = args.work ?? parsed.work;
  if (lowers.length === 0) throw new UserError('no lower layers: give --lower L1:L2 or -o lowerdir=L1:L2');
  if ((upperArg === undefined) !== (workArg === undefined)) {
    throw new UserError('an upper directory needs a work directory, and the reverse (--upper U --work W)');
  }
  const mountpoint = resolve(args.mountpoint);
  for (const l of lowers) isDir(l, 'lower layer');
  const upper = upperArg === undefined ? undefined : resolve(upperArg);
  const work = workArg === undefined ? undefined : resolve(workArg);
  if (upper !== undefined && work !== undefined && args.precreated !== true) {
    isDir(upper, 'upper directory');
    isDir(work, 'work directory');
    if (statSync(upper).dev !== statSync(work).dev) {
      throw new UserError(`upper ${upper} and work ${work} must be on the same filesystem`);
    }
    if (within(upper, work) || within(work, upper)) {
      throw new UserError('the upper and work directories must not be inside one another');
    }
  }
  isDir(mountpoint, 'mountpoint');
  const existing = mountAt(mountpoint);
  if (existing !== undefined) {
    throw new UserError(`${mountpoint} is already a mount point (${existing.fstype})`, EXIT_MOUNT_FAILED);
  }
  return {
    mountpoint,
    lowers,
    upper,
    work,
    fuseOptions: parsed.fuseOptions,
    cacheTimeout: parsed.cacheTimeout ?? 1,
    attrTimeout: parsed.attrTimeout ?? 1,
    cacheEntries: parsed.cacheEntries ?? 500_000,
    debug: args.debug,
  };
}

export async function mount(args: MountArgs): Promise<void> {
  const config = buildConfig(args);
  if (args.foreground) {
    const { serve } = await import('../../driver/server.js');
    await new Promise<void>((done, fail) => {
      serve(config, {
        ready: (err) => (err ? fail(new UserError(err.message, EXIT_MOUNT_FAILED)) : done()),
        log: (line) => process.stderr.write(line + '\n'),
      });
    });
    process.stderr.write(`strata: serving ${config.mountpoint} (Ctrl-C to unmount)\n`);
    return new Promise(() => undefined);
  }
  await startDriver(config);
}

/** Start a detached driver; its failures are the user's to see, with mount(8)'s exit code. */
async function startDriver(config: MountConfig): Promise<void> {
  try {
    await launch(config);
  } catch (err) {
    if (err instanceof LaunchError) throw new UserError(err.message, EXIT_MOUNT_FAILED);
    throw err;
  }
}

export interface MountImageArgs {
  root?: string | undefined;
  image: string;
  mountpoint?: string | undefined;
  rw: boolean;
  options: string[];
  debug: boolean;
}

/** `:` and `\` in a layer path, escaped for the lowerdir list. */
function escapeLower(p: string): string {
  return p.replace(/[\\:,]/g, (c) => '\\' + c);
}

/**
 * `strata mount IMAGE [MNT] [--rw]`: the image's layers, read-only, or under a new writable layer
 * that `strata umount` discards. Prints the mountpoint.
 */
export async function mountImage(a: MountImageArgs): Promise<void> {
  const { withStore } = await import('./images.js');
  await withStore(a.root, async (images, store) => {
    const img = await images.resolve(a.image);
    const top = img.layers[img.layers.length - 1] ?? null;
    const lowers = top === null ? [store.emptyDir()] : await store.lowerDirs(top);
    const { randomBytes } = await import('node:crypto');
    const tag = randomBytes(4).toString('hex');
    let mountpoint: string;
    if (a.mountpoint !== undefined) mountpoint = resolve(a.mountpoint);
    else {
      mountpoint = `${store.root}/mnt/${img.id.slice(7, 19)}-${tag}`;
      mkdirSync(mountpoint, { recursive: true, mode: 0o755 });
    }
    const rwLayer = a.rw ? `rw-${img.id.slice(7, 19)}-${tag}` : null;
    const config = buildConfig({
      mountpoint,
      lower: lowers.map(escapeLower).join(':'),
      upper: rwLayer === null ? undefined : store.diffDir(rwLayer),
      work: rwLayer === null ? undefined : `${store.layerDir(rwLayer)}/work`,
      options: a.options,
      foreground: false,
      debug: a.debug,
      precreated: rwLayer !== null,
    });
    // Recorded before the driver starts: a crash in between leaves a record check reports.
    const record = { mountpoint, image: img.id, rwLayer, refs: 1, layer: top };
    if (rwLayer !== null) await store.createReadWrite(rwLayer, top, record);
    else await store.addMount(record);
    try {
      await startDriver({ ...config, storeRoot: store.root });
    } catch (err) {
      await store.dropMount(mountpoint);
      throw err;
    }
    process.stdout.write(mountpoint + '\n');
  });
}
