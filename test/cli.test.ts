/**
 * The mount command as users and scripts meet it: both option syntaxes, mount(8) options,
 * clear errors with non-zero exits for bad input (and nothing mounted, no process left),
 * umount of a busy and of a dead mount, the status counters.
 */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kernelLayers } from './lib/fixtures.js';
import { driverPid, driversFor, isMounted, layout, mountStrata, tempDir } from './lib/mounts.js';
import { must, sh, strata } from './lib/run.js';


t.test('-o lowerdir=,upperdir=,workdir= works like --lower/--upper/--work, with mount(8) options', async (t) => {
  const l = layout(tempDir(t));
  kernelLayers(l.lowers);
  const r = strata(['mount', '-o', `lowerdir=${l.lowers.join(':')},upperdir=${l.upper},workdir=${l.work},rw,dev,suid,exec,lazytime,nosuid`, l.mnt]);
  t.equal(r.code, 0, r.stderr);
  t.teardown(() => void strata(['umount', l.mnt]));
  t.equal(readFileSync(join(l.mnt, 'etc/hostname'), 'utf8'), 'mid-hostname\n');
  t.match(must(`findmnt -n -o FSTYPE,OPTIONS ${l.mnt}`), /fuse\.strata.*nosuid/);
  t.equal(strata(['umount', l.mnt]).code, 0);
  t.notOk(isMounted(l.mnt));
  t.equal(driversFor(l.mnt), 0, 'the driver exited');
});

t.test('bad input: one clear message, non-zero exit, nothing mounted, no process left', async (t) => {
  const base = tempDir(t);
  const l = layout(base);
  kernelLayers(l.lowers);
  writeFileSync(join(base, 'afile'), 'x');
  mkdirSync(join(base, 'tmpfs'));
  must(`mount -t tmpfs tmpfs ${join(base, 'tmpfs')}`);
  t.teardown(() => void sh(`umount -l ${join(base, 'tmpfs')}`));
  mkdirSync(join(base, 'tmpfs/work'));
  const cases: [string, string[], RegExp][] = [
    ['a missing layer', ['--lower', join(base, 'nope')], /lower layer .*nope does not exist/],
    ['a file as a layer', ['--lower', join(base, 'afile')], /is not a directory/],
    ['upper and work on different filesystems', ['--lower', l.lowers[0]!, '--upper', l.upper, '--work', join(base, 'tmpfs/work')], /same filesystem/],
    ['an upper without work', ['--lower', l.lowers[0]!, '--upper', l.upper], /work directory/],
    ['an unknown option', ['--lower', l.lowers[0]!, '-o', 'frobnicate'], /unknown mount option: frobnicate/],
    ['no lower at all', [], /no lower layers/],
  ];
  for (const [what, args, msg] of cases) {
    const r = strata(['mount', ...args, l.mnt]);
    t.not(r.code, 0, `${what}: non-zero exit`);
    t.match(r.stderr, msg, `${what}: says why`);
    t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`);
    t.notOk(isMounted(l.mnt), `${what}: nothing mounted`);
  }
  const missing = strata(['mount', '--lower', l.lowers[0]!, join(base, 'no-such-mnt')]);
  t.not(missing.code, 0);
  t.match(missing.stderr, /mountpoint .* does not exist/);
  t.equal(driversFor(base), 0, 'no driver process left');
});

t.test('an already mounted mountpoint is refused', async (t) => {
  const l = layout(tempDir(t));
  kernelLayers(l.lowers);
  mountStrata(t, l);
  const r = strata(['mount', '--lower', l.lowers[0]!, l.mnt]);
  t.equal(r.code, 32);
  t.match(r.stderr, /already a mount point/);
});

t.test('umount of a busy mount fails with 32; of a mount whose driver was killed succeeds', async (t) => {
  const l = layout(tempDir(t));
  kernelLayers(l.lowers);
  mountStrata(t, l);
  const holder = sh(`cd ${l.mnt} && (sleep 30 >/dev/null 2>&1 & echo $!)`).stdout.trim();
  const busy = strata(['umount', l.mnt]);
  t.equal(busy.code, 32);
  t.match(busy.stderr, /busy/);
  sh(`kill ${holder}`);
  await new Promise((r) => setTimeout(r, 200));
  process.kill(driverPid(l.mnt), 'SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  t.ok(isMounted(l.mnt), 'the dead mount is still there');
  const r = strata(['umount', l.mnt]);
  t.equal(r.code, 0, r.stderr);
  t.notOk(isMounted(l.mnt));
});

t.test('umount of something that is not a strata mount says so', async (t) => {
  const base = tempDir(t);
  const r = strata(['umount', base]);
  t.equal(r.code, 32);
  t.match(r.stderr, /not mounted/);
});

t.test('status reports dentry-cache hits and misses and copy-ups', async (t) => {
  const l = layout(tempDir(t));
  kernelLayers(l.lowers);
  mountStrata(t, l);
  // The first name looked up in etc loads it (a miss); the next ones, present or not, are hits.
  const etc = join(l.mnt, 'etc');
  must(`stat ${etc}/hostname ${etc}/absent1 ${etc}/absent2 > /dev/null 2>&1; echo x >> ${etc}/hostname`);
  const r = strata(['status', l.mnt]);
  t.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { cache: { hits: number; misses: number }; copyUps: number };
  t.ok(s.cache.misses > 0 && s.cache.hits > 0, 'lookups counted');
  t.ok(s.copyUps >= 1, 'copy-up counted');
});

t.test('--foreground serves in the calling process and unmounts on SIGTERM', async (t) => {
  const l = layout(tempDir(t));
  kernelLayers(l.lowers);
  const r = sh(
    `node dist/cli/main.js mount --foreground --debug --lower ${l.lowers.join(':')} ${l.mnt} 2> ${l.work}/log & pid=$!
     for i in $(seq 100); do mountpoint -q ${l.mnt} && break; sleep 0.05; done
     cat ${l.mnt}/etc/hostname; kill -TERM $pid; wait $pid; echo "exit=$?"`,
    { cwd: new URL('..', import.meta.url).pathname },
  );
  t.match(r.stdout, /mid-hostname\nexit=0/);
  t.notOk(isMounted(l.mnt), 'unmounted');
  t.match(readFileSync(join(l.work, 'log'), 'utf8'), /lookup\(\d+, "hostname"\) -> entry \d+ \{mode:0100644/, '--debug logs op(args) -> result');
});

t.test('mount(8) can use strata as a helper: mount -t fuse.strata, and umount(8) ends the driver', async (t) => {
  const l = layout(tempDir(t));
  kernelLayers(l.lowers);
  const r = sh(`mount -t fuse.strata -o lowerdir=${l.lowers.join(':')},upperdir=${l.upper},workdir=${l.work},noatime strata ${l.mnt}`);
  t.equal(r.code, 0, r.stderr);
  t.teardown(() => void sh(`umount -l ${l.mnt} 2>/dev/null`));
  t.equal(readFileSync(join(l.mnt, 'etc/hostname'), 'utf8'), 'mid-hostname\n');
  t.equal(sh(`umount ${l.mnt}`).code, 0);
  await new Promise((res) => setTimeout(res, 300));
  t.equal(driversFor(l.mnt), 0, 'the driver exited after umount(8)');
});
