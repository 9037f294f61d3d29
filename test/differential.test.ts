/**
 * Differential tests: the same operations on strata and on kernel overlayfs, over identical
 * copies of three layers; every return code must match, and so must the merged views and the
 * upper dirs at the end. Where strata deliberately differs (renaming a directory that has lower
 * content works instead of failing with EXDEV), the kernel side is given what `mv` does there.
 */
import t, { type Test } from 'tap';
import {
  appendFileSync,
  chmodSync,
  linkSync,
  lchownSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  readdirSync,
  existsSync,
  lstatSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { sys } from '../driver/native/sys.js';
import { kernelLayers } from './lib/fixtures.js';
import { layout, mountKernel, mountStrata, tempDir, unmountStrata } from './lib/mounts.js';
import { run } from './lib/run.js';
import { diffSnapshots, snapshot, type Entry } from './lib/tree.js';

/** mulberry32: a small seeded PRNG, so a failing sequence can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const DIRS = ['', 'etc', 'data', 'data/sub', 'opq', 'deep', 'deep/a', 'deep/a/b', 'newdir', 'keep', 'usr/bin', 'swap', 'dir-to-file'];
const NAMES = ['a', 'b', 'c', 'hostname', 'old.txt', 'kept.txt', 'f.txt', 'tool', 'mid.txt', 'sub', 'new.txt', 'inner.txt', 'k.txt', 'x', 'b'];
// (data/fifo is the fixture's FIFO: no name here reaches it.)

type Op = (root: string) => string;

function outcome(fn: () => unknown): string {
  try {
    const v = fn();
    return typeof v === 'string' ? 'ok:' + v : 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

interface Step {
  name: string;
  op: Op;
  dirRename?: [string, string];
}

/** Every entry of the (kernel's) merged view, to aim most operations at things that exist. */
function existing(root: string): { all: string[]; dirs: string[] } {
  const all: string[] = [];
  const dirs: string[] = [''];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel))) {
      const r = rel === '' ? name : rel + '/' + name;
      const st = lstatSync(join(root, r));
      // Opening a FIFO blocks until a partner comes: never aim at one.
      if (st.isFIFO()) continue;
      all.push(r);
      if (st.isDirectory()) {
        dirs.push(r);
        walk(r);
      }
    }
  };
  walk('');
  return { all, dirs };
}

