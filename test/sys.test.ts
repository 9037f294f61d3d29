// Tests for the strata_sys N-API addon (native-deps/sys): every export,
// against a scratch directory in /tmp, including the error returns.
// Runs as root (mknod, chown, trusted.* xattrs, mount).
import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type * as Sys from '../native-deps/sys/index.js';

// build.sh is a no-op when the addon is up to date; its output goes to stderr
// so that it cannot disturb the TAP stream.
execFileSync(fileURLToPath(new URL('../native-deps/sys/build.sh', import.meta.url)), {
  stdio: ['ignore', 2, 2],
});
const sys = createRequire(import.meta.url)(
  '../native-deps/sys/build/Release/strata_sys.node',
) as typeof Sys;

const E = os.constants.errno;
const C = fs.constants;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const root = fs.mkdtempSync('/tmp/strata-sys-test-');
const mounts: string[] = [];
t.teardown(() => {
  for (const m of mounts) sys.umount2(m, sys.MNT_DETACH);
  fs.rmSync(root, { recursive: true, force: true });
});

/** A fresh directory under root, plus an fd on it closed at teardown. */
function scratch(name: string): { dir: string; fd: number } {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  const fd = fs.openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  t.teardown(() => fs.closeSync(fd));
  return { dir, fd };
}

const u = (a: Uint32Array, i: number): number => a[i] ?? NaN;
const u64 = (a: Uint32Array, i: number): bigint => (BigInt(u(a, i + 1)) << 32n) | BigInt(u(a, i));
const s64 = (a: Uint32Array, i: number): bigint => BigInt.asIntN(64, u64(a, i));
const ns = (a: Uint32Array, i: number): bigint => s64(a, i) * 1_000_000_000n + BigInt(u(a, i + 2));
/** glibc's makedev() for small numbers (what fs.Stats.rdev reports). */
const makedev = (major: number, minor: number): number => (major << 8) | minor;

function lstat(dirfd: number, p: string): Uint32Array {
  const out = new Uint32Array(22);
  const r = sys.lstatAt(dirfd, p, out);
  if (r !== 0) throw new Error(`lstatAt(${p}) = ${r}`);
  return out;
}

/** Check every slot of the layout against Node's own bigint lstat. */
function sameStat(tt: Test, out: Uint32Array, st: fs.BigIntStats): void {
  tt.equal(u(out, 0), Number(st.mode), 'mode');
  tt.equal(u(out, 1), Number(st.uid), 'uid');
  tt.equal(u(out, 2), Number(st.gid), 'gid');
  tt.equal(u64(out, 3), st.size, 'size');
  tt.equal(u(out, 5), Number(st.dev & 0xffffffffn), 'dev');
  tt.equal(u(out, 6), Number(st.nlink), 'nlink');
  tt.equal(u64(out, 7), st.ino, 'ino');
  tt.equal(u(out, 9), Number(st.rdev & 0xffffffffn), 'rdev');
  tt.equal(u(out, 10), Number(st.blksize), 'blksize');
  tt.equal(u64(out, 11), st.blocks, 'blocks');
  tt.equal(ns(out, 13), st.atimeNs, 'atime');
  tt.equal(ns(out, 16), st.mtimeNs, 'mtime');
  tt.equal(ns(out, 19), st.ctimeNs, 'ctime');
}

/** Open flags of an fd as the kernel reports them. */
function fdFlags(fd: number): number {
  const m = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return parseInt(m?.[1] ?? 'NaN', 8);
}

const copy = (src: number, dst: number): Promise<number> =>
  new Promise((resolve) => sys.copyData(src, dst, resolve));

t.test('constants', async (tt) => {
  const expected: Record<string, number> = {
    AT_FDCWD: -100, AT_REMOVEDIR: 0x200, AT_SYMLINK_NOFOLLOW: 0x100, AT_EMPTY_PATH: 0x1000,
    RENAME_NOREPLACE: 1, RENAME_EXCHANGE: 2, RENAME_WHITEOUT: 4,
    UTIME_NOW: 2 ** 30 - 1, UTIME_OMIT: 2 ** 30 - 2, XATTR_CREATE: 1, XATTR_REPLACE: 2,
    MNT_FORCE: 1, MNT_DETACH: 2, UMOUNT_NOFOLLOW: 8,
    O_NOFOLLOW: C.O_NOFOLLOW, O_DIRECTORY: C.O_DIRECTORY, O_PATH: 0o10000000,
    DT_UNKNOWN: 0, DT_FIFO: 1, DT_CHR: 2, DT_DIR: 4, DT_BLK: 6, DT_REG: 8, DT_LNK: 10, DT_SOCK: 12,
  };
  for (const [k, v] of Object.entries(expected)) tt.equal((sys as Record<string, unknown>)[k], v, k);
  const fns = [
    'lstatAt', 'fstat', 'openAt', 'close', 'mkdirAt', 'mknodAt', 'symlinkAt', 'linkAt', 'unlinkAt',
    'renameAt2', 'readlinkAt', 'chmodAt', 'chownAt', 'utimensAt', 'futimens', 'fchmod', 'fchown',
    'ftruncate', 'fsync', 'fdatasync', 'syncfs', 'syncfsAsync', 'getxattrAt', 'setxattrAt', 'listxattrAt', 'removexattrAt',
    'fgetxattr', 'fsetxattr', 'flistxattr', 'fremovexattr', 'readdirAt', 'statvfsFd', 'copyData',
    'umount2', 'writerOpen', 'writerCreate', 'writerData', 'writerXattr', 'writerFinish', 'writerDir',
    'writerSymlink', 'writerWait', 'writerClose', 'digestOpen', 'digestUpdate', 'digestFinish',
    'treeSummary', 'readFileAt',
  ];
  tt.same(Object.keys(sys).sort(), [...fns, ...Object.keys(expected)].sort(), 'exactly these exports');
});

