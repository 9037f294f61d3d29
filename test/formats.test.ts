/**
 * Format round trips: an upper written by strata mounts under kernel overlayfs with the same
 * merged view, an upper written by the kernel mounts under strata, and an upper in
 * fuse-overlayfs's style (.wh..wh..opq files besides the xattr) reads correctly.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kernelLayers } from './lib/fixtures.js';
import { layout, mountKernel, mountStrata, tempDir, unmountStrata, type Layout } from './lib/mounts.js';
import { must, sh } from './lib/run.js';
import { diffSnapshots, snapshot } from './lib/tree.js';

/** Changes that leave every kind of mark in the upper: copy-ups, whiteouts, opaque dirs, a
 *  directory rename (redirect on strata), new files. */
const SCRIPT = `
  set -e
  echo changed > etc/hostname
  rm etc/passwd
  rm -r data/sub
  rm -r keep && mkdir keep && echo again > keep/new.txt
  mkdir -p brand/new && echo n > brand/new/f
  chmod 600 data/kept.txt
  ln -s etc/motd motd-link
  mv newdir renamed-newdir
  mv deep/a deep/renamed-a
`;

function apply(mnt: string): void {
  must(`cd ${JSON.stringify(mnt)} && ${SCRIPT}`);
}

t.test('kernel overlayfs mounts an upper that strata wrote', async (t) => {
  const base = tempDir(t);
  const s = layout(base, 3, 's-');
  kernelLayers(s.lowers);
  mountStrata(t, s);
  apply(s.mnt);
  const want = snapshot(s.mnt);
  unmountStrata(s.mnt);
  const k: Layout = { ...s, work: layout(base, 0, 'kw-').work, mnt: layout(base, 0, 'km-').mnt };
  mountKernel(t, k);
  t.same(diffSnapshots(snapshot(k.mnt), want), []);
});

t.test('strata mounts an upper that kernel overlayfs wrote', async (t) => {
  const base = tempDir(t);
  const k = layout(base, 3, 'k-');
  kernelLayers(k.lowers);
  mountKernel(t, k);
  // The kernel refuses the directory renames that need EXDEV; mv copies those trees.
  apply(k.mnt);
  const want = snapshot(k.mnt);
  must(`umount ${k.mnt}`);
  const s: Layout = { ...k, work: layout(base, 0, 'sw-').work, mnt: layout(base, 0, 'sm-').mnt };
  mountStrata(t, s);
  t.same(diffSnapshots(snapshot(s.mnt), want), []);
});

t.test('kernel redirects (redirect_dir=on), absolute and relative, read the same in strata', async (t) => {
  const base = tempDir(t);
  const k = layout(base, 3, 'k-');
  kernelLayers(k.lowers);
  const opts = `lowerdir=${k.lowers.join(':')},upperdir=${k.upper},workdir=${k.work},redirect_dir=on`;
  must(`mount -t overlay overlay -o ${opts} ${k.mnt}`);
  t.teardown(() => void sh(`umount ${k.mnt} 2>/dev/null`));
  must(`cd ${k.mnt} && mv deep/a deep/renamed && mv deep moved && mv data/sub data/sub2 && mv data d2`);
  const want = snapshot(k.mnt);
  must(`umount ${k.mnt}`);
  const s: Layout = { ...k, work: layout(base, 0, 'sw-').work, mnt: layout(base, 0, 'sm-').mnt };
  mountStrata(t, s);
  t.same(diffSnapshots(snapshot(s.mnt), want), []);
  t.ok(want.has('moved/renamed/b/c/file.txt') && want.has('d2/sub2/f.txt'), 'the renamed trees have their lower content');
});

t.test('new entries over OCI-form whiteouts in the upper: the upper ends in kernel form', async (t) => {
  const base = tempDir(t);
  const s = layout(base, 3, 's-');
  kernelLayers(s.lowers);
  must(`cd ${s.upper} && mkdir etc && touch .wh.keep etc/.wh.passwd .wh.newdir`);
  mountStrata(t, s);
  t.notOk(existsSync(join(s.mnt, 'keep')), 'hidden by .wh.keep');
  must(`cd ${s.mnt} && mkdir keep && echo x > etc/passwd && mv usr newdir`);
  t.same(readdirSync(join(s.mnt, 'keep')), [], 'the new dir does not show lower content');
  t.equal(readFileSync(join(s.mnt, 'etc/passwd'), 'utf8'), 'x\n');
  t.ok(existsSync(join(s.mnt, 'newdir/bin/tool')), 'a directory renamed over one');
  const want = snapshot(s.mnt);
  unmountStrata(s.mnt);
  t.same(readdirSync(s.upper).filter((n) => n.startsWith('.wh.')), [], 'no OCI-form whiteouts left at the top');
  const k: Layout = { ...s, work: layout(base, 0, 'kw-').work, mnt: layout(base, 0, 'km-').mnt };
  mountKernel(t, k);
  t.same(diffSnapshots(snapshot(k.mnt), want), [], 'the kernel sees the same');
});

t.test('yesterday\'s upper is today\'s lower: strata reads its own upper as a lower layer', async (t) => {
  const base = tempDir(t);
  const s = layout(base, 3, 's-');
  kernelLayers(s.lowers);
  mountStrata(t, s);
  apply(s.mnt);
  const want = snapshot(s.mnt);
  unmountStrata(s.mnt);
  const rotated = layout(base, 0, 'r-');
  rotated.lowers = [s.upper, ...s.lowers];
  mountStrata(t, rotated);
  t.same(diffSnapshots(snapshot(rotated.mnt), want), [], 'same view with the old upper as top lower');
  const k = layout(base, 0, 'rk-');
  k.lowers = [s.upper, ...s.lowers];
  mountKernel(t, k, false);
  t.same(diffSnapshots(snapshot(k.mnt), want), [], 'and the kernel agrees');
});

t.test('an upper in fuse-overlayfs style is read correctly', async (t) => {
  const base = tempDir(t);
  const f = layout(base, 3, 'f-');
  kernelLayers(f.lowers);
  const r = sh(`fuse-overlayfs -o lowerdir=${f.lowers.join(':')},upperdir=${f.upper},workdir=${f.work} ${f.mnt}`);
  if (r.code !== 0) {
    t.fail(`fuse-overlayfs did not mount: ${r.stderr}`);
    return;
  }
  t.teardown(() => {
    sh(`fusermount3 -u ${f.mnt} || umount -l ${f.mnt}`);
  });
  must(`cd ${f.mnt} && set -e && rm -r keep && mkdir keep && echo a > keep/a && rm etc/passwd && echo c > etc/hostname`);
  const want = snapshot(f.mnt);
  must(`fusermount3 -u ${f.mnt}`);
  const s: Layout = { ...f, work: layout(base, 0, 'sw-').work, mnt: layout(base, 0, 'sm-').mnt };
  mountStrata(t, s);
  t.same(diffSnapshots(snapshot(s.mnt), want), []);
});
