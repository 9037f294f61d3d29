/**
 * Snapshots of a directory tree for comparing strata with kernel overlayfs: names, types,
 * modes, owners, sizes, content hashes, symlink targets, user xattrs, nlink and mtimes of the
 * merged view; and, for upper dirs, whiteouts and opaque markers (the overlay format itself).
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { sys } from '../../driver/native/sys.js';

export interface Entry {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size?: number;
  sha?: string;
  target?: string;
  rdev?: string;
  xattrs?: Record<string, string>;
  nlink?: number;
  mtime?: bigint;
}

export interface SnapshotOptions {
  /** Include `trusted.overlay.opaque` and report whiteouts (for upper dirs). */
  overlay?: boolean;
  nlink?: boolean;
  mtime?: boolean;
}

function typeOf(st: BigIntStats): string {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return st.rdev === 0n ? 'whiteout' : 'chr';
  if (st.isBlockDevice()) return 'blk';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

function xattrs(path: string, overlay: boolean): Record<string, string> | undefined {
  const names = sys.listxattrAt(sys.AT_FDCWD, path);
  if (typeof names === 'number') return undefined;
  const out: Record<string, string> = {};
  for (const n of names.sort()) {
    if (!(n.startsWith('user.') || (overlay && n === 'trusted.overlay.opaque'))) continue;
    const v = sys.getxattrAt(sys.AT_FDCWD, path, n);
    if (typeof v !== 'number') out[n] = v.toString('hex');
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

export function snapshot(root: string, opts: SnapshotOptions = {}): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (rel: string) => {
    const dir = join(root, rel);
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const r = rel === '' ? name : rel + '/' + name;
      const st = lstatSync(p, { bigint: true });
      const type = typeOf(st);
      const e: Entry = { type, mode: (Number(st.mode) & 0o7777).toString(8), uid: Number(st.uid), gid: Number(st.gid) };
      if (type === 'file') {
        e.size = Number(st.size);
        e.sha = createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16);
      }
      if (type === 'symlink') e.target = readlinkSync(p);
      if (type === 'chr' || type === 'blk') e.rdev = st.rdev.toString();
      if (type === 'whiteout') e.mode = '-';
      const x = xattrs(p, opts.overlay ?? false);
      if (x) e.xattrs = x;
      if (opts.nlink && type !== 'dir') e.nlink = Number(st.nlink);
      if (opts.mtime && type !== 'dir' && type !== 'symlink' && type !== 'whiteout') e.mtime = st.mtimeNs;
      out.set(r, e);
      if (type === 'dir') walk(r);
    }
  };
  walk('');
  return out;
}

/** Differences between two snapshots, as readable lines (empty when equal). mtimes may differ
 *  by `mtimeSlackNs` (the two runs happen a few microseconds apart). */
export function diffSnapshots(a: Map<string, Entry>, b: Map<string, Entry>, mtimeSlackNs = 0n): string[] {
  const lines: string[] = [];
  for (const [p, ea] of a) {
    const eb = b.get(p);
    if (!eb) {
      lines.push(`only in first: ${p} ${JSON.stringify(ea, big)}`);
      continue;
    }
    const { mtime: ma, ...ra } = ea;
    const { mtime: mb, ...rb } = eb;
    if (JSON.stringify(ra) !== JSON.stringify(rb)) lines.push(`differs: ${p}\n  ${JSON.stringify(ra)}\n  ${JSON.stringify(rb)}`);
    if (ma !== undefined && mb !== undefined) {
      const d = ma > mb ? ma - mb : mb - ma;
      if (d > mtimeSlackNs) lines.push(`mtime differs: ${p} ${ma} ${mb}`);
    }
  }
  for (const p of b.keys()) if (!a.has(p)) lines.push(`only in second: ${p} ${JSON.stringify(b.get(p), big)}`);
  return lines;
}

function big(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}