t.test('argument checking', async (tt) => {
  const out = new Uint32Array(22);
  const bad = sys as unknown as Record<string, (...a: unknown[]) => unknown>;
  const typeError = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' };
  tt.throws(() => bad.lstatAt!('3', '', out), typeError, 'fd as string');
  tt.throws(() => bad.lstatAt!(sys.AT_FDCWD, 1, out), typeError, 'path as number');
  tt.throws(() => bad.lstatAt!(sys.AT_FDCWD, '/'), typeError, 'missing out');
  tt.throws(() => sys.lstatAt(sys.AT_FDCWD, '/', new Uint32Array(21)), typeError, 'short out');
  tt.throws(() => bad.lstatAt!(sys.AT_FDCWD, '/', new Int32Array(22)), typeError, 'wrong array type');
  tt.throws(() => bad.fstat!(0, [0]), typeError);
  tt.throws(() => sys.statvfsFd(0, new Float64Array(10)), typeError);
  tt.throws(() => bad.setxattrAt!(sys.AT_FDCWD, '/', 'user.x', 'str', 0), typeError, 'value not a Buffer');
  tt.throws(() => bad.copyData!(0, 1), typeError, 'copyData without callback');
  tt.throws(() => bad.close!(), typeError, 'no arguments');
  // Strings the kernel would refuse are errors, not exceptions ...
  tt.equal(sys.lstatAt(sys.AT_FDCWD, 'a'.repeat(5000), out), -E.ENAMETOOLONG, 'path too long');
  tt.equal(sys.lstatAt(sys.AT_FDCWD, 'a'.repeat(4096), out), -E.ENAMETOOLONG, 'PATH_MAX bytes');
  tt.equal(sys.lstatAt(sys.AT_FDCWD, 'é'.repeat(2048), out), -E.ENAMETOOLONG, 'counted in UTF-8 bytes');
  tt.equal(sys.lstatAt(sys.AT_FDCWD, '/tmp\0/etc', out), -E.EINVAL, 'embedded NUL');
  tt.equal(sys.getxattrAt(sys.AT_FDCWD, '/tmp', 'user.' + 'x'.repeat(300)), -E.ERANGE, 'xattr name too long');
  // ... but type errors still win, whatever the argument order.
  tt.throws(() => sys.lstatAt(sys.AT_FDCWD, 'a'.repeat(5000), new Uint32Array(2)), typeError);
});

t.test('openAt, close, fstat', async (tt) => {
  const { dir, fd: dfd } = scratch('open');
  const fd = sys.openAt(dfd, 'f', C.O_CREAT | C.O_EXCL | C.O_RDWR, 0o640);
  tt.ok(fd >= 0, 'created');
  tt.ok(fdFlags(fd) & 0o2000000, 'O_CLOEXEC added');
  fs.writeSync(fd, 'hello');
  const out = new Uint32Array(24).fill(0xdeadbeef);
  tt.equal(sys.fstat(fd, out), 0);
  sameStat(tt, out, fs.lstatSync(path.join(dir, 'f'), { bigint: true }));
  tt.equal(u(out, 0), C.S_IFREG | (0o640 & ~process.umask()), 'mode');
  tt.equal(u(out, 22), 0xdeadbeef, 'slots past 22 untouched');
  tt.equal(sys.close(fd), 0);
  tt.equal(sys.close(fd), -E.EBADF, 'closing twice');
  tt.equal(sys.fstat(fd, out), -E.EBADF);

  tt.equal(sys.openAt(dfd, 'f', C.O_CREAT | C.O_EXCL | C.O_RDWR, 0o600), -E.EEXIST);
  tt.equal(sys.openAt(dfd, 'missing', C.O_RDONLY, 0), -E.ENOENT);
  tt.equal(sys.openAt(dfd, 'f/x', C.O_RDONLY, 0), -E.ENOTDIR);
  tt.equal(sys.openAt(-1, 'f', C.O_RDONLY, 0), -E.EBADF);
  fs.symlinkSync('f', path.join(dir, 'l'));
  tt.equal(sys.openAt(dfd, 'l', C.O_RDONLY | sys.O_NOFOLLOW, 0), -E.ELOOP);

  const abs = sys.openAt(sys.AT_FDCWD, path.join(dir, 'f'), C.O_RDONLY, 0);
  tt.ok(abs >= 0, 'AT_FDCWD with an absolute path');
  const pfd = sys.openAt(dfd, 'l', sys.O_PATH | sys.O_NOFOLLOW, 0);
  tt.ok(pfd >= 0, 'O_PATH on a symlink');
  tt.equal(sys.fstat(pfd, out), 0);
  tt.equal(u(out, 0) & C.S_IFMT, C.S_IFLNK, 'the O_PATH fd is the link itself');
  sys.close(abs);
  sys.close(pfd);
});

t.test('lstatAt', async (tt) => {
  const { dir, fd: dfd } = scratch('stat');
  fs.writeFileSync(path.join(dir, 'f'), 'data');
  fs.symlinkSync('f', path.join(dir, 'l'));
  fs.mkdirSync(path.join(dir, 'd'));
  tt.equal(sys.mknodAt(dfd, 'null', C.S_IFCHR | 0o600, makedev(1, 3)), 0);

  for (const name of ['f', 'l', 'd', 'null']) {
    sameStat(tt, lstat(dfd, name), fs.lstatSync(path.join(dir, name), { bigint: true }));
  }
  tt.equal(u(lstat(dfd, 'l'), 0) & C.S_IFMT, C.S_IFLNK, 'symlink not followed');
  tt.equal(u(lstat(dfd, 'null'), 9), makedev(1, 3), 'rdev');
  sameStat(tt, lstat(dfd, ''), fs.lstatSync(dir, { bigint: true }));
  sameStat(tt, lstat(sys.AT_FDCWD, path.join(dir, 'f')), fs.lstatSync(path.join(dir, 'f'), { bigint: true }));

  const out = new Uint32Array(22).fill(7);
  tt.equal(sys.lstatAt(dfd, 'missing', out), -E.ENOENT);
  tt.equal(sys.lstatAt(dfd, 'f/x', out), -E.ENOTDIR);
  tt.equal(sys.lstatAt(-1, 'f', out), -E.EBADF);
  tt.equal(sys.lstatAt(-1, '', out), -E.EBADF);
  tt.ok(out.every((v) => v === 7), 'out untouched on error');

  // 64-bit sizes and two's complement timestamps.
  const fd = sys.openAt(dfd, 'big', C.O_CREAT | C.O_WRONLY, 0o644);
  tt.equal(sys.ftruncate(fd, 5 * GiB + 3), 0);
  tt.equal(sys.utimensAt(dfd, 'big', -1_500_000_000, 123, 2 ** 33 + 5, 999_999_999), 0);
  const big = lstat(dfd, 'big');
  tt.equal(u(big, 3), GiB + 3, 'size low');
  tt.equal(u(big, 4), 1, 'size high');
  tt.equal(s64(big, 13), -1_500_000_000n, 'negative atime');
  tt.equal(u(big, 14), 0xffffffff, 'atime high word is the sign extension');
  tt.equal(u(big, 15), 123);
  tt.equal(u64(big, 16), 2n ** 33n + 5n, 'mtime beyond 32 bits');
  tt.equal(u(big, 18), 999_999_999);
  sameStat(tt, big, fs.lstatSync(path.join(dir, 'big'), { bigint: true }));
  sys.close(fd);
});

t.test('syncfs', async (tt) => {
  const fd = sys.openAt(sys.AT_FDCWD, '/tmp', C.O_RDONLY | sys.O_DIRECTORY, 0);
  tt.equal(sys.syncfs(fd), 0, 'flushes the filesystem of a directory fd');
  sys.close(fd);
  tt.equal(sys.syncfs(fd), -E.EBADF, 'a closed fd: -EBADF');
});

t.test('syncfsAsync', async (tt) => {
  const fd = sys.openAt(sys.AT_FDCWD, '/tmp', C.O_RDONLY | sys.O_DIRECTORY, 0);
  tt.equal(await new Promise<number>((res) => sys.syncfsAsync(fd, res)), 0, 'flushes on the threadpool');
  sys.close(fd);
  tt.equal(await new Promise<number>((res) => sys.syncfsAsync(fd, res)), -E.EBADF, 'a closed fd: -EBADF');
  tt.throws(() => sys.syncfsAsync(fd, 3 as unknown as () => void), TypeError, 'the callback must be a function');
});

