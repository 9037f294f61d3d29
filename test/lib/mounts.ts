/**
 * Real mounts for tests: strata (through its CLI, as a user would) and kernel overlayfs (the
 * oracle), in temp dirs, always unmounted in teardown, even when the test failed.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { must, sh, strata } from './run.js';
import { readState } from '../../driver/runtime.js';

/** The part of tap's Test these helpers use. */
export interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export function tempDir(t: Teardown, prefix = 'strata-test-'): string {
  const dir = mkdtempSync(join('/tmp', prefix));
  t.teardown(() => {
    // Never delete through a mount that is still there: detach anything mounted below the dir.
    const below = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[4] ?? '')
      .filter((m) => m.startsWith(dir + '/'))
      .reverse();
    for (const m of below) sh(`umount -l ${JSON.stringify(m)}`);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

export interface Layout {
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
}

/** Fresh empty layer dirs under `base`: lowers l1..lN (l1 on top), upper, work, mountpoint. */
export function layout(base: string, lowers = 3, name = ''): Layout {
  const d = (n: string) => {
    const p = join(base, name + n);
    mkdirSync(p, { recursive: true });
    return p;
  };
  return {
    lowers: Array.from({ length: lowers }, (_, i) => d(`l${i + 1}`)),
    upper: d('upper'),
    work: d('work'),
    mnt: d('mnt'),
  };
}

export function mountStrata(t: Teardown, l: Layout, extra: string[] = [], rw = true): void {
  const args = ['mount', '--lower', l.lowers.join(':')];
  if (rw) args.push('--upper', l.upper, '--work', l.work);
  const r = strata([...args, ...extra, l.mnt]);
  if (r.code !== 0) throw new Error(`strata mount failed (${r.code}): ${r.stderr}`);
  t.teardown(() => unmountStrata(l.mnt));
}

/** Unmount if still mounted; a failing umount falls back to a lazy one so nothing is left. */
export function unmountStrata(mnt: string): void {
  if (!isMounted(mnt)) return;
  const r = strata(['umount', mnt]);
  if (r.code !== 0) sh(`umount -l ${JSON.stringify(mnt)}`);
}

export function mountKernel(t: Teardown, l: Layout, rw = true): void {
  const opts = [`lowerdir=${l.lowers.join(':')}`];
  if (rw) opts.push(`upperdir=${l.upper}`, `workdir=${l.work}`);
  must(`mount -t overlay overlay -o ${opts.join(',')} ${JSON.stringify(l.mnt)}`);
  t.teardown(() => {
    if (isMounted(l.mnt)) sh(`umount ${JSON.stringify(l.mnt)} || umount -l ${JSON.stringify(l.mnt)}`);
  });
}

/** From the mount table, not stat(): a mount whose driver died answers stat with ENOTCONN. */
export function isMounted(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4]?.replace(/\\040/g, ' ') === path);
}

/** The pid of the driver serving `mnt`, from its mount record. */
export function driverPid(mnt: string): number {
  const st = readState(mnt);
  if (st === null) throw new Error(`no driver recorded for ${mnt}`);
  return st.pid;
}

/** How many strata driver processes mention `path` (the [d] keeps pgrep's own shell out). */
export function driversFor(path: string): number {
  return Number(sh(`pgrep -f -- ${JSON.stringify('[d]river/main.js.*' + path)} | wc -l`).stdout.trim());
}
