/**
 * Crash safety: kill -9 of the driver in the middle of a large copy-up and of renames. After
 * `strata umount` of the dead mount and a remount, every file is whole (old or new content,
 * never partial), no temporary entry is visible, and the upper holds no half-built entries.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { driverPid, layout, isMounted, mountStrata, tempDir, unmountStrata } from './lib/mounts.js';
import { must, sh, strata } from './lib/run.js';

function noTemporaries(upper: string): string[] {
  return must(`find ${upper} -name '#strata-*'`).split('\n').filter(Boolean);
}

t.test('kill -9 during a large copy-up: after remount the file is whole', async (t) => {
  const l = layout(tempDir(t), 1);
  must(`head -c 800M /dev/zero | tr '\\0' 'a' > ${l.lowers[0]}/big`);
  mountStrata(t, l);
  const pid = driverPid(l.mnt);
  t.ok(pid > 0, 'found the driver');
  // The append starts a copy-up of 800 MB; kill the driver while it runs.
  sh(`(echo tail >> ${l.mnt}/big) >/dev/null 2>&1 & sleep 0.3; kill -9 ${pid}; wait`);
  t.ok(isMounted(l.mnt), 'the dead mount is still listed');
  t.equal(strata(['umount', l.mnt]).code, 0, 'umount of the dead mount succeeds');
  mountStrata(t, l);
  const size = statSync(join(l.mnt, 'big')).size;
  t.ok(size === 800 * 2 ** 20 || size === 800 * 2 ** 20 + 5, `old or new size, never partial (${size})`);
  t.same(noTemporaries(l.upper), [], 'no temporary entries in the upper');
  t.same(readdirSync(join(l.work, 'work')), [], 'the work dir was cleaned on remount');
  if (existsSync(join(l.upper, 'big'))) t.equal(statSync(join(l.upper, 'big')).size, size, 'the upper copy is complete');
});

t.test('kill -9 during renames: each file is in exactly one place, whole', async (t) => {
  const l = layout(tempDir(t), 1);
  must(`cd ${l.lowers[0]} && mkdir -p d && for i in $(seq 200); do echo content-$i > d/f$i; done`);
  for (let round = 0; round < 3; round++) {
    mountStrata(t, l);
    const pid = driverPid(l.mnt);
    sh(`(cd ${l.mnt}/d && for i in $(seq 200); do mv f$i g$i 2>/dev/null || mv g$i f$i 2>/dev/null; done) >/dev/null 2>&1 & sleep 0.${2 + round}; kill -9 ${pid}; wait`);
    t.equal(strata(['umount', l.mnt]).code, 0, `round ${round}: dead mount unmounted`);
    mountStrata(t, l);
    const names = new Set(readdirSync(join(l.mnt, 'd')));
    let bad = 0;
    for (let i = 1; i <= 200; i++) {
      const f = names.has(`f${i}`);
      const g = names.has(`g${i}`);
      if (f === g) bad++;
      const content = readFileSync(join(l.mnt, 'd', f ? `f${i}` : `g${i}`), 'utf8');
      if (content !== `content-${i}\n`) bad++;
    }
    t.equal(bad, 0, `round ${round}: every file in exactly one place with its content`);
    t.same(noTemporaries(l.upper), []);
    unmountStrata(l.mnt);
  }
});