t.test('statvfsFd', async (tt) => {
  const out = new Float64Array(11);
  const fd = fs.openSync(root, 'r');
  tt.equal(sys.statvfsFd(fd, out), 0);
  const sf = fs.statfsSync(root);
  tt.equal(out[0], sf.bsize, 'bsize');
  tt.equal(out[2], sf.blocks, 'blocks');
  tt.equal(out[5], sf.files, 'files');
  tt.ok(out[10]! >= 255, 'namemax');
  fs.closeSync(fd);
  tt.equal(sys.statvfsFd(fd, out), -E.EBADF);
});

t.test('mkdirAt, mknodAt, symlinkAt, linkAt, unlinkAt', async (tt) => {
  const { dir, fd: dfd } = scratch('ns');
  tt.equal(sys.mkdirAt(dfd, 'd', 0o750), 0);
  tt.equal(fs.statSync(path.join(dir, 'd')).mode & 0o7777, 0o750 & ~process.umask());
  tt.equal(sys.mkdirAt(dfd, 'd', 0o755), -E.EEXIST);
  tt.equal(sys.mkdirAt(dfd, 'nope/d', 0o755), -E.ENOENT);

  tt.equal(sys.mknodAt(dfd, 'fifo', C.S_IFIFO | 0o644, 0), 0);
  tt.ok(fs.lstatSync(path.join(dir, 'fifo')).isFIFO());
  tt.equal(sys.mknodAt(dfd, 'wh', C.S_IFCHR, 0), 0, 'whiteout-style 0:0 device');
  tt.equal(fs.lstatSync(path.join(dir, 'wh')).rdev, 0);
  tt.equal(sys.mknodAt(dfd, 'fifo', C.S_IFIFO | 0o644, 0), -E.EEXIST);

  tt.equal(sys.symlinkAt('../somewhere/ü', dfd, 'sl'), 0);
  tt.equal(fs.readlinkSync(path.join(dir, 'sl')), '../somewhere/ü');
  tt.equal(sys.symlinkAt('x', dfd, 'sl'), -E.EEXIST);

  fs.writeFileSync(path.join(dir, 'f'), 'x');
  tt.equal(sys.linkAt(dfd, 'f', dfd, 'd/f2'), 0);
  tt.equal(fs.statSync(path.join(dir, 'f')).nlink, 2);
  tt.equal(sys.linkAt(dfd, 'sl', dfd, 'sl2'), 0, 'links a dangling symlink itself');
  tt.ok(fs.lstatSync(path.join(dir, 'sl2')).isSymbolicLink());
  tt.equal(sys.linkAt(dfd, 'missing', dfd, 'x'), -E.ENOENT);
  tt.equal(sys.linkAt(dfd, 'f', dfd, 'd/f2'), -E.EEXIST);

  tt.equal(sys.unlinkAt(dfd, 'd', 0), -E.EISDIR);
  tt.equal(sys.unlinkAt(dfd, 'd', sys.AT_REMOVEDIR), -E.ENOTEMPTY);
  tt.equal(sys.unlinkAt(dfd, 'd/f2', 0), 0);
  tt.equal(sys.unlinkAt(dfd, 'd', sys.AT_REMOVEDIR), 0);
  tt.equal(sys.unlinkAt(dfd, 'f', sys.AT_REMOVEDIR), -E.ENOTDIR);
  tt.equal(sys.unlinkAt(dfd, 'f', 0), 0);
  tt.equal(sys.unlinkAt(dfd, 'f', 0), -E.ENOENT);
});

t.test('renameAt2', async (tt) => {
  const { dir, fd: dfd } = scratch('rename');
  const put = (n: string, v: string): void => fs.writeFileSync(path.join(dir, n), v);
  const get = (n: string): string => fs.readFileSync(path.join(dir, n), 'utf8');
  put('a', 'A');
  put('b', 'B');
  tt.equal(sys.renameAt2(dfd, 'a', dfd, 'b', sys.RENAME_NOREPLACE), -E.EEXIST);
  tt.equal(sys.renameAt2(dfd, 'a', dfd, 'b', sys.RENAME_EXCHANGE), 0);
  tt.equal(get('a'), 'B');
  tt.equal(get('b'), 'A');
  tt.equal(sys.renameAt2(dfd, 'a', dfd, 'c', sys.RENAME_EXCHANGE), -E.ENOENT, 'exchange needs both');
  tt.equal(sys.renameAt2(dfd, 'a', dfd, 'c', sys.RENAME_NOREPLACE), 0);
  tt.equal(sys.renameAt2(dfd, 'c', dfd, 'b', 0), 0, 'plain rename replaces');
  tt.equal(get('b'), 'B');
  tt.notOk(fs.existsSync(path.join(dir, 'c')));
  tt.equal(sys.renameAt2(dfd, 'b', dfd, 'x', sys.RENAME_NOREPLACE | sys.RENAME_EXCHANGE), -E.EINVAL);
  tt.equal(sys.renameAt2(dfd, 'missing', dfd, 'x', 0), -E.ENOENT);

  const r = sys.renameAt2(dfd, 'b', dfd, 'w', sys.RENAME_WHITEOUT);
  if (r === -E.EINVAL || r === -E.EOPNOTSUPP) {
    tt.pass('RENAME_WHITEOUT', { skip: 'file system has no whiteouts' });
  } else {
    tt.equal(r, 0, 'whiteout rename');
    const st = fs.lstatSync(path.join(dir, 'b'));
    tt.ok(st.isCharacterDevice() && st.rdev === 0, 'whiteout left behind');
    tt.equal(get('w'), 'B');
  }
});

t.test('readlinkAt', async (tt) => {
  const { dir, fd: dfd } = scratch('readlink');
  fs.symlinkSync('target/ünïcödé', path.join(dir, 'l'));
  tt.equal(sys.readlinkAt(dfd, 'l'), 'target/ünïcödé');
  const long = 'x/'.repeat(2047) + 'y'; // 4095 bytes, the longest allowed
  fs.symlinkSync(long, path.join(dir, 'long'));
  tt.equal(sys.readlinkAt(dfd, 'long'), long);
  tt.equal(sys.readlinkAt(sys.AT_FDCWD, path.join(dir, 'l')), 'target/ünïcödé');
  fs.writeFileSync(path.join(dir, 'f'), '');
  tt.equal(sys.readlinkAt(dfd, 'f'), -E.EINVAL);
  tt.equal(sys.readlinkAt(dfd, 'missing'), -E.ENOENT);
  tt.equal(sys.readlinkAt(-1, 'l'), -E.EBADF);
});

