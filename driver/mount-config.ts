/**
 * What a mount is made of, and the parser for mount(8)-style option strings
 * (`-o lowerdir=A:B,upperdir=U,workdir=W,ro,nosuid`). Shared by the CLI, which validates before
 * starting a driver, and the driver process, which receives the resolved config.
 */
export interface MountConfig {
  mountpoint: string;
  /** Lower layers, top first. */
  lowers: string[];
  upper?: string | undefined;
  work?: string | undefined;
  /** Options handed to libfuse as they are (ro, nosuid, nodev, noexec, noatime, ...). */
  fuseOptions: string[];
  /** Kernel caching of directory entries (positive and negative), in seconds. */
  cacheTimeout: number;
  /**
   * Kernel caching of attributes, in seconds. Every change goes through the mount, so the kernel
   * knows when they go stale; files with more than one link are never cached (each name is its
   * own kernel inode, and a change through one name would leave the others stale).
   */
  attrTimeout: number;
  /** Bound of the dentry cache, in directory entries. */
  cacheEntries: number;
  debug: boolean;
  /** The layer store this mount belongs to (an image mount), for `strata umount` to update. */
  storeRoot?: string | undefined;
}

export class MountOptionError extends Error {}

/** Options libfuse 2 understands and strata passes through unchanged. */
const PASSED = new Set(['ro', 'rw', 'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'atime', 'noatime', 'sync', 'async', 'dirsync']);

/** Options mount(8), fstab or overlayfs users pass that mean nothing to a FUSE union: accepted. */
const IGNORED = new Set([
  'defaults', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', 'nofail', '_netdev',
  'lazytime', 'nolazytime', 'relatime', 'norelatime', 'strictatime', 'nostrictatime', 'diratime',
  'nodiratime', 'iversion', 'noiversion', 'mand', 'nomand', 'silent', 'loud', 'remount', 'bind',
  'volatile', 'userxattr', 'allow_other', 'default_permissions',
]);
/** Overlayfs tunables with a value: strata's behaviour is fixed (it follows redirects, copies
 *  metadata with data), so these are accepted for compatibility and otherwise ignored. */
const IGNORED_WITH_VALUE = new Set(['redirect_dir', 'index', 'metacopy', 'xino', 'nfs_export', 'uuid', 'comment', 'context', 'fscontext', 'defcontext', 'rootcontext', 'fsname', 'subtype']);

export interface ParsedOptions {
  lowers?: string[];
  upper?: string;
  work?: string;
  fuseOptions: string[];
  cacheTimeout?: number;
  attrTimeout?: number;
  cacheEntries?: number;
}

/** Split `a,b=c,d` honouring backslash escapes (overlayfs allows `\,` and `\:` in paths). */
function splitEscaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Keep escapes of the inner separator while splitting on the outer one. */
function splitKeepingColonEscapes(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length && s[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

export function splitLowerdirs(value: string): string[] {
  return splitEscaped(value, ':').filter((p) => p.length > 0);
}

export function parseOptionStrings(strings: string[]): ParsedOptions {
  const parsed: ParsedOptions = { fuseOptions: [] };
  for (const s of strings) {
    for (const item of splitKeepingColonEscapes(s)) {
      if (item === '') continue;
      const eq = item.indexOf('=');
      const key = eq < 0 ? item : item.slice(0, eq);
      const value = eq < 0 ? undefined : item.slice(eq + 1);
      if (key === 'lowerdir' && value !== undefined) {
        // overlayfs also has lowerdir+= (one layer per option), appended bottom-most.
        parsed.lowers = splitLowerdirs(value);
      } else if (key === 'lowerdir+' && value !== undefined) {
        parsed.lowers = [...(parsed.lowers ?? []), value];
      } else if (key === 'upperdir' && value !== undefined) {
        parsed.upper = value.replace(/\\(.)/g, '$1');
      } else if (key === 'workdir' && value !== undefined) {
        parsed.work = value.replace(/\\(.)/g, '$1');
      } else if ((key === 'timeout' || key === 'attr_timeout') && value !== undefined) {
        const n = Number(value);
        if (!Number.isFinite(n) || n < 0) throw new MountOptionError(`bad value for ${key}: ${value}`);
        if (key === 'timeout') parsed.cacheTimeout = n;
        else parsed.attrTimeout = n;
      } else if (key === 'cache_entries' && value !== undefined) {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 1000) throw new MountOptionError(`bad value for cache_entries: ${value} (at least 1000)`);
        parsed.cacheEntries = n;
      } else if (value === undefined && PASSED.has(key)) {
        parsed.fuseOptions.push(key);
      } else if ((value === undefined && IGNORED.has(key)) || (value !== undefined && IGNORED_WITH_VALUE.has(key)) || key.startsWith('x-')) {
        continue;
      } else {
        throw new MountOptionError(`unknown mount option: ${item}`);
      }
    }
  }
  return parsed;
}
