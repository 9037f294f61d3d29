/**
 * Errno values inside the union filesystem. Every failure inside driver/fs is an FsError carrying
 * a positive errno; the FUSE adapter turns whatever a handler throws into the errno of its reply
 * in one place (errnoOf). Syscall helpers answer negative errnos; check() lifts them into FsErrors.
 */
import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

export const E = constants.errno;

export class FsError extends Error {
  constructor(
    readonly errno: number,
    context?: string,
  ) {
    super(`${errnoName(errno)}${context ? ': ' + context : ''}`);
    this.name = 'FsError';
  }
}

const names = new Map<number, string>(Object.entries(E).map(([k, v]) => [v, k]));

export function errnoName(errno: number): string {
  return names.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

/** "ENOSPC (no space left on device)": an errno for a message a person reads. */
export function errnoText(errno: number): string {
  const known = getSystemErrorMap().get(-Math.abs(errno));
  return known === undefined ? errnoName(errno) : `${known[0]} (${known[1]})`;
}

const shared = new Map<number, FsError>();

/**
 * A shared, context-free error for the hot path (ENOENT on lookup is common and an Error with a
 * fresh stack trace costs more than the lookup itself).
 */
export function fsErr(errno: number): FsError {
  let e = shared.get(errno);
  if (e === undefined) {
    e = new FsError(errno);
    shared.set(errno, e);
  }
  return e;
}

/** Raise an FsError for a negative result of a syscall helper; pass other values through. */
export function check(res: number, context?: string): number {
  if (res < 0) throw new FsError(-res, context);
  return res;
}

/** Like check() for helpers that answer a value or a negative errno. */
export function checkValue<T>(res: T | number, context?: string): T {
  if (typeof res === 'number' && res < 0) throw new FsError(-res, context);
  return res as T;
}

/**
 * The single mapping from anything thrown inside the filesystem to the errno of a FUSE reply
 * (positive). Anything that is not an errno (a bug) answers EIO.
 */
export function errnoOf(err: unknown): number {
  if (err instanceof FsError) return err.errno;
  // Node's fs errors carry a negative errno.
  if (err && typeof err === 'object' && 'errno' in err && typeof err.errno === 'number' && err.errno !== 0) {
    return Math.abs(err.errno);
  }
  return E.EIO;
}