t.test('chmodAt, chownAt, utimensAt', async (tt) => {
  const { dir, fd: dfd } = scratch('attrs');
  const f = path.join(dir, 'f');
  fs.writeFileSync(f, '', { mode: 0o644 });
  fs.symlinkSync('f', path.join(dir, 'l'));
  fs.mkdirSync(path.join(dir, 'd'));

  tt.equal(sys.chmodAt(dfd, 'f', 0o4711), 0);
  tt.equal(fs.statSync(f).mode & 0o7777, 0o4711);
  tt.equal(sys.chmodAt(dfd, 'd', 0o1777), 0);
  tt.equal(fs.statSync(path.join(dir, 'd')).mode & 0o7777, 0o1777);
  tt.equal(sys.chmodAt(dfd, 'l', 0o600), -E.EOPNOTSUPP, 'symlink refused');
  tt.equal(fs.statSync(f).mode & 0o7777, 0o4711, 'target untouched');
  tt.equal(sys.chmodAt(dfd, 'missing', 0o600), -E.ENOENT);
  tt.equal(sys.chmodAt(-1, 'f', 0o600), -E.EBADF);

  tt.equal(sys.chownAt(dfd, 'f', 1234, 5678), 0);
  tt.match(fs.statSync(f), { uid: 1234, gid: 5678 });
  tt.equal(sys.chownAt(dfd, 'f', -1, 42), 0, 'uid -1 kept');
  tt.match(fs.statSync(f), { uid: 1234, gid: 42 });
  tt.equal(sys.chownAt(dfd, 'f', 7, 0xffffffff), 0, 'gid 0xffffffff kept');
  tt.match(fs.statSync(f), { uid: 7, gid: 42 });
  tt.equal(sys.chownAt(dfd, 'l', 99, 98), 0);
  tt.match(fs.lstatSync(path.join(dir, 'l')), { uid: 99, gid: 98 }, 'the link itself changed');
  tt.match(fs.statSync(f), { uid: 7, gid: 42 }, 'not its target');
  tt.equal(sys.chownAt(dfd, 'missing', 0, 0), -E.ENOENT);

  tt.equal(sys.utimensAt(dfd, 'f', 1000, 1, 2000, 2), 0);
  tt.match(fs.statSync(f, { bigint: true }), { atimeNs: 1000_000_000_001n, mtimeNs: 2000_000_000_002n });
  tt.equal(sys.utimensAt(dfd, 'f', 0, sys.UTIME_OMIT, 3000, 0), 0);
  tt.match(fs.statSync(f, { bigint: true }), { atimeNs: 1000_000_000_001n, mtimeNs: 3000_000_000_000n });
  const before = Date.now() / 1000 - 5;
  tt.equal(sys.utimensAt(dfd, 'f', 0, sys.UTIME_NOW, 0, sys.UTIME_OMIT), 0);
  tt.ok(fs.statSync(f).atimeMs / 1000 > before, 'UTIME_NOW');
  tt.equal(sys.utimensAt(dfd, 'l', 10, 0, 20, 0), 0);
  tt.equal(fs.lstatSync(path.join(dir, 'l')).mtimeMs, 20_000, 'the link itself changed');
  tt.equal(fs.statSync(f).mtimeMs, 3_000_000, 'not its target');
  tt.equal(sys.utimensAt(dfd, 'f', 0, 1_000_000_000, 0, 0), -E.EINVAL, 'nsec out of range');
  tt.equal(sys.utimensAt(dfd, 'missing', 0, 0, 0, 0), -E.ENOENT);
});

t.test('fd attribute calls', async (tt) => {
  const { dir, fd: dfd } = scratch('fdattrs');
  const f = path.join(dir, 'f');
  const fd = sys.openAt(dfd, 'f', C.O_CREAT | C.O_RDWR, 0o600);
  tt.equal(sys.fchmod(fd, 0o2750), 0);
  tt.equal(fs.statSync(f).mode & 0o7777, 0o2750);
  tt.equal(sys.fchown(fd, 11, -1), 0);
  tt.match(fs.statSync(f), { uid: 11, gid: 0 });
  tt.equal(sys.futimens(fd, -1, 5, 2 ** 32, 6), 0);
  tt.match(fs.statSync(f, { bigint: true }), { atimeNs: -999_999_995n, mtimeNs: 2n ** 32n * 1_000_000_000n + 6n });
  tt.equal(sys.ftruncate(fd, 6 * GiB + 1), 0);
  tt.equal(fs.statSync(f).size, 6 * GiB + 1, 'ftruncate beyond 4 GiB');
  tt.equal(sys.ftruncate(fd, 10), 0);
  tt.equal(fs.statSync(f).size, 10);
  tt.equal(sys.ftruncate(fd, -1), -E.EINVAL);
  tt.equal(sys.fsync(fd), 0);
  tt.equal(sys.fdatasync(fd), 0);

  const ro = fs.openSync(f, 'r');
  tt.equal(sys.ftruncate(ro, 0), -E.EINVAL, 'not open for writing');
  fs.closeSync(ro);
  sys.close(fd);
  for (const [name, r] of [
    ['fchmod', sys.fchmod(fd, 0o600)],
    ['fchown', sys.fchown(fd, 0, 0)],
    ['futimens', sys.futimens(fd, 0, 0, 0, 0)],
    ['ftruncate', sys.ftruncate(fd, 0)],
    ['fsync', sys.fsync(fd)],
    ['fdatasync', sys.fdatasync(fd)],
  ] as const) {
    tt.equal(r, -E.EBADF, `${name} on a closed fd`);
  }
});

