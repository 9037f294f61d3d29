/**
 * The on-disk vocabulary of overlay layers. strata reads every encoding seen in the wild and
 * writes only the kernel's, so kernel overlayfs can mount a strata upper and the reverse:
 *
 *   whiteout      kernel: char device 0:0 named like the deleted entry (written by strata)
 *                 OCI/tar form: empty regular file ".wh.<name>"
 *                 kernel 6.7+: zero-size file with xattr trusted.overlay.whiteout, only in a
 *                 directory marked with trusted.overlay.whiteouts (or opaque = "x")
 *   opaque dir    kernel: xattr trusted.overlay.opaque = "y" (written by strata)
 *                 also read: ".wh..wh..opq" inside the dir, user.overlay.opaque,
 *                 user.fuseoverlayfs.opaque
 *   redirect      kernel: xattr trusted.overlay.redirect on an upper dir renamed away from its
 *                 lower path; absolute ("/a/b") or a single name relative to the parent's lower
 *                 path. strata writes absolute redirects.
 */
import { sys } from '../native/sys.js';
import { S, S_IFCHR, S_IFDIR, S_IFMT } from './stat.js';
import { baseName, joinRel, parentRel, ROOT, type Layer } from './layers.js';

export const WH_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

export const XATTR_OPAQUE = 'trusted.overlay.opaque';
export const XATTR_REDIRECT = 'trusted.overlay.redirect';
export const XATTR_WHITEOUT = 'trusted.overlay.whiteout';
export const XATTR_WHITEOUTS = 'trusted.overlay.whiteouts';
const OTHER_OPAQUE_XATTRS = ['user.overlay.opaque', 'user.fuseoverlayfs.opaque'];

/**
 * Overlay-private xattrs: never shown through the mount, never settable through it, never copied
 * up. The kernel's namespace, its userxattr variant, and fuse-overlayfs's (whose uppers strata reads).
 */
const PRIVATE_XATTR_PREFIXES = ['trusted.overlay.', 'user.overlay.', 'user.fuseoverlayfs.'];

/** Where a user's own trusted.overlay.* xattr is kept in a layer (the kernel's 6.7+ escaping). */
const ESCAPED_PREFIX = 'trusted.overlay.overlay.';
const OVERLAY_PREFIX = 'trusted.overlay.';

export function isPrivateXattr(name: string): boolean {
  return !name.startsWith(ESCAPED_PREFIX) && PRIVATE_XATTR_PREFIXES.some((p) => name.startsWith(p));
}

/** The layer's name for an xattr named through the mount; null for names strata keeps to itself. */
export function xattrToLayer(name: string): string | null {
  if (name.startsWith(OVERLAY_PREFIX)) return ESCAPED_PREFIX + name.slice(OVERLAY_PREFIX.length);
  return isPrivateXattr(name) ? null : name;
}

/** The name shown through the mount for a layer's xattr; null for overlay-private ones. */
export function xattrFromLayer(name: string): string | null {
  if (name.startsWith(ESCAPED_PREFIX)) return OVERLAY_PREFIX + name.slice(ESCAPED_PREFIX.length);
  return isPrivateXattr(name) ? null : name;
}

export function isReservedName(name: string): boolean {
  return name.startsWith(WH_PREFIX);
}

export function isWhiteoutStat(st: Uint32Array): boolean {
  return (st[S.mode]! & S_IFMT) === S_IFCHR && st[S.rdev] === 0;
}

function xattrIs(layer: Layer, rel: string, name: string, value: string): boolean {
  const v = sys.getxattrAt(layer.fd, rel, name);
  return typeof v !== 'number' && v.toString() === value;
}

export interface DirMarks {
  opaque: boolean;
  /** The directory may hold xattr whiteouts (kernel 6.7+ encoding). */
  xattrWhiteouts: boolean;
  /** Where this directory continues in the layers below (from trusted.overlay.redirect). */
  redirect: Redirect | null;
}

/**
 * Read the overlay marks of directory `rel` in `layer`. `hasOpaqueMarker` says whether its
 * listing held ".wh..wh..opq" (callers that listed it already know; others pass undefined).
 */
