/**
 * Starting a mount's driver: one detached process per mount (like fuse-overlayfs), logging to
 * a file under the run directory, and this call returns once the driver says the mount is live.
 * Used by `strata mount` and by the layer store's get().
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MountConfig } from './mount-config.js';
import { projectRoot, sys } from './native/sys.js';
import { readState, removeState, runDir, stateFile } from './runtime.js';

/** The driver did not come up; the message says why (from the driver itself when it could). */
export class LaunchError extends Error {}

/** Start a detached driver and wait for it to say the mount is live. */
export function startDriver(config: MountConfig): Promise<void> {
  // The compiled entry point, also when this module runs from source (tests).
  const main = join(projectRoot(), 'dist', 'driver', 'main.js');
  mkdirSync(`${runDir()}/mounts`, { recursive: true, mode: 0o700 });
  const logPath = stateFile(config.mountpoint).replace(/\.json$/, '.log');
  const log = openSync(logPath, 'a', 0o600);
  const child = spawn(process.execPath, [main, JSON.stringify(config)], {
    detached: true,
    stdio: ['ignore', log, log, 'pipe'],
  });
  closeSync(log);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  return new Promise((done, fail) => {
    let said = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new LaunchError(`the driver did not come up within 30 s (log: ${logPath})`));
    }, 30_000);
    pipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => (said += chunk));
    pipe.on('end', () => {
      clearTimeout(timer);
      const line = said.trim();
      if (line === 'ok') {
        child.unref();
        (pipe as unknown as { destroy(): void }).destroy();
        done();
      } else if (line.startsWith('error ')) {
        fail(new LaunchError(line.slice(6)));
      } else {
        fail(new LaunchError(`the driver exited before mounting (log: ${logPath})`));
      }
    });
  });
}


function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Unmount a strata mount and wait (up to 10 s) for its driver to exit, forgetting its record.
 * Answers 0 or the umount's -errno (EBUSY: still in use).
 */
export async function stopMount(mountpoint: string, lazy = false): Promise<number> {
  const state = readState(mountpoint);
  const r = sys.umount2(mountpoint, lazy ? sys.MNT_DETACH : 0);
  if (r < 0) return r;
  if (state !== null) {
    // The driver exits once the kernel ends the connection; give it a moment to close up.
    const deadline = Date.now() + 10_000;
    while (alive(state.pid) && Date.now() < deadline && !lazy) await new Promise((res) => setTimeout(res, 20));
    if (!alive(state.pid)) removeState(mountpoint);
  }
  return 0;
}

/** Paths with something mounted on them now (/proc/self/mounts, octal escapes decoded). */
export function mountedPaths(): Set<string> {
  return new Set(
    readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((line) => (line.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))),
  );
}