t.test('xattrs by path', async (tt) => {
  const { dir, fd: dfd } = scratch('xattr');
  fs.writeFileSync(path.join(dir, 'f'), '');
  fs.symlinkSync('f', path.join(dir, 'l'));
  const v = Buffer.from('value\0with nul');

  tt.equal(sys.getxattrAt(dfd, 'f', 'user.a'), -E.ENODATA, 'absent');
  tt.equal(sys.setxattrAt(dfd, 'f', 'user.a', v, 0), 0);
  tt.same(sys.getxattrAt(dfd, 'f', 'user.a'), v);
  tt.ok(Buffer.isBuffer(sys.getxattrAt(dfd, 'f', 'user.a')));
  tt.equal(sys.setxattrAt(dfd, 'f', 'user.a', v, sys.XATTR_CREATE), -E.EEXIST);
  tt.equal(sys.setxattrAt(dfd, 'f', 'user.b', v, sys.XATTR_REPLACE), -E.ENODATA);
  tt.equal(sys.setxattrAt(dfd, 'f', 'user.b', Buffer.alloc(0), sys.XATTR_CREATE), 0);
  tt.same(sys.getxattrAt(dfd, 'f', 'user.b'), Buffer.alloc(0), 'empty value');
  const big = Buffer.alloc(3000, 'z');
  tt.equal(sys.setxattrAt(dfd, 'f', 'user.a', big, sys.XATTR_REPLACE), 0);
  tt.same(sys.getxattrAt(dfd, 'f', 'user.a'), big, 'value grew');
  tt.equal(sys.setxattrAt(dfd, 'f', 'trusted.t', v, 0), 0);

  const names = sys.listxattrAt(dfd, 'f');
  tt.ok(Array.isArray(names));
  tt.same([...(names as string[])].sort(), ['trusted.t', 'user.a', 'user.b']);
  tt.same(sys.listxattrAt(sys.AT_FDCWD, path.join(dir, 'f')), names, 'AT_FDCWD, same order');

  // A final symlink is never followed.
  tt.equal(sys.getxattrAt(dfd, 'l', 'user.a'), -E.ENODATA, 'link has no user.a');
  tt.same(sys.listxattrAt(dfd, 'l'), []);
  tt.equal(sys.setxattrAt(dfd, 'l', 'user.a', v, 0), -E.EPERM, 'no user.* on symlinks');
  tt.equal(sys.setxattrAt(dfd, 'l', 'trusted.l', v, 0), 0);
  tt.same(sys.getxattrAt(dfd, 'l', 'trusted.l'), v, 'set on the link itself');
  tt.equal(sys.getxattrAt(dfd, 'f', 'trusted.l'), -E.ENODATA, 'not on its target');
  tt.equal(sys.removexattrAt(dfd, 'l', 'trusted.l'), 0);

  // "" is the dirfd itself.
  tt.equal(sys.setxattrAt(dfd, '', 'user.dir', v, 0), 0);
  tt.same(sys.getxattrAt(sys.AT_FDCWD, dir, 'user.dir'), v);
  tt.same(sys.listxattrAt(dfd, ''), ['user.dir']);
  tt.equal(sys.removexattrAt(dfd, '', 'user.dir'), 0);

  // A directory fd opened with O_PATH works both as a base and as the target.
  const pfd = sys.openAt(sys.AT_FDCWD, dir, sys.O_PATH | sys.O_DIRECTORY, 0);
  tt.same(sys.getxattrAt(pfd, 'f', 'trusted.t'), v, 'O_PATH dirfd');
  tt.equal(sys.setxattrAt(pfd, '', 'user.p', v, 0), 0, 'O_PATH fd itself');
  tt.same(sys.getxattrAt(pfd, '', 'user.p'), v);
  tt.same(sys.listxattrAt(pfd, ''), ['user.p']);
  tt.equal(sys.removexattrAt(pfd, '', 'user.p'), 0);
  sys.close(pfd);

  tt.equal(sys.removexattrAt(dfd, 'f', 'user.b'), 0);
  tt.equal(sys.removexattrAt(dfd, 'f', 'user.b'), -E.ENODATA);
  tt.equal(sys.getxattrAt(dfd, 'missing', 'user.a'), -E.ENOENT);
  tt.equal(sys.listxattrAt(dfd, 'missing'), -E.ENOENT);
  tt.equal(sys.setxattrAt(dfd, 'missing', 'user.a', v, 0), -E.ENOENT);
  tt.equal(sys.removexattrAt(dfd, 'missing', 'user.a'), -E.ENOENT);
  tt.equal(sys.getxattrAt(dfd, 'f', 'bogus.ns'), -E.EOPNOTSUPP, 'unknown namespace');
  tt.equal(sys.getxattrAt(dfd, 'f', ''), -E.ERANGE, 'empty name');
});

t.test('xattrs on paths near PATH_MAX', async (tt) => {
  const { dir, fd: dfd } = scratch('xlong');
  // 16 directories of 250 bytes plus a 74-byte name: 4090 bytes, legal, but
  // over PATH_MAX once "/proc/self/fd/N/" is put in front.
  let rel = '';
  for (let i = 0; i < 16; i++) {
    rel += (i ? '/' : '') + String(i).padStart(250, 'd');
    tt.equal(sys.mkdirAt(dfd, rel, 0o755), 0);
  }
  const file = `${rel}/${'f'.repeat(74)}`;
  const link = `${rel}/${'l'.repeat(74)}`;
  tt.equal(Buffer.byteLength(file), 4090);
  const fd = sys.openAt(dfd, file, C.O_CREAT | C.O_RDWR, 0o644);
  tt.ok(fd >= 0);
  const v = Buffer.from('deep');
  tt.equal(sys.setxattrAt(dfd, file, 'user.deep', v, 0), 0);
  tt.same(sys.fgetxattr(fd, 'user.deep'), v, 'landed on the right file');
  tt.same(sys.getxattrAt(dfd, file, 'user.deep'), v);
  tt.same(sys.listxattrAt(dfd, file), ['user.deep']);
  tt.equal(sys.removexattrAt(dfd, file, 'user.deep'), 0);
  tt.equal(sys.getxattrAt(dfd, file, 'user.deep'), -E.ENODATA);
  tt.equal(sys.getxattrAt(dfd, `${rel}/${'m'.repeat(74)}`, 'user.deep'), -E.ENOENT);
  tt.equal(sys.symlinkAt('x', dfd, link), 0);
  // Linux 6.13+ (getxattrat) reaches the link itself; older kernels, through /proc, refuse it.
  const onLink = sys.setxattrAt(dfd, link, 'trusted.x', v, 0);
  if (onLink === 0) tt.same(sys.getxattrAt(dfd, link, 'trusted.x'), v, 'a symlink there: its own xattr, not followed');
  else tt.equal(onLink, -E.ENAMETOOLONG, 'a symlink there is refused');
  sys.close(fd);
  // fs.rmSync cannot reach this deep either: take the tree down ourselves.
  tt.equal(sys.unlinkAt(dfd, file, 0), 0);
  tt.equal(sys.unlinkAt(dfd, link, 0), 0);
  for (let d = rel; d; d = d.slice(0, Math.max(0, d.lastIndexOf('/')))) {
    tt.equal(sys.unlinkAt(dfd, d, sys.AT_REMOVEDIR), 0, `rmdir depth ${d.split('/').length}`);
  }
  tt.same(fs.readdirSync(dir), []);
});

t.test('xattrs by fd', async (tt) => {
  const { fd: dfd } = scratch('fxattr');
  const fd = sys.openAt(dfd, 'f', C.O_CREAT | C.O_RDWR, 0o644);
  const v = Buffer.from([0, 1, 2, 255]);
  tt.equal(sys.fgetxattr(fd, 'user.a'), -E.ENODATA);
  tt.equal(sys.fsetxattr(fd, 'user.a', v, sys.XATTR_CREATE), 0);
  tt.equal(sys.fsetxattr(fd, 'user.a', v, sys.XATTR_CREATE), -E.EEXIST);
  tt.equal(sys.fsetxattr(fd, 'user.c', v, sys.XATTR_REPLACE), -E.ENODATA);
  tt.equal(sys.fsetxattr(fd, 'user.b', Buffer.from('b'), 0), 0);
  tt.same(sys.fgetxattr(fd, 'user.a'), v);
  tt.same([...(sys.flistxattr(fd) as string[])].sort(), ['user.a', 'user.b']);
  tt.same(sys.getxattrAt(dfd, 'f', 'user.b'), Buffer.from('b'), 'same file by path');
  tt.equal(sys.fremovexattr(fd, 'user.a'), 0);
  tt.equal(sys.fremovexattr(fd, 'user.a'), -E.ENODATA);
  tt.same(sys.flistxattr(fd), ['user.b']);

  // O_PATH fds are refused by f*xattr; the module goes through /proc.
  const pfd = sys.openAt(dfd, 'f', sys.O_PATH, 0);
  tt.same(sys.fgetxattr(pfd, 'user.b'), Buffer.from('b'), 'O_PATH fd');
  tt.equal(sys.fsetxattr(pfd, 'user.p', v, 0), 0);
  tt.same(sys.flistxattr(pfd), sys.flistxattr(fd));
  tt.equal(sys.fremovexattr(pfd, 'user.p'), 0);
  sys.close(pfd);
  sys.close(fd);

  for (const bad of [fd, -1, 1 << 30]) {
    tt.equal(sys.fgetxattr(bad, 'user.a'), -E.EBADF, `fgetxattr(${bad})`);
    tt.equal(sys.fsetxattr(bad, 'user.a', v, 0), -E.EBADF);
    tt.equal(sys.flistxattr(bad), -E.EBADF);
    tt.equal(sys.fremovexattr(bad, 'user.a'), -E.EBADF);
  }
});