export function readDirMarks(layer: Layer, rel: string, hasOpaqueMarker?: boolean): DirMarks {
  const opq = sys.getxattrAt(layer.fd, rel, XATTR_OPAQUE);
  const opqValue = typeof opq === 'number' ? '' : opq.toString();
  let opaque = opqValue === 'y';
  let xattrWhiteouts = opqValue === 'x' || typeof sys.getxattrAt(layer.fd, rel, XATTR_WHITEOUTS) !== 'number';
  if (!opaque) opaque = OTHER_OPAQUE_XATTRS.some((n) => xattrIs(layer, rel, n, 'y'));
  if (!opaque) {
    opaque = hasOpaqueMarker ?? sys.lstatAt(layer.fd, joinRel(rel, OPAQUE_MARKER), scratch) === 0;
  }
  if (opaque) xattrWhiteouts = false;
  return { opaque, xattrWhiteouts, redirect: rel === ROOT ? null : readRedirect(layer, rel) };
}

const scratch = new Uint32Array(22);

/**
 * An absolute redirect is a path from the layer root; a relative one is a name in the parent
 * directory as the parent is found in each lower layer (which may itself be redirected).
 */
export type Redirect = { path: string } | { name: string };

function readRedirect(layer: Layer, rel: string): Redirect | null {
  const v = sys.getxattrAt(layer.fd, rel, XATTR_REDIRECT);
  if (typeof v === 'number') return null;
  const target = v.toString();
  if (target.startsWith('/')) {
    const abs = target.replace(/^\/+/, '').replace(/\/+$/, '');
    const path = abs === '' ? ROOT : abs;
    return staysInside(path) ? { path } : null;
  }
  if (target.includes('/') || !staysInside(target)) return null;
  return { name: target };
}

/**
 * A redirect comes from layer content and is never trusted: it may not climb out with "..",
 * and each step must be a real directory (a symlink there would be followed by the *at() calls
 * as an intermediate component, out of the layer).
 */
function staysInside(rel: string): boolean {
  if (rel === ROOT) return true;
  const parts = rel.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return false;
  return true;
}

/** Whether every proper ancestor of `rel` in `layer` is a directory, not a symlink. */
export function ancestorsAreDirs(layer: Layer, rel: string): boolean {
  let at = '';
  const parts = rel.split('/');
  for (let i = 0; i < parts.length - 1; i++) {
    at = at === '' ? parts[i]! : at + '/' + parts[i]!;
    if (sys.lstatAt(layer.fd, at, scratch) < 0 || (scratch[S.mode]! & S_IFMT) !== S_IFDIR) return false;
  }
  return true;
}

/** Whether the zero-size regular file `rel` is a kernel 6.7+ xattr whiteout. */
export function isXattrWhiteout(layer: Layer, rel: string): boolean {
  return typeof sys.getxattrAt(layer.fd, rel, XATTR_WHITEOUT) !== 'number';
}

/** Whether `.wh.<name>` exists next to `rel` (the OCI whiteout form). */
export function hasTarWhiteout(layer: Layer, rel: string): boolean {
  return sys.lstatAt(layer.fd, joinRel(parentRel(rel), WH_PREFIX + baseName(rel)), scratch) === 0;
}

/** The kernel's whiteout: a 0:0 character device. */
export function makeWhiteout(dirfd: number, rel: string): number {
  return sys.mknodAt(dirfd, rel, S_IFCHR, 0);
}

export function setOpaque(dirfd: number, rel: string): number {
  return sys.setxattrAt(dirfd, rel, XATTR_OPAQUE, Buffer.from('y'), 0);
}

/** Record that an upper directory continues at lower path `lowerRel` (absolute form). */
export function setRedirect(dirfd: number, rel: string, lowerRel: string): number {
  return sys.setxattrAt(dirfd, rel, XATTR_REDIRECT, Buffer.from('/' + (lowerRel === ROOT ? '' : lowerRel)), 0);
}

export function removeRedirect(dirfd: number, rel: string): void {
  sys.removexattrAt(dirfd, rel, XATTR_REDIRECT);
}
