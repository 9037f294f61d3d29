/**
 * Where running mounts are recorded: one JSON file per mount under /run/strata/mounts (or
 * $STRATA_RUN_DIR), naming the driver's pid, so `strata umount` can wait for the driver to exit
 * and `strata status` can ask it for its counters.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function runDir(): string {
  return process.env['STRATA_RUN_DIR'] ?? '/run/strata';
}

function key(mountpoint: string): string {
  return createHash('sha256').update(mountpoint).digest('hex').slice(0, 24);
}

export function stateFile(mountpoint: string): string {
  return join(runDir(), 'mounts', key(mountpoint) + '.json');
}

export function statusFile(mountpoint: string): string {
  return join(runDir(), 'mounts', key(mountpoint) + '.status.json');
}

export interface MountState {
  pid: number;
  mountpoint: string;
  lowers: string[];
  upper?: string | undefined;
  work?: string | undefined;
  started: string;
  /** Set when the mount is an image's, made through the layer store at this root. */
  storeRoot?: string;
}

/** Write a file whole or not at all: temp name, then rename. */
export function writeAtomically(path: string, content: string): void {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode: 0o600 });
  renameSync(tmp, path);
}

export function readState(mountpoint: string): MountState | null {
  try {
    return JSON.parse(readFileSync(stateFile(mountpoint), 'utf8')) as MountState;
  } catch {
    return null;
  }
}

export function removeState(mountpoint: string): void {
  rmSync(stateFile(mountpoint), { force: true });
  rmSync(statusFile(mountpoint), { force: true });
}