t.test('readdirAt', async (tt) => {
  const { dir, fd: dfd } = scratch('readdir');
  fs.writeFileSync(path.join(dir, 'file'), '');
  fs.mkdirSync(path.join(dir, 'dir'));
  fs.symlinkSync('file', path.join(dir, 'link'));
  fs.mkdirSync(path.join(dir, 'empty'));
  sys.mknodAt(dfd, 'fifo', C.S_IFIFO | 0o644, 0);
  sys.mknodAt(dfd, 'chr', C.S_IFCHR | 0o644, makedev(1, 3));
  sys.mknodAt(dfd, 'blk', C.S_IFBLK | 0o644, makedev(7, 0));
  sys.mknodAt(dfd, 'sock', C.S_IFSOCK | 0o644, 0);
  sys.mkdirAt(dfd, 'ünï', 0o755);
  const want: Record<string, number> = {
    file: sys.DT_REG, dir: sys.DT_DIR, link: sys.DT_LNK, empty: sys.DT_DIR, fifo: sys.DT_FIFO,
    chr: sys.DT_CHR, blk: sys.DT_BLK, sock: sys.DT_SOCK, 'ünï': sys.DT_DIR,
  };
  const asMap = (r: Sys.DirEntries | number): Record<string, number> => {
    if (typeof r === 'number') throw new Error(`readdirAt = ${r}`);
    tt.equal(r.names.length, r.types.length);
    tt.type(r.types, Uint8Array);
    return Object.fromEntries(r.names.map((n, i) => [n, r.types[i] ?? -1]));
  };
  for (const p of ['', '.']) {
    const m = asMap(sys.readdirAt(dfd, p));
    // DT_UNKNOWN is legal from any file system: accept it for every entry.
    for (const [n, ty] of Object.entries(m)) if (ty === sys.DT_UNKNOWN) m[n] = want[n] ?? -1;
    tt.same(m, want, `path "${p}"`);
  }
  tt.same(Object.keys(asMap(sys.readdirAt(sys.AT_FDCWD, dir))).sort(), Object.keys(want).sort());
  tt.same(sys.readdirAt(dfd, 'empty'), { names: [], types: new Uint8Array(0), inos: new Float64Array(0) });
  const withInos = sys.readdirAt(dfd, '');
  if (typeof withInos === 'number') throw new Error('readdirAt failed');
  withInos.names.forEach((n, i) => tt.equal(withInos.inos[i], Number(fs.lstatSync(path.join(dir, n), { bigint: true }).ino), `d_ino of ${n}`));
  tt.equal(sys.readdirAt(dfd, 'link'), -E.ENOTDIR, 'symlink to a file');

  for (let i = 0; i < 1500; i++) fs.writeFileSync(path.join(dir, 'dir', `n${i}`), '');
  const many = asMap(sys.readdirAt(dfd, 'dir'));
  tt.equal(Object.keys(many).length, 1500);
  tt.ok(Object.values(many).every((ty) => ty === sys.DT_REG || ty === sys.DT_UNKNOWN));

  tt.equal(sys.readdirAt(dfd, 'file'), -E.ENOTDIR);
  tt.equal(sys.readdirAt(dfd, 'missing'), -E.ENOENT);
  tt.equal(sys.readdirAt(-1, ''), -E.EBADF);
  tt.equal(Object.keys(asMap(sys.readdirAt(dfd, ''))).length, 9, 'repeatable: dirfd offset untouched');
});

t.test('treeSummary: any change lstat sees, below a directory or of a file, changes the digest', async (tt) => {
  const { dir } = scratch('summary');
  fs.mkdirSync(path.join(dir, 'a/b'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'a/b/f'), 'one');
  fs.writeFileSync(path.join(dir, 'top'), 'x');
  fs.symlinkSync('/nowhere', path.join(dir, 'a/link'));
  const sum = (p = dir) => {
    const r = sys.treeSummary(p);
    if (typeof r === 'number') throw new Error(`treeSummary = ${r}`);
    return r;
  };
  const first = sum();
  tt.match(first, /^[0-9a-f]{64}$/);
  tt.equal(sum(), first, 'the same tree, the same digest');
  fs.writeFileSync(path.join(dir, 'a/b/f'), 'two');
  fs.utimesSync(path.join(dir, 'a/b/f'), 1000, 1000);
  const rewritten = sum();
  tt.not(rewritten, first, 'new content of the same size (ctime moved)');
  fs.utimesSync(path.join(dir, 'a/b/f'), 1000, 1000);
  tt.not(sum(), rewritten, 'a times change alone');
  const before = sum();
  fs.chmodSync(path.join(dir, 'top'), 0o600);
  tt.not(sum(), before, 'a mode change');
  const again = sum();
  fs.renameSync(path.join(dir, 'a/link'), path.join(dir, 'a/link2'));
  tt.not(sum(), again, 'a rename');
  tt.equal(sum(path.join(dir, 'top')), sum(path.join(dir, 'top')), 'a file summarises on its own');
  const link = sys.treeSummary(path.join(dir, 'a/link2'));
  tt.type(link, 'string', 'a symlink is summarised, not followed');

  tt.equal(sys.treeSummary(path.join(dir, 'missing')), -E.ENOENT);
  tt.equal(sys.treeSummary('bad\0name'), -E.EINVAL);
  let deep = path.join(dir, 'deep');
  for (let i = 0; i < 300; i++) deep = path.join(deep, 'd');
  fs.mkdirSync(deep, { recursive: true });
  tt.equal(sys.treeSummary(path.join(dir, 'deep')), -E.ELOOP, 'a tree deeper than 256 levels is refused');
});

