/**
 * The driver: serves one union mount with fuse-native until it is unmounted. This process owns
 * the /dev/fuse connection, so it never touches its own mount and never spawns a child (a child
 * would inherit the connection). SIGTERM/SIGINT detach the mount; the process exits when the
 * kernel ends the connection (the last open file closed). SIGUSR1 writes the counters to the
 * status file.
 */
import Fuse from 'fuse-native';
import { sys } from './native/sys.js';
import { makeOps } from './fs/fuse-ops.js';
import { closeLayerStack, openLayerStack } from './fs/layers.js';
import { Union } from './fs/union.js';
import type { MountConfig } from './mount-config.js';
import { removeState, stateFile, statusFile, writeAtomically, type MountState } from './runtime.js';

export interface ServeHooks {
  /** Called once the mount is live (or failed to come up). */
  ready(err: Error | null): void;
  log(line: string): void;
}

export function serve(config: MountConfig, hooks: ServeHooks): void {
  // The kernel already applied the caller's umask to every mode it sends: ours must not apply again.
  process.umask(0);
  let stack;
  try {
    stack = openLayerStack({ lowers: config.lowers, upper: config.upper, work: config.work });
  } catch (err) {
    hooks.ready(err as Error);
    return;
  }
  const union = new Union(stack, { maxCacheEntries: config.cacheEntries });
  let fuse: Fuse | null = null;
  const caller = () => {
    const ctx = fuse!.context;
    return { uid: ctx[0]!, gid: ctx[1]! };
  };
  const { ops, stats } = makeOps({ union, caller, log: config.debug ? hooks.log : undefined });

  const t = String(config.cacheTimeout);
  const extraOptions = [
    'fsname=strata',
    'subtype=strata',
    'default_permissions',
    'allow_other',
    'use_ino',
    'big_writes',
    'max_write=131072',
    'kernel_cache',
    `entry_timeout=${t}`,
    `attr_timeout=${config.attrTimeout}`,
    `negative_timeout=${t}`,
    ...(stack.upper === null && !config.fuseOptions.includes('ro') ? ['ro'] : []),
    // A container rootfs needs its setuid binaries and device nodes, as on overlay2; libfuse
    // would add nosuid,nodev otherwise. An explicit nosuid/nodev still wins.
    ...(config.fuseOptions.includes('nosuid') ? [] : ['suid']),
    ...(config.fuseOptions.includes('nodev') ? [] : ['dev']),
    ...config.fuseOptions,
  ];
  fuse = new Fuse(config.mountpoint, ops, { timeout: false, nullPath: true, extraOptions });

  const writeStatus = () => {
    try {
      writeAtomically(statusFile(config.mountpoint), JSON.stringify({ pid: process.pid, ...stats() }, null, 2) + '\n');
    } catch (err) {
      hooks.log(`strata: cannot write status: ${(err as Error).message}`);
    }
  };
  let finished = false;
  const finish = (code: number) => {
    if (finished) return;
    finished = true;
    if (config.debug) hooks.log(`strata: stats ${JSON.stringify(stats())}`);
    removeState(config.mountpoint);
    closeLayerStack(stack);
    process.exit(code);
  };
  const detach = () => {
    // Lazy: the kernel ends the connection when the last open file closes; then we exit.
    const r = sys.umount2(config.mountpoint, sys.MNT_DETACH);
    if (r < 0) finish(0);
  };

  fuse.on('loopExit', () => finish(0));
  fuse.mount((err: Error | null) => {
    if (err) {
      closeLayerStack(stack);
      hooks.ready(new Error(`cannot mount ${config.mountpoint}: ${err.message}`));
      return;
    }
    const state: MountState = {
      pid: process.pid,
      mountpoint: config.mountpoint,
      lowers: config.lowers,
      upper: config.upper,
      work: config.work,
      started: new Date().toISOString(),
    };
    try {
      writeAtomically(stateFile(config.mountpoint), JSON.stringify(state, null, 2) + '\n');
    } catch (e) {
      hooks.log(`strata: cannot record the mount: ${(e as Error).message}`);
    }
    process.on('SIGTERM', detach);
    process.on('SIGINT', detach);
    process.on('SIGHUP', detach);
    process.on('SIGUSR1', writeStatus);
    hooks.ready(null);
  });
}
