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
import { ociSpec, type ContainerSpec } from './spec.js';

export class RuntimeError extends Error {}

/** runc's default state root (`runc --root`), where it keeps a container until deleted. */
const RUNC_STATE = '/run/runc';

export interface RunOptions {
  /** Where the bundle directory is made (a store's tmp/). */
  bundleParent: string;
  /** runc's container id: unique on this machine. */
  id: string;
  stdout: Writable;
  stderr: Writable;
  /**
   * Files made for this run and bind-mounted over these paths (Docker's /etc/hostname, /etc/hosts
   * and /etc/resolv.conf): what the process writes to them is discarded with the bundle.
   */
  files?: Array<{ destination: string; content: string }>;
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
    const child = spawn('runc', ['run', '--bundle', bundle, opts.id], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(opts.stdout, { end: false });
    child.stderr.pipe(opts.stderr, { end: false });
    // An interrupted build must not leave the container running on the mount.
    const onSignal = (sig: NodeJS.Signals) => {
      spawnSync('runc', ['kill', opts.id, 'KILL'], { stdio: 'ignore' });
      child.kill(sig);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      return await new Promise<number>((resolve, reject) => {
        child.on('error', (err: NodeJS.ErrnoException) =>
          reject(new RuntimeError(err.code === 'ENOENT' ? 'runc is not installed (Debian package runc; make setup installs it)' : `cannot start runc: ${err.message}`)));
        child.on('close', (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : signalNumber(signal))));
      });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  } finally {
    cleanup();
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  return (constants.signals as Record<string, number>)[signal] ?? 0;
}
