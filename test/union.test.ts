/**
 * Union semantics through a real strata mount, one behaviour per test, checked against the
 * layers on disk (the overlay format) and, where it matters, against kernel overlayfs.
 */
import t from 'tap';
import { closeSync, existsSync, fstatSync, lstatSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { sys } from '../driver/native/sys.js';
import { kernelLayers, ociLayers } from './lib/fixtures.js';
import { layout, mountKernel, mountStrata, tempDir, unmountStrata, type Layout } from './lib/mounts.js';
import { must, sh, strata } from './lib/run.js';
import { diffSnapshots, snapshot } from './lib/tree.js';

function strataOver(t: Tap, build: (lowers: string[]) => void = kernelLayers, rw = true): Layout {
  const l = layout(tempDir(t));
  build(l.lowers);
  mountStrata(t, l, [], rw);
  return l;
}
type Tap = Parameters<Parameters<typeof t.test>[1]>[0];

const xattr = (p: string, n: string): string | null => {
  const v = sys.getxattrAt(sys.AT_FDCWD, p, n);
  return typeof v === 'number' ? null : v.toString();
};
const isWhiteout = (p: string): boolean => {
  const st = lstatSync(p);
  return st.isCharacterDevice() && st.rdev === 0;
};

t.test('the merged view equals kernel overlayfs over the same layers', async (t) => {
  const base = tempDir(t);
  const k = layout(base, 3, 'k-');
  const s = layout(base, 3, 's-');
  kernelLayers(k.lowers);
  kernelLayers(s.lowers);
  mountKernel(t, k, false);
  mountStrata(t, s, [], false);
  t.same(diffSnapshots(snapshot(k.mnt, { nlink: true, mtime: true }), snapshot(s.mnt, { nlink: true, mtime: true })), []);
});

t.test('OCI-form whiteouts and opaque markers read like the kernel forms', async (t) => {
  const base = tempDir(t);
  const k = layout(base, 3, 'k-');
  const s = layout(base, 3, 's-');
  kernelLayers(k.lowers);
  ociLayers(s.lowers);
  mountKernel(t, k, false);
  mountStrata(t, s, [], false);
  t.same(diffSnapshots(snapshot(k.mnt), snapshot(s.mnt)), []);
  t.notOk(readdirSync(join(s.mnt, 'opq')).some((n) => n.startsWith('.wh.')), 'no .wh. names are listed');
});

t.test('without an upper the mount is read-only: writes get EROFS', async (t) => {
  const l = strataOver(t, kernelLayers, false);
  t.throws(() => writeFileSync(join(l.mnt, 'etc/hostname'), 'x'), { code: 'EROFS' });
  t.throws(() => writeFileSync(join(l.mnt, 'new'), 'x'), { code: 'EROFS' });
  t.throws(() => unlinkSync(join(l.mnt, 'etc/hostname')), { code: 'EROFS' });
  t.equal(readFileSync(join(l.mnt, 'etc/hostname'), 'utf8'), 'mid-hostname\n');
});

t.test('copy-up keeps data and all metadata: mode with setuid, owner, ns times, xattrs, capabilities, ACLs', async (t) => {
  const l = strataOver(t);
  const low = join(l.lowers[2]!, 'data/kept.txt');
  must(`setcap cap_net_raw+ep ${low} 2>/dev/null || setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= ${low}`);
  must(`setfacl -m u:1234:r ${low}`);
  must(`touch -h -d '2019-05-06 07:08:09.987654321' ${low}`);
  const before = lstatSync(join(l.mnt, 'data/kept.txt'), { bigint: true });
  must(`setfattr -n user.extra -v 1 ${join(l.mnt, 'data/kept.txt')}`); // triggers copy-up
  const up = join(l.upper, 'data/kept.txt');
  t.ok(existsSync(up), 'copied up');
  const st = lstatSync(up, { bigint: true });
  t.equal(st.mode, before.mode, 'mode');
  t.equal(st.uid, 1000n);
  t.equal(st.gid, 1000n);
  t.equal(st.mtimeNs, before.mtimeNs, 'mtime to the nanosecond');
  t.equal(readFileSync(up, 'utf8'), 'kept\n');
  t.equal(xattr(up, 'user.comment'), 'lower');
  t.ok(xattr(up, 'security.capability') !== null, 'security.capability kept');
  t.match(must(`getfacl -p ${up}`), /user:1234:r/, 'ACL kept');
  t.equal(xattr(low, 'user.extra'), null, 'the lower layer is untouched');

  must(`chmod 4711 ${join(l.mnt, 'usr/bin/tool')}`);
  t.equal(lstatSync(join(l.upper, 'usr/bin/tool')).mode & 0o7777, 0o4711, 'setuid survives chmod copy-up');
  t.equal(statSync(join(l.upper, 'usr/bin')).mtimeMs, statSync(join(l.lowers[2]!, 'usr/bin')).mtimeMs, 'parents copied with their times');
});

t.test('unlink of a lower file writes a kernel whiteout; of an upper-only file, nothing', async (t) => {
  const l = strataOver(t);
  unlinkSync(join(l.mnt, 'etc/passwd'));
  t.ok(isWhiteout(join(l.upper, 'etc/passwd')), 'char 0:0 whiteout');
  t.notOk(existsSync(join(l.mnt, 'etc/passwd')));
  writeFileSync(join(l.mnt, 'etc/fresh'), 'x');
  unlinkSync(join(l.mnt, 'etc/fresh'));
  t.notOk(existsSync(join(l.upper, 'etc/fresh')), 'no whiteout where no lower has the name');
  t.notOk(readdirSync(join(l.mnt, 'etc')).includes('passwd'));
});

t.test('rmdir is judged on the merged view; a removed merged dir becomes one whiteout', async (t) => {
  const l = strataOver(t);
  t.throws(() => must(`rmdir ${join(l.mnt, 'data/sub')}`), {}, 'ENOTEMPTY with lower content');
  t.equal(sh(`rmdir ${join(l.mnt, 'data/sub')} 2>&1`).stdout.includes('not empty'), true);
  unlinkSync(join(l.mnt, 'data/sub/f.txt'));
  must(`rmdir ${join(l.mnt, 'data/sub')}`);
  t.ok(isWhiteout(join(l.upper, 'data/sub')), 'the upper dir is replaced by a whiteout');
  t.notOk(existsSync(join(l.mnt, 'data/sub')));
});

t.test('mkdir over a whiteout makes an opaque directory', async (t) => {
  const l = strataOver(t);
  must(`rm -rf ${join(l.mnt, 'keep')} && mkdir ${join(l.mnt, 'keep')}`);
  t.equal(xattr(join(l.upper, 'keep'), 'trusted.overlay.opaque'), 'y');
  t.same(readdirSync(join(l.mnt, 'keep')), [], 'lower content hidden');
});

t.test('.wh. names are reserved: creating one fails with EINVAL', async (t) => {
  const l = strataOver(t);
  t.throws(() => writeFileSync(join(l.mnt, '.wh.x'), ''), { code: 'EINVAL' });
  t.throws(() => must(`mkdir ${join(l.mnt, '.wh..wh..opq')}`));
});

t.test('renaming a directory with lower content works (no EXDEV) and survives a remount', async (t) => {
  const l = strataOver(t);
  must(`mv ${join(l.mnt, 'deep')} ${join(l.mnt, 'moved')}`);
  const want = snapshot(join(l.mnt, 'moved'));
  t.ok(want.has('a/b/c/file.txt') && want.has('a/mid.txt'), 'content from both lowers');
  t.notOk(existsSync(join(l.mnt, 'deep')));
  t.notOk(existsSync(join(l.upper, 'moved/a')), 'no tree was copied up');
  unmountStrata(l.mnt);
  mountStrata(t, l);
  t.same(diffSnapshots(snapshot(join(l.mnt, 'moved')), want), [], 'same after remount');
  t.notOk(existsSync(join(l.mnt, 'deep')));
});

t.test('hard links: link copies up, st_nlink is right at once after link and unlink', async (t) => {
  const l = strataOver(t);
  const a = join(l.mnt, 'etc/hostname');
  const b = join(l.mnt, 'etc/hostname2');
  must(`ln ${a} ${b}`);
  t.equal(statSync(a).nlink, 2);
  t.equal(statSync(b).nlink, 2);
  t.equal(statSync(a).ino, statSync(b).ino, 'one inode');
  unlinkSync(b);
  t.equal(statSync(a).nlink, 1);
});

t.test('hard links with -o attr_timeout=1: nlink is right once the attribute timeout passes', async (t) => {
  const l = layout(tempDir(t));
  kernelLayers(l.lowers);
  mountStrata(t, l, ['-o', 'attr_timeout=1']);
  const a = join(l.mnt, 'etc/hostname');
  must(`ln ${a} ${join(l.mnt, 'etc/hostname2')}`);
  t.equal(statSync(join(l.mnt, 'etc/hostname2')).nlink, 2, 'the new name at once');
  await new Promise((r) => setTimeout(r, 1100));
  t.equal(statSync(a).nlink, 2, 'the old name after the 1 s attribute timeout');
  t.equal(lstatSync(join(l.upper, 'etc/hostname')).nlink, 2, 'one inode in the upper');
});

t.test('open, unlink, fstat: the open file still works and reports nlink 0', async (t) => {
  const l = strataOver(t);
  const p = join(l.mnt, 'etc/hostname');
  const fd = openSync(p, 'r+');
  unlinkSync(p);
  const st = fstatSync(fd);
  t.equal(st.nlink, 0);
  writeSync(fd, 'hello', 0);
  closeSync(fd);
  t.notOk(existsSync(p));
});

t.test('an open, unlinked file in a directory that is then renamed: fstat works, nothing is left', async (t) => {
  const l = strataOver(t);
  const r = sh(`cd ${l.mnt} && python3 -c "
import os
fd = os.open('data/kept.txt', os.O_RDWR)
os.unlink('data/kept.txt')
os.rename('data', 'data2')
os.write(fd, b'x' * 10)
print(os.fstat(fd).st_nlink, os.fstat(fd).st_size)
os.close(fd)"`);
  t.equal(r.stdout.trim(), '0 10', r.stderr);
  await new Promise((res) => setTimeout(res, 200));
  t.same(readdirSync(join(l.work, 'work')), [], 'the parked file is gone after release');
  t.notOk(readdirSync(join(l.mnt, 'data2')).some((n) => n.startsWith('.fuse_hidden')), 'nothing hidden shows');
});

t.test('utimensat: nanoseconds, UTIME_OMIT and UTIME_NOW', async (t) => {
  const l = strataOver(t);
  const p = join(l.mnt, 'etc/hostname');
  must(`touch -m -d '2001-02-03 04:05:06.123456789' ${p}`);
  let st = lstatSync(p, { bigint: true });
  t.equal(st.mtimeNs, 981173106123456789n, 'mtime exact');
  t.equal(st.atimeNs, 1577934245123456789n, 'atime untouched (UTIME_OMIT)');
  must(`touch -a -d '2002-02-03 04:05:06.5' ${p}`);
  st = lstatSync(p, { bigint: true });
  t.equal(st.mtimeNs, 981173106123456789n, 'mtime untouched');
  t.equal(st.atimeNs, 1012709106500000000n, 'atime set');
  const before = BigInt(Date.now()) * 1000000n - 2000000000n;
  must(`touch ${p}`);
  t.ok(lstatSync(p, { bigint: true }).mtimeNs > before, 'UTIME_NOW');
});

t.test('O_APPEND, O_TRUNC, sparse files and a file over 4 GiB', async (t) => {
  const l = strataOver(t);
  must(`truncate -s 5G ${join(l.lowers[0]!, 'big')} && printf end >> ${join(l.lowers[0]!, 'big')}`);
  const big = join(l.mnt, 'big');
  t.equal(statSync(big).size, 5 * 2 ** 30 + 3);
  must(`printf X >> ${big}`); // copy-up of a 5 GiB sparse file
  t.equal(statSync(big).size, 5 * 2 ** 30 + 4);
  t.equal(must(`tail -c 4 ${big}`), 'endX');
  t.ok(lstatSync(join(l.upper, 'big')).blocks < 1024, 'holes kept in the upper copy');
  const p = join(l.mnt, 'etc/hostname');
  must(`echo more >> ${p}`);
  t.equal(readFileSync(p, 'utf8'), 'mid-hostname\nmore\n');
  must(`echo fresh > ${p}`);
  t.equal(readFileSync(p, 'utf8'), 'fresh\n');
  must(`dd if=/dev/zero of=${join(l.mnt, 'sparse')} bs=1 count=1 seek=100M status=none`);
  t.equal(statSync(join(l.mnt, 'sparse')).size, 100 * 2 ** 20 + 1);
});

t.test('255-byte names and paths near PATH_MAX', async (t) => {
  const l = strataOver(t);
  const long = 'n'.repeat(255);
  writeFileSync(join(l.mnt, long), 'x');
  t.ok(readdirSync(l.mnt).includes(long));
  // Build a path of about 4000 bytes through the mount with relative steps.
  const seg = 'd'.repeat(200);
  const depth = 19;
  must(`cd ${l.mnt} && for i in $(seq ${depth}); do mkdir ${seg} && cd ${seg}; done && echo deep > f`);
  const rel = Array(depth).fill(seg).join('/') + '/f';
  t.ok(rel.length > 3800);
  t.equal(must(`cd ${l.mnt} && cat ${rel}`), 'deep\n');
});

t.test('symlinks, fifos and devices', async (t) => {
  const l = strataOver(t);
  t.equal(readFileSync(join(l.mnt, 'data/link-to-hostname'), 'utf8'), 'mid-hostname\n');
  must(`ln -s /nowhere ${join(l.mnt, 'dangling')} && mkfifo ${join(l.mnt, 'pipe')} && mknod ${join(l.mnt, 'null2')} c 1 3`);
  t.ok(lstatSync(join(l.upper, 'pipe')).isFIFO());
  t.equal(lstatSync(join(l.mnt, 'null2')).rdev, lstatSync('/dev/null').rdev);
  t.equal(must(`echo hi > ${join(l.mnt, 'null2')} && echo ok`), 'ok\n');
  t.ok(lstatSync(join(l.mnt, 'data/fifo')).isFIFO());
});

t.test('xattrs in user/trusted/security; the overlay\'s own are hidden, a user\'s trusted.overlay.* is escaped', async (t) => {
  const l = strataOver(t);
  const p = join(l.mnt, 'opq');
  t.equal(xattr(p, 'trusted.overlay.opaque'), null, 'not readable through the mount');
  t.notMatch(must(`getfattr -d -m - ${p} 2>/dev/null; true`), /overlay/);
  must(`setfattr -n trusted.overlay.mine -v v ${join(l.mnt, 'etc/motd')}`);
  t.equal(xattr(join(l.mnt, 'etc/motd'), 'trusted.overlay.mine'), 'v', 'readable back');
  t.equal(xattr(join(l.upper, 'etc/motd'), 'trusted.overlay.overlay.mine'), 'v', 'stored escaped, as the kernel does');
  const f = join(l.mnt, 'etc/hostname');
  must(`setfattr -n user.a -v 1 ${f} && setfattr -n trusted.b -v 2 ${f} && setfattr -n security.c -v 3 ${f}`);
  t.match(must(`getfattr -d -m - ${f}`), /user\.a="1"[\s\S]*/);
  t.equal(xattr(f, 'trusted.b'), '2');
  t.equal(xattr(f, 'security.c'), '3');
});

t.test('permissions are the kernel\'s: a non-root user meets modes and sticky dirs', async (t) => {
  const l = strataOver(t);
  must(`chmod 755 ${join(l.mnt, '../')}`); // mkdtemp made the test dir 0700
  must(`mkdir -m 1777 ${join(l.mnt, 'tmp')}`);
  const asNobody = (cmd: string) => sh(`setpriv --reuid=65534 --regid=65534 --clear-groups -- sh -c ${JSON.stringify(cmd)}`);
  t.not(asNobody(`echo x > ${join(l.mnt, 'etc/hostname')}`).code, 0, 'cannot write a root-owned 0644 file');
  t.equal(asNobody(`echo x > ${join(l.mnt, 'tmp/mine')}`).code, 0, 'can create in a 1777 dir');
  t.equal(lstatSync(join(l.upper, 'tmp/mine')).uid, 65534, 'owned by its creator');
  t.not(asNobody(`rm ${join(l.mnt, 'data/kept.txt')}`).code, 0, 'cannot delete in a root dir');
});

t.test('the dentry cache stays within its bound and stays correct when it evicts', async (t) => {
  const l = layout(tempDir(t));
  must(`cd ${l.lowers[0]} && for d in $(seq 30); do mkdir d$d && (cd d$d && seq 100 | xargs touch); done`);
  mountStrata(t, l, ['-o', 'cache_entries=1000']);
  const first = must(`cd ${l.mnt} && find . | sort`);
  const again = must(`cd ${l.mnt} && find . | sort`);
  t.equal(first.split('\n').length, 3032, 'all 3030 entries listed');
  t.equal(again, first, 'the same after evictions');
  const s = JSON.parse(strata(['status', l.mnt]).stdout) as { cache: { entries: number; evictions: number } };
  t.ok(s.cache.evictions > 0, `evicted (${s.cache.evictions})`);
  t.ok(s.cache.entries <= 1100, `entries stay near the bound (${s.cache.entries})`);
});

t.test('a redirect from a layer never leads out of it (.., or through a symlink)', async (t) => {
  const l = layout(tempDir(t), 1);
  must(`cd ${l.lowers[0]} && ln -s / rootlink && mkdir real && echo inside > real/f`);
  must(`cd ${l.upper} && mkdir up1 up2 up3 && setfattr -n trusted.overlay.redirect -v /../../../../etc up1 && setfattr -n trusted.overlay.redirect -v /rootlink/etc up2 && setfattr -n trusted.overlay.redirect -v /real up3`);
  mountStrata(t, l);
  t.same(readdirSync(join(l.mnt, 'up1')), [], 'a .. redirect is ignored');
  t.same(readdirSync(join(l.mnt, 'up2')), [], 'a redirect through a symlink is ignored');
  t.same(readdirSync(join(l.mnt, 'up3')), ['f'], 'a good redirect is followed');
});

t.test('modes are the caller\'s (umask applied once), setgid directories pass their group on', async (t) => {
  const l = strataOver(t);
  must(`cd ${l.mnt} && umask 0 && mkdir -m 777 open && touch open/f && mkfifo -m 666 open/p`);
  t.equal(lstatSync(join(l.mnt, 'open')).mode & 0o7777, 0o777);
  t.equal(lstatSync(join(l.mnt, 'open/f')).mode & 0o7777, 0o666);
  t.equal(lstatSync(join(l.mnt, 'open/p')).mode & 0o7777, 0o666);
  must(`cd ${l.mnt} && chgrp 50 data && chmod g+s data && rm data/kept.txt && touch data/kept.txt && mkdir data/newdir`);
  t.equal(lstatSync(join(l.mnt, 'data/kept.txt')).gid, 50, 'a file made over a whiteout gets the group');
  t.equal(lstatSync(join(l.mnt, 'data/newdir')).gid, 50);
  t.ok(lstatSync(join(l.mnt, 'data/newdir')).mode & 0o2000, 'and a directory the setgid bit');
});

t.test('rename(2) between two links of one file does nothing; a user may use .fuse_hidden names', async (t) => {
  const l = strataOver(t);
  must(`cd ${l.mnt} && touch a && ln a b && python3 -c "import os; os.rename('a', 'b')"`);
  t.ok(existsSync(join(l.mnt, 'a')) && existsSync(join(l.mnt, 'b')), 'both names stay');
  must(`cd ${l.mnt} && echo keep > h && mv h .fuse_hidden0000000100000002`);
  t.equal(readFileSync(join(l.mnt, '.fuse_hidden0000000100000002'), 'utf8'), 'keep\n');
  unmountStrata(l.mnt);
  mountStrata(t, l);
  t.ok(existsSync(join(l.mnt, 'a')) && existsSync(join(l.mnt, 'b')), 'both names after a remount');
  t.equal(readFileSync(join(l.mnt, '.fuse_hidden0000000100000002'), 'utf8'), 'keep\n', 'not treated as a hidden file');
});

t.test('a directory removed while open never lists what was made at its old path', async (t) => {
  const l = strataOver(t);
  const r = sh(`cd ${l.mnt} && python3 -c "
import os
fd = os.open('keep', os.O_RDONLY | os.O_DIRECTORY)
os.system('rm -r keep && mkdir keep && touch keep/x')
try:
    print(sorted(os.listdir(fd)))
except FileNotFoundError:
    print('ENOENT')"`);
  t.match(r.stdout.trim(), /^(\[\]|ENOENT)$/, 'empty, or ENOENT as the kernel answers for a dead directory');
});

t.test('inode numbers: readdir and stat agree, and copy-up keeps the number', async (t) => {
  const l = strataOver(t);
  const before = statSync(join(l.mnt, 'etc/hostname')).ino;
  const listed = must(`ls -i ${join(l.mnt, 'etc')}`);
  for (const line of listed.trim().split('\n')) {
    const [ino, name] = line.trim().split(/\s+/);
    t.equal(Number(ino), statSync(join(l.mnt, 'etc', name!)).ino, `etc/${name}`);
  }
  must(`echo more >> ${join(l.mnt, 'etc/hostname')}`);
  t.equal(statSync(join(l.mnt, 'etc/hostname')).ino, before, 'the same after copy-up');
});

t.test('statfs leaves room for the .wh. prefix', async (t) => {
  const l = strataOver(t);
  t.equal(must(`stat -f -c %l ${l.mnt}`).trim(), '251');
});