t.test('file writer: files, directories and symlinks in order; the first failure is kept', async (tt) => {
  const { dir, fd } = scratch('writer');
  const w = sys.writerOpen(fd);
  tt.equal(sys.writerDir(w, 'd', true, 12, 34, 0o2750), 0);
  tt.equal(sys.writerCreate(w, 'd/f', 0o600), 0);
  const big = Buffer.alloc(3 * MiB, 7);
  tt.equal(sys.writerData(w, Buffer.from('head-')), 0);
  tt.equal(sys.writerData(w, big), 0);
  big.fill(0); // the writer copied the chunk when it was submitted
  tt.equal(sys.writerXattr(w, 'user.k', Buffer.from([0, 255, 1])), 0);
  tt.equal(sys.writerFinish(w, 56, 78, true, 0o4755, 1_000_000_000, 5, 1_600_000_000, 123_456_789), 0);
  tt.equal(sys.writerSymlink(w, 'd/l', '../nowhere', 9, 10, 1_000_000_000, 0, 1_500_000_000, 42), 0);
  tt.equal(sys.writerWait(w), null, 'no failure');
  const st = fs.lstatSync(path.join(dir, 'd/f'), { bigint: true });
  tt.equal(Number(st.mode & 0o7777n), 0o4755, 'mode set after chown (setuid kept)');
  tt.same([Number(st.uid), Number(st.gid)], [56, 78]);
  tt.equal(st.mtimeNs, 1_600_000_000_123_456_789n);
  tt.equal(st.size, BigInt(5 + 3 * MiB));
  const data = fs.readFileSync(path.join(dir, 'd/f'));
  tt.equal(data.subarray(0, 5).toString(), 'head-');
  tt.ok(data.subarray(5).every((b) => b === 7), 'the data as submitted');
  tt.same(sys.getxattrAt(fd, 'd/f', 'user.k'), Buffer.from([0, 255, 1]));
  const d = fs.lstatSync(path.join(dir, 'd'));
  tt.same([d.mode & 0o7777, d.uid, d.gid], [0o2750, 12, 34]);
  const l = fs.lstatSync(path.join(dir, 'd/l'), { bigint: true });
  tt.same([fs.readlinkSync(path.join(dir, 'd/l')), Number(l.uid), l.mtimeNs], ['../nowhere', 9, 1_500_000_000_000_000_042n]);

  // A failure: everything after it is dropped, and submits say so.
  tt.equal(sys.writerCreate(w, 'd/f', 0o644), 0, 'queued; fails on the thread');
  sys.writerData(w, Buffer.from('lost'));
  sys.writerFinish(w, 0, 0, false, -1, 0, 0, 0, 0);
  tt.same(sys.writerWait(w), [E.EEXIST, 'create', 'd/f']);
  tt.equal(sys.writerCreate(w, 'd/g', 0o644), 1, 'the writer has failed');
  tt.equal(sys.writerDir(w, 'e', true, 0, 0, 0o755), 1);
  tt.same(sys.writerClose(w), [E.EEXIST, 'create', 'd/f']);
  tt.notOk(fs.existsSync(path.join(dir, 'd/g')) || fs.existsSync(path.join(dir, 'e')), 'nothing after the failure');
  tt.equal(fs.readFileSync(path.join(dir, 'd/f')).length, 5 + 3 * MiB, 'the existing file untouched');
  tt.throws(() => sys.writerWait(w), /closed/, 'a closed writer refuses calls');
  const w2 = sys.writerOpen(fd);
  tt.equal(sys.writerCreate(w2, 'x'.repeat(5000), 0o644), -E.ENAMETOOLONG, 'a path the kernel cannot take');
  tt.equal(sys.writerCreate(w2, 'a\0b', 0o644), -E.EINVAL);
  tt.equal(sys.writerClose(w2), null);
});

t.test('digest: SHA-256 of chunks hashed in order on the threadpool', async (tt) => {
  const chunks = [Buffer.from('hello '), Buffer.alloc(3 * MiB, 9), Buffer.from('world')];
  const d = sys.digestOpen();
  for (const c of chunks) {
    const ok = await new Promise<boolean>((resolve) => sys.digestUpdate(d, c, resolve));
    tt.equal(ok, true);
  }
  const want = crypto.createHash('sha256');
  for (const c of chunks) want.update(c);
  tt.equal(sys.digestFinish(d), want.digest('hex'));
  tt.throws(() => sys.digestFinish(d), /already finished/);
  const busy = sys.digestOpen();
  const done = new Promise<boolean>((resolve) => sys.digestUpdate(busy, Buffer.alloc(MiB), resolve));
  tt.throws(() => sys.digestUpdate(busy, Buffer.alloc(1), () => {}), /another update runs/, 'one update at a time');
  tt.throws(() => sys.digestFinish(busy), /while an update runs/);
  await done;
  tt.equal(sys.digestFinish(busy), crypto.createHash('sha256').update(Buffer.alloc(MiB)).digest('hex'));
});

t.test('digest: an update may carry a list of chunks, hashed in list order', async (tt) => {
  const chunks = [Buffer.from('a'), Buffer.alloc(0), Buffer.alloc(2 * MiB, 7), crypto.randomBytes(513)];
  const d = sys.digestOpen();
  tt.equal(await new Promise<boolean>((resolve) => sys.digestUpdate(d, chunks, resolve)), true);
  tt.equal(await new Promise<boolean>((resolve) => sys.digestUpdate(d, [], resolve)), true, 'an empty list hashes nothing');
  tt.equal(await new Promise<boolean>((resolve) => sys.digestUpdate(d, Buffer.from('z'), resolve)), true);
  const want = crypto.createHash('sha256');
  for (const c of chunks) want.update(c);
  tt.equal(sys.digestFinish(d), want.update('z').digest('hex'));
  const other = sys.digestOpen();
  tt.throws(() => sys.digestUpdate(other, [Buffer.from('x'), 'y' as unknown as Buffer], () => {}), /must be a Buffer/, 'every element is checked');
  tt.equal(await new Promise<boolean>((resolve) => sys.digestUpdate(other, [Buffer.from('x')], resolve)), true, 'a refused list starts no job');
  tt.equal(sys.digestFinish(other), crypto.createHash('sha256').update('x').digest('hex'));
});