/** One random operation: 60% aimed at an existing entry, the rest at a name that may not exist. */
function step(rand: () => number, i: number, seen: { all: string[]; dirs: string[] }): Step {
  const pick = <T>(a: T[]): T => a[Math.floor(rand() * a.length)]!;
  const fresh = () => {
    const d = rand() < 0.5 ? pick(seen.dirs) : pick(DIRS);
    return d === '' ? pick(NAMES) : d + '/' + pick(NAMES);
  };
  const path = () => (rand() < 0.6 && seen.all.length > 0 ? pick(seen.all) : fresh());
  const ops: Step[] = [];
  {
    const p = path();
    const k = Math.floor(rand() * 16);
    const data = `data-${i}-${Math.floor(rand() * 1e6)}\n`.repeat(1 + Math.floor(rand() * 50));
    const mode = pick([0o644, 0o600, 0o755, 0o4755, 0o640]);
    const n = Math.floor(rand() * 5000);
    const q = rand() < 0.3 ? path() : fresh();
    const time = 1_500_000_000 + Math.floor(rand() * 1e8) + 0.25;
    switch (k) {
      case 0:
        ops.push({ name: `write ${p}`, op: (r) => writeFileSync(join(r, p), data) });
        break;
      case 1:
        ops.push({ name: `append ${p}`, op: (r) => appendFileSync(join(r, p), data) });
        break;
      case 2:
        ops.push({ name: `truncate ${p} ${n}`, op: (r) => truncateSync(join(r, p), n) });
        break;
      case 3:
        ops.push({ name: `chmod ${p} ${mode.toString(8)}`, op: (r) => chmodSync(join(r, p), mode) });
        break;
      case 4:
        ops.push({ name: `chown ${p}`, op: (r) => lchownSync(join(r, p), n % 3 === 0 ? 0 : 1000 + (n % 7), 1000 + (n % 5)) });
        break;
      case 5:
        ops.push({ name: `utimes ${p}`, op: (r) => utimesSync(join(r, p), time - 1000, time) });
        break;
      case 6:
        ops.push({
          name: `setxattr ${p}`,
          op: (r) => {
            const res = sys.setxattrAt(sys.AT_FDCWD, join(r, p), 'user.t' + (n % 3), Buffer.from(data.slice(0, 20)), 0);
            if (res < 0) throw Object.assign(new Error('setxattr'), { code: 'E' + -res });
          },
        });
        break;
      case 7:
        ops.push({ name: `unlink ${p}`, op: (r) => unlinkSync(join(r, p)) });
        break;
      case 8: {
        const d = pick(seen.dirs);
        ops.push({ name: `rmdir ${d}`, op: (r) => rmdirSync(join(r, d)) });
        break;
      }
      case 15:
        ops.push({ name: `rmdir ${p}`, op: (r) => rmdirSync(join(r, p)) });
        break;
      case 9: {
        const d = fresh();
        ops.push({ name: `mkdir ${d}`, op: (r) => mkdirSync(join(r, d), mode & 0o777) });
        break;
      }
      case 10:
      case 11: {
        ops.push({ name: `rename ${p} ${q}`, op: (r) => renameSync(join(r, p), join(r, q)), dirRename: [p, q] });
        break;
      }
      case 12:
        ops.push({ name: `link ${p} ${q}`, op: (r) => linkSync(join(r, p), join(r, q)) });
        break;
      case 13:
        ops.push({ name: `symlink ${p}`, op: (r) => symlinkSync('../target-' + (n % 4), join(r, p)) });
        break;
      default:
        ops.push({
          name: `read ${p}`,
          op: (r) => createHash('sha256').update(readFileSync(join(r, p))).digest('hex').slice(0, 12),
        });
    }
  }
  return ops[0]!;
}

/**
 * The kernel marks a directory opaque before it tries a rename, and keeps the mark when the
 * rename then fails (ENOTEMPTY). On a directory no lower layer has, the mark means nothing, so the
 * comparison of upper dirs ignores it there.
 */
function inertOpaqueDropped(snap: Map<string, Entry>, lowers: string[]): Map<string, Entry> {
  for (const [p, e] of snap) {
    if (e.type !== 'dir' || e.xattrs?.['trusted.overlay.opaque'] === undefined) continue;
    if (lowers.some((l) => existsSync(join(l, p)))) continue;
    const { ['trusted.overlay.opaque']: _dropped, ...rest } = e.xattrs;
    if (Object.keys(rest).length > 0) e.xattrs = rest;
    else delete e.xattrs;
  }
  return snap;
}

/** The errno behind a failed mv, from its message. */
function mvErrno(stderr: string): string {
  const known: [RegExp, string][] = [
    [/Directory not empty/, 'ENOTEMPTY'],
    [/Not a directory/, 'ENOTDIR'],
    [/Is a directory/, 'EISDIR'],
    [/File exists/, 'EEXIST'],
    [/No such file/, 'ENOENT'],
    [/subdirectory of itself|Invalid argument/, 'EINVAL'],
  ];
  return known.find(([re]) => re.test(stderr))?.[1] ?? 'mv-failed: ' + stderr.trim();
}

function isDirOnKernel(root: string, p: string): boolean {
  try {
    return lstatSync(join(root, p)).isDirectory();
  } catch {
    return false;
  }
}

