/**
 * The driver: serves one union mount with fuse-native's low-level session until it is
 * unmounted. This process owns the /dev/fuse connection, so it never touches its own mount and
 * never spawns a child (a child would inherit the connection). SIGTERM/SIGINT detach the mount;
 * the process exits when the kernel ends the connection (the last open file closed). SIGUSR1
 * writes the counters to the status file.
 */
import { rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as LL from 'fuse-native/lowlevel/index.js';
import { sys } from './native/sys.js';
import { makeAdapter } from './fs/fuse-ops.js';
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
  const binding = createRequire(import.meta.url)('fuse-native/lowlevel') as typeof LL;
  const adapter = makeAdapter({ union, binding, log: config.debug ? hooks.log : undefined });
  const stats = adapter.stats;

  const options = [
    'fsname=strata',
    'subtype=strata',
    'default_permissions',
    'allow_other',
    ...(stack.upper === null && !config.fuseOptions.includes('ro') ? ['ro'] : []),
    // A container rootfs needs its setuid binaries and device nodes, as on overlay2; libfuse
    // would add nosuid,nodev otherwise. An explicit nosuid/nodev still wins.
    ...(config.fuseOptions.includes('nosuid') ? [] : ['suid']),
    ...(config.fuseOptions.includes('nodev') ? [] : ['dev']),
    ...config.fuseOptions,
  ];

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
    // A mount that had nothing to say leaves no log behind (one per mount would pile up).
    const log = stateFile(config.mountpoint).replace(/\.json$/, '.log');
    if (statSync(log, { throwIfNoEntry: false })?.size === 0) rmSync(log, { force: true });
    process.exit(code);
  };
  const detach = () => {
    // Lazy: the kernel ends the connection when the last open file closes; then we exit.
    const r = sys.umount2(config.mountpoint, sys.MNT_DETACH);
    if (r < 0) finish(0);
  };

  let session: LL.Session;
  try {
    session = binding.mount(config.mountpoint, options, adapter.handlers, adapter.ctx, () => finish(0), {
      attrTimeout: config.attrTimeout,
      entryTimeout: config.cacheTimeout,
      negativeTimeout: config.cacheTimeout,
      maxWrite: 1 << 20,
    });
  } catch (err) {
    closeLayerStack(stack);
    hooks.ready(new Error(`cannot mount ${config.mountpoint}: ${(err as Error).message}`));
    return;
  }
  adapter.attach(session);
  const state: MountState = {
    pid: process.pid,
    mountpoint: config.mountpoint,
    lowers: config.lowers,
    upper: config.upper,
    work: config.work,
    started: new Date().toISOString(),
    ...(config.storeRoot !== undefined ? { storeRoot: config.storeRoot } : {}),
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
}
