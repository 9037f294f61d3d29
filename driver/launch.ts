/**
 * Starting a mount's driver: one detached process per mount (like fuse-overlayfs), logging to
 * a file under the run directory, and this call returns once the driver says the mount is live.
 * Used by `strata mount` and by the layer store's get().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setPriority } from 'node:os';
import { processRunning } from './proc.js';
import type { MountConfig } from './mount-config.js';
import { projectRoot, sys } from './native/sys.js';
import { readState, removeState, runDir, stateFile } from './runtime.js';

/** The driver did not come up; the message says why (from the driver itself when it could). */
export class LaunchError extends Error {}

/** The bundled entry point (scripts/bundle.mjs), also when this module runs from dist (tests). */
function driverMain(): string {
  return join(projectRoot(), 'dist', 'bundle', 'driver.mjs');
}

const STANDBY_NICE = 19;

/** Driver processes started ahead, waiting for their config on stdin (see driver/main.ts). */
const standby: ChildProcess[] = [];
let standbyWanted = 0;
/** Drivers this process started, by mountpoint: stopMount waits for their exit event. */
const started = new Map<string, ChildProcess>();

/**
 * The environment of a driver process: this one's, without NODE_EXTRA_CA_CERTS, which makes Node
 * parse every root certificate at start (~85 ms here) for a process that never opens TLS.
 */
function driverEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env['NODE_EXTRA_CA_CERTS'];
  return env;
}

function spawnStandby(): ChildProcess {
  mkdirSync(`${runDir()}/mounts`, { recursive: true, mode: 0o700 });
  const logPath = join(runDir(), 'mounts', `standby-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}.log`);
  const log = openSync(logPath, 'a', 0o600);
  const child = spawn(process.execPath, [driverMain(), '--standby', logPath], {
    detached: true,
    env: driverEnv(),
    stdio: ['pipe', log, log, 'pipe'],
  });
  closeSync(log);
  // A spare starts at the lowest priority: it must not slow the build that may never need it.
  // Put to use, it raises itself back (driver/main.ts).
  try {
    if (child.pid !== undefined) setPriority(child.pid, STANDBY_NICE);
  } catch {
    // Exited already: startDriver skips dead spares.
  }
  // Not a reason for this process to stay alive; the pipe's EOF at exit ends the driver.
  child.unref();
  (child.stdin as unknown as { unref?: () => void }).unref?.();
  (child.stdio[3] as unknown as { unref?: () => void }).unref?.();
  child.on('error', () => undefined);
  return child;
}

/**
 * Keep one driver process started ahead from now on, so that each mount costs no process start
 * (a build mounts once per step). The spare one exits with this process.
 */
export function keepDriverReady(count = 1): void {
  standbyWanted = count;
  while (standby.length < standbyWanted) standby.push(spawnStandby());
}

/** Start a detached driver and wait for it to say the mount is live. */
export function startDriver(config: MountConfig): Promise<void> {
  let child: ChildProcess;
  // A spare that died (exit code, or killed by a signal) cannot be used.
  while (standby.length > 0 && (standby[0]!.exitCode !== null || standby[0]!.signalCode !== null)) standby.shift();
  const ready = standby.shift();
  if (ready !== undefined) {
    child = ready;
    // Waited on now: its readiness pipe keeps this process alive until the answer.
    (child.stdio[3] as unknown as { ref?: () => void }).ref?.();
    child.stdin!.end(JSON.stringify(config));
    while (standby.length < standbyWanted) standby.push(spawnStandby());
  } else {
    mkdirSync(`${runDir()}/mounts`, { recursive: true, mode: 0o700 });
    const logPath = stateFile(config.mountpoint).replace(/\.json$/, '.log');
    const log = openSync(logPath, 'a', 0o600);
    child = spawn(process.execPath, [driverMain(), JSON.stringify(config)], {
      detached: true,
      env: driverEnv(),
      stdio: ['ignore', log, log, 'pipe'],
    });
    closeSync(log);
  }
  started.set(config.mountpoint, child);
  child.once('exit', () => started.delete(config.mountpoint));
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  const logPath = stateFile(config.mountpoint).replace(/\.json$/, '.log');
  return new Promise((done, fail) => {
    let said = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new LaunchError(`the driver did not come up within 30 s (log: ${logPath})`));
    }, 30_000);
    pipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => (said += chunk));
    // A driver that died before saying anything (a spare killed while waiting): its pipe may have
    // ended before anyone listened, but its exit is still reported. A second settle is a no-op.
    // 'exit' may come before the pipe's last data: the pipe gets a moment to speak first.
    let settled = false;
    child.once('exit', () => {
      setTimeout(() => {
        if (settled) return;
        clearTimeout(timer);
        fail(new LaunchError(`the driver exited before mounting (log: ${logPath})`));
      }, 500).unref();
    });
    pipe.on('end', () => {
      settled = true;
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



/**
 * Unmount a strata mount and wait (up to 10 s) for its driver to exit, forgetting its record.
 * Answers 0 or the umount's -errno (EBUSY: still in use).
 */
export async function stopMount(mountpoint: string, lazy = false): Promise<number> {
  const state = readState(mountpoint);
  const r = sys.umount2(mountpoint, lazy ? sys.MNT_DETACH : 0);
  if (r < 0) return r;
  const mine = started.get(mountpoint);
  if (mine !== undefined && mine.exitCode === null && !lazy) {
    // A driver of ours: its exit event says when it is gone, no polling.
    // The timer (not unref'd) also keeps this process alive while an unref'd driver exits.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((res) => mine.once('exit', res)), new Promise((res) => (timer = setTimeout(res, 10_000)))]);
    clearTimeout(timer);
  }
  if (state !== null) {
    // The driver exits once the kernel ends the connection; give it a moment to close up.
    const deadline = Date.now() + 10_000;
    while (processRunning(state.pid) && Date.now() < deadline && !lazy) await new Promise((res) => setTimeout(res, 20));
    if (!processRunning(state.pid)) removeState(mountpoint);
  }
  return 0;
}

/**
 * Whether a strata mount is served: something is mounted there and the driver recorded for it
 * still runs. A driver that was killed leaves its mount in the table, answering ENOTCONN.
 */
export function mountServed(mountpoint: string): boolean {
  const state = readState(mountpoint);
  return state !== null && processRunning(state.pid) && mountedPaths().has(mountpoint);
}

/** Paths with something mounted on them now (/proc/self/mounts, octal escapes decoded). */
export function mountedPaths(): Set<string> {
  return new Set(
    readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((line) => (line.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))),
  );
}