async function differential(t: Test, seed: number, count: number, withDirRenames: boolean): Promise<void> {
  const base = tempDir(t);
  const k = layout(base, 3, 'k-');
  const s = layout(base, 3, 's-');
  kernelLayers(k.lowers);
  kernelLayers(s.lowers);
  mountKernel(t, k);
  mountStrata(t, s);
  const rand = prng(seed);
  const checkEvery = Number(process.env['STRATA_DIFF_EVERY'] ?? 0);
  let seen = existing(k.mnt);
  let skipped = 0;
  const succeeded = new Map<string, number>();
  let mismatches = 0;
  let mvEmulated = 0;
  for (let i = 0; i < count; i++) {
    if (i % 20 === 0) seen = existing(k.mnt);
    const o = step(rand, i, seen);
    let kr = outcome(() => o.op(k.mnt));
    if (kr === 'EXDEV' && o.dirRename && isDirOnKernel(k.mnt, o.dirRename[0])) {
      if (!withDirRenames) {
        skipped++;
        continue;
      }
      // What users get on the kernel: mv copies the tree and removes the source.
      const [from, to] = o.dirRename;
      const r = run('mv', ['-T', join(k.mnt, from), join(k.mnt, to)]);
      kr = r.code === 0 ? 'ok' : mvErrno(r.stderr);
      mvEmulated++;
    }
    const sr = outcome(() => o.op(s.mnt));
    if (checkEvery > 0 && i % checkEvery === 0 && !withDirRenames) {
      // Debug aid (STRATA_DIFF_EVERY=1): find the first operation after which the uppers differ.
      const d = diffSnapshots(
        inertOpaqueDropped(snapshot(k.upper, { overlay: true }), k.lowers),
        inertOpaqueDropped(snapshot(s.upper, { overlay: true }), k.lowers),
      );
      if (d.length > 0) {
        t.fail(`uppers differ after op ${i} (${o.name} -> kernel ${kr}, strata ${sr}): ${d.slice(0, 3).join('; ')}`);
        break;
      }
    }
    const verb = o.name.split(' ')[0]!;
    if (sr.startsWith('ok')) succeeded.set(verb, (succeeded.get(verb) ?? 0) + 1);
    if (kr !== sr) {
      mismatches++;
      t.equal(sr, kr, `op ${i} (${o.name}): strata answers like the kernel`);
      if (mismatches > 10) break;
    }
  }
  t.equal(mismatches, 0, `${count - skipped} operations (seed ${seed}) answer like kernel overlayfs`);
  t.comment(`succeeded: ${[...succeeded].map(([k, v]) => `${k} ${v}`).join(', ')}; kernel mv for ${mvEmulated} dir renames`);
  // The sequence must really exercise the union, not bounce off ENOENT.
  for (const verb of ['write', 'append', 'truncate', 'chmod', 'chown', 'utimes', 'setxattr', 'unlink', 'rmdir', 'mkdir', 'rename', 'link', 'symlink', 'read']) {
    t.ok((succeeded.get(verb) ?? 0) >= 5, `${verb} succeeded at least 5 times`);
  }
  const merged = diffSnapshots(snapshot(k.mnt, { nlink: true, mtime: true }), snapshot(s.mnt, { nlink: true, mtime: true }), 5_000_000_000n);
  t.same(merged.slice(0, 20), [], 'merged views are equal');
  // Everything strata wrote (whiteouts, opaque dirs, redirects) reads back the same after a remount.
  unmountStrata(s.mnt);
  mountStrata(t, s);
  const again = diffSnapshots(snapshot(k.mnt, { nlink: true, mtime: true }), snapshot(s.mnt, { nlink: true, mtime: true }), 5_000_000_000n);
  t.same(again.slice(0, 20), [], 'merged views are still equal after unmount and remount');
  if (mvEmulated === 0) {
    const upper = diffSnapshots(inertOpaqueDropped(snapshot(k.upper, { overlay: true }), k.lowers), inertOpaqueDropped(snapshot(s.upper, { overlay: true }), k.lowers));
    t.same(upper.slice(0, 20), [], 'upper dirs are equal (files, whiteouts, opaque markers)');
  } else {
    t.comment(`${mvEmulated} directory renames went through mv on the kernel; upper dirs differ by design`);
  }
}

t.test('2000 random operations without directory renames of lower dirs: codes, merged view, upper', (t) =>
  differential(t, 20261130, 2000, false),
);

t.test('2000 random operations including directory renames (kernel side via mv)', (t) =>
  differential(t, 424242, 2000, true),
);