t.test('readFileAt: a regular file of the size given, read whole on the threadpool', async (tt) => {
  const { dir, fd } = scratch('readfile');
  const body = crypto.randomBytes(70000);
  fs.writeFileSync(path.join(dir, 'f'), body);
  fs.symlinkSync('f', path.join(dir, 'link'));
  fs.mkdirSync(path.join(dir, 'd'));
  const read = (name: string, size: number) =>
    new Promise<{ r: number; buf: Buffer }>((resolve) => {
      const buf = Buffer.alloc(size);
      sys.readFileAt(fd, name, buf, (r) => resolve({ r, buf }));
    });
  const whole = await read('f', body.length);
  tt.equal(whole.r, body.length);
  tt.ok(whole.buf.equals(body), 'the content');
  tt.equal((await read('f', body.length - 1)).r, -E.ERANGE, 'a file shorter than asked');
  tt.equal((await read('f', body.length + 1)).r, -E.ERANGE, 'a file longer than asked');
  tt.equal((await read('d', 0)).r, -E.ERANGE, 'a directory is not a regular file');
  tt.equal((await read('link', body.length)).r, -E.ELOOP, 'a final symlink is not followed');
  tt.equal((await read('missing', 1)).r, -E.ENOENT);
  execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  tt.equal((await read('fifo', 10)).r, -E.ERANGE, 'a FIFO is refused without blocking');
  // The job holds its own copy of the directory descriptor: closing the caller's at once is fine.
  const own = fs.openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  const early = new Promise<number>((resolve) => sys.readFileAt(own, 'f', Buffer.alloc(body.length), resolve));
  fs.closeSync(own);
  tt.equal(await early, body.length, 'read after the caller closed its descriptor');
  tt.equal(await new Promise<number>((resolve) => sys.readFileAt(1 << 20, 'f', Buffer.alloc(1), resolve)), -E.EBADF, 'no such descriptor');
  tt.throws(() => sys.readFileAt(fd, 'f\0x', Buffer.alloc(1), () => {}), /bad path/, 'a NUL in the name');
  tt.throws(() => sys.readFileAt(fd, 'f', 'not a buffer' as unknown as Buffer, () => {}), TypeError);
});

t.test('copyData', async (tt) => {
  const { dir, fd: dfd } = scratch('copy');
  const pattern = (seed: number, len: number): Buffer => {
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = (i * 31 + seed) & 0xff;
    return b;
  };
  const readAt = (fd: number, pos: number, len: number): Buffer => {
    const b = Buffer.alloc(len);
    tt.equal(fs.readSync(fd, b, 0, len, pos), len);
    return b;
  };

  // Sparse source: data at 0 and just past 4 GiB, a trailing hole to 6 GiB.
  const far = 4 * GiB + 12288;
  const size = 6 * GiB + 12345;
  const a = pattern(1, MiB);
  const b = pattern(2, MiB);
  const src = fs.openSync(path.join(dir, 'src'), 'w+');
  fs.writeSync(src, a, 0, a.length, 0);
  fs.writeSync(src, b, 0, b.length, far);
  fs.ftruncateSync(src, size);

  const dst = sys.openAt(dfd, 'dst', C.O_CREAT | C.O_EXCL | C.O_RDWR, 0o644);
  let sync = true;
  const done = new Promise<number>((resolve) =>
    sys.copyData(src, dst, (r) => {
      tt.notOk(sync, 'callback is asynchronous');
      resolve(r);
    }),
  );
  sync = false;
  const copied = await done;
  tt.ok(copied >= 2 * MiB && copied <= 2 * MiB + 2 * 65536, `data only copied (${copied} bytes)`);
  const st = fs.fstatSync(dst);
  tt.equal(st.size, size, 'size kept, trailing hole included');
  tt.ok(st.blocks * 512 < 64 * MiB, `holes preserved (${st.blocks * 512} bytes allocated)`);
  tt.same(readAt(dst, 0, MiB), a);
  tt.same(readAt(dst, far, MiB), b);
  tt.same(readAt(dst, 2 * GiB, 4096), Buffer.alloc(4096), 'hole reads as zeros');
  tt.same(readAt(dst, size - 100, 100), Buffer.alloc(100), 'trailing hole');
  sys.close(dst);

  // Across file systems copy_file_range fails with EXDEV: pread/pwrite path.
  if (fs.existsSync('/dev/shm') && fs.statSync('/dev/shm').dev !== fs.statSync(dir).dev) {
    const shm = fs.mkdtempSync('/dev/shm/strata-sys-test-');
    tt.teardown(() => fs.rmSync(shm, { recursive: true, force: true }));
    const x = fs.openSync(path.join(shm, 'x'), 'w+');
    tt.equal(await copy(src, x), copied, 'cross-fs copy');
    tt.equal(fs.fstatSync(x).size, size);
    tt.ok(fs.fstatSync(x).blocks * 512 < 64 * MiB, 'holes preserved across file systems');
    tt.same(readAt(x, 0, MiB), a);
    tt.same(readAt(x, far, MiB), b);
    fs.closeSync(x);
  } else {
    tt.pass('cross-fs copy', { skip: 'no separate /dev/shm' });
  }

  // A dense small file, and an empty one.
  const small = fs.openSync(path.join(dir, 'small'), 'w+');
  fs.writeSync(small, 'hello world');
  const d2 = sys.openAt(dfd, 'small.copy', C.O_CREAT | C.O_RDWR, 0o644);
  tt.equal(await copy(small, d2), 11);
  tt.equal(fs.readFileSync(path.join(dir, 'small.copy'), 'utf8'), 'hello world');
  const empty = fs.openSync(path.join(dir, 'empty'), 'w+');
  const d3 = sys.openAt(dfd, 'empty.copy', C.O_CREAT | C.O_RDWR, 0o644);
  tt.equal(await copy(empty, d3), 0);
  tt.equal(fs.fstatSync(d3).size, 0);

  // Errors arrive through the callback.
  const ro = fs.openSync(path.join(dir, 'small.copy'), 'r');
  tt.equal(await copy(-1, d2), -E.EBADF, 'bad source');
  tt.equal(await copy(small, -1), -E.EBADF, 'bad destination');
  tt.equal(await copy(small, ro), -E.EBADF, 'destination not writable');
  const wo = fs.openSync(path.join(dir, 'wo'), 'w');
  fs.writeSync(wo, 'data');
  tt.equal(await copy(wo, d3), -E.EBADF, 'source not readable');
  for (const fd of [src, small, empty, ro, wo]) fs.closeSync(fd);
  sys.close(d2);
  sys.close(d3);
});

t.test('umount2', async (tt) => {
  const { dir } = scratch('mnt');
  tt.equal(sys.umount2(path.join(dir, 'missing'), 0), -E.ENOENT);
  tt.equal(sys.umount2(dir, 0), -E.EINVAL, 'not a mount point');
  try {
    execFileSync('mount', ['-t', 'tmpfs', 'strata-sys-test', dir], { stdio: 'ignore' });
  } catch {
    tt.pass('mounted umount2', { skip: 'cannot mount a tmpfs here' });
    return;
  }
  mounts.push(dir);
  fs.writeFileSync(path.join(dir, 'on-tmpfs'), '');
  tt.equal(sys.umount2(dir, 0), 0);
  tt.notOk(fs.existsSync(path.join(dir, 'on-tmpfs')), 'unmounted');
  tt.equal(sys.umount2(dir, 0), -E.EINVAL, 'already unmounted');

  execFileSync('mount', ['-t', 'tmpfs', 'strata-sys-test', dir], { stdio: 'ignore' });
  const busy = fs.openSync(path.join(dir, 'busy'), 'w');
  tt.equal(sys.umount2(dir, 0), -E.EBUSY, 'busy');
  tt.equal(sys.umount2(dir, sys.MNT_DETACH | sys.UMOUNT_NOFOLLOW), 0, 'lazy unmount');
  tt.notOk(fs.existsSync(path.join(dir, 'busy')));
  fs.closeSync(busy);
  mounts.pop();
});
