/**
 * Run one process in a container with runc, the OCI runtime Docker uses: a bundle directory with
 * the generated config.json, `runc run`, the process's output streamed to the caller, and its exit
 * status returned. The container never outlives the call: on an interrupt it is killed and
 * deleted, and the bundle is removed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants } from 'node:os';
import type { Writable } from 'node:stream';
import type { EtcFile } from './etc-files.js';
import { ociSpec, type ContainerSpec } from './spec.js';

export class RuntimeError extends Error {}

/** runc's default state root (`runc --root`), where it keeps a container until deleted. */
const RUNC_STATE = '/run/runc';

/** Where the process's output goes, and whether it reads this process's stdin. */
export type RunStdio =
  | { stdout: Writable; stderr: Writable; stdin: 'ignore' | 'inherit' }
  /** This process's own stdio: with a terminal spec, runc makes the pty and relays it. */
  | 'inherit';

export interface RunOptions {
  /** Where the bundle directory is made (a store's tmp/). */
  bundleParent: string;
  /** runc's container id: unique on this machine. */
  id: string;
  stdio: RunStdio;
  /**
   * Files made for this run and bind-mounted over these paths (Docker's /etc/hostname, /etc/hosts
   * and /etc/resolv.conf): what the process writes to them is discarded with the bundle.
   */
  files?: EtcFile[];
  /**
   * SIGINT or SIGTERM to this process: 'kill' ends the container (a build step must not outlive
   * an interrupted build); 'forward' passes the signal to runc, which hands it to the container's
   * process, as `docker run` does.
   */
  onSignal?: 'kill' | 'forward';
  /** Told runc's pid once it runs. */
  started?: (pid: number) => void;
}

/** Exit status of the container's process (128 + signal when killed by one). */
export async function runContainer(spec: ContainerSpec, opts: RunOptions): Promise<number> {
  const bundle = join(opts.bundleParent, `run-${opts.id}`);
  mkdirSync(bundle, { mode: 0o700 });
  const cleanup = () => {
    // `runc run` in the foreground deletes its container when the process ends; one left in
    // runc's state directory (runc killed, or it never started the process) is deleted here.
    if (existsSync(join(RUNC_STATE, opts.id))) spawnSync('runc', ['delete', '--force', opts.id], { stdio: 'ignore' });
    rmSync(bundle, { recursive: true, force: true });
  };
  try {
    const binds = [...(spec.binds ?? [])];
    (opts.files ?? []).forEach((f, i) => {
      const source = join(bundle, `file-${i}`);
      writeFileSync(source, f.content, { mode: 0o644 });
      binds.push({ source, destination: f.destination, readonly: false });
    });
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(ociSpec({ ...spec, binds })));
    const io = opts.stdio;
    const child = spawn('runc', ['run', '--bundle', bundle, opts.id], {
      stdio: io === 'inherit' ? 'inherit' : [io.stdin, 'pipe', 'pipe'],
      // Off a terminal, runc gets a process group of its own: a Ctrl-C reaches the container once,
      // forwarded below, not also straight from the terminal to runc and the container's processes.
      // On a terminal runc must stay in the foreground group to read it (raw: no signals there).
      detached: io !== 'inherit',
    });
    if (io !== 'inherit') {
      child.stdout!.pipe(io.stdout, { end: false });
      child.stderr!.pipe(io.stderr, { end: false });
    }
    if (child.pid !== undefined) opts.started?.(child.pid);
    const onSignal = (sig: NodeJS.Signals) => {
      if (opts.onSignal !== 'forward') spawnSync('runc', ['kill', opts.id, 'KILL'], { stdio: 'ignore' });
      child.kill(sig);
    };
    const signals: NodeJS.Signals[] = opts.onSignal === 'forward' ? FORWARDED : ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const sig of signals) process.on(sig, onSignal);
    try {
      return await new Promise<number>((resolve, reject) => {
        child.on('error', (err: NodeJS.ErrnoException) =>
          reject(new RuntimeError(err.code === 'ENOENT' ? 'runc is not installed (Debian package runc; make setup installs it)' : `cannot start runc: ${err.message}`)));
        child.on('close', (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : signalNumber(signal))));
      });
    } finally {
      for (const sig of signals) process.off(sig, onSignal);
    }
  } finally {
    cleanup();
  }
}

/** What `docker run` (--sig-proxy) passes on to the container's process. */
const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** The number of a signal by name (128 + it is a shell's status for a process it killed). */
export function signalNumber(signal: NodeJS.Signals): number {
  return (constants.signals as Record<string, number>)[signal] ?? 0;
}

/** runc's view of a container: whether it still has a process. */
export function runcStatus(id: string): 'running' | 'stopped' | 'absent' {
  if (!existsSync(join(RUNC_STATE, id))) return 'absent';
  const r = spawnSync('runc', ['state', id], { encoding: 'utf8' });
  if (r.status !== 0) return 'absent';
  try {
    const st = JSON.parse(r.stdout) as { status?: string };
    return st.status === 'running' || st.status === 'paused' || st.status === 'created' ? 'running' : 'stopped';
  } catch {
    return 'absent';
  }
}

/** Send `signal` (a name like TERM or SIGKILL, or a number) to the container's process. */
export function runcKill(id: string, signal: string): boolean {
  return spawnSync('runc', ['kill', id, signal], { stdio: 'ignore' }).status === 0;
}

/** Remove what runc keeps of a container, killing its processes. */
export function runcDelete(id: string): void {
  if (existsSync(join(RUNC_STATE, id))) spawnSync('runc', ['delete', '--force', id], { stdio: 'ignore' });
}

/** Freeze (or thaw) the container's processes; false when runc could not. */
export function runcPause(id: string, pause: boolean): boolean {
  return spawnSync('runc', [pause ? 'pause' : 'resume', id], { stdio: 'ignore' }).status === 0;
}
