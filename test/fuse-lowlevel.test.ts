// fuse-native's low-level session (native-deps/fuse-native/lowlevel), on a real mount. A child
// process (test/fixtures/fuse-lowlevel-child.mjs) serves a tiny filesystem through it; this
// process acts on the mount and never serves it. Needs root and /dev/fuse.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { isMounted, type Teardown } from './lib/mounts.js';
import { must, ROOT } from './lib/run.js';

interface Event {
  event: string;
  [key: string]: unknown;
}

const fixture = join(ROOT, 'test/fixtures/fuse-lowlevel-child.mjs');

/** Start the fixture and collect its events; resolves once it has mounted (or failed to). */
function serve(mnt: string, backing: string, mode?: string): { child: ChildProcess; events: Event[]; next: (name: string) => Promise<Event> } {
  const child = spawn(process.execPath, [fixture, mnt, backing, ...(mode ? [mode] : [])], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  const events: Event[] = [];
  const waiters: { name: string; resolve: (e: Event) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const e = JSON.parse(line) as Event;
    events.push(e);
    for (const w of waiters.filter((w) => w.name === e.event)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(e);
    }
  });
  const next = (name: string) =>
    new Promise<Event>((resolve, reject) => {
      const seen = events.find((e) => e.event === name);
      if (seen) return resolve(seen);
      waiters.push({ name, resolve });
      child.once('exit', () => setTimeout(() => reject(new Error(`fixture exited before "${name}"`)), 50));
    });
  return { child, events, next };
}

function setup(t: Teardown) {
  const dir = mkdtempSync(join(tmpdir(), 'strata-ll-'));
  const mnt = join(dir, 'mnt');
  const backing = join(dir, 'backing');
  mkdirSync(mnt);
  writeFileSync(backing, 'hello from the backing file\n');
  const s = serve(mnt, backing);
  let stderr = '';
  s.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => s.child.once('exit', () => resolve()));
  t.teardown(async () => {
    if (isMounted(mnt)) spawnSync('umount', ['-l', mnt]);
    if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    await exited;
    if (!isMounted(mnt)) rmSync(dir, { recursive: true, force: true });
  });
  return { ...s, mnt, backing, stderr: () => stderr, exited };
}

if (process.getuid?.() !== 0 || !existsSync('/dev/fuse')) {
  t.plan(0, 'needs root and /dev/fuse');
} else {
  t.test('attributes cross with 64-bit inode numbers; reads and writes go through the fd', async (t) => {
    const s = setup(t);
    await s.next('mounted');
    const st = statSync(join(s.mnt, 'file'), { bigint: true });
    t.equal(st.ino, 2n ** 40n + 5n, '64-bit inode number');
    t.equal(Number(st.size), 28);
    t.equal(readFileSync(join(s.mnt, 'file'), 'utf8'), 'hello from the backing file\n', 'read served on the fd');
    must(`printf HELLO | dd of=${join(s.mnt, 'file')} bs=5 count=1 conv=notrunc status=none`);
    t.equal(readFileSync(s.backing, 'utf8'), 'HELLO from the backing file\n', 'write landed in the backing file');
    t.same(must(`ls ${s.mnt}`).trim().split('\n'), ['file', 'late', 'twice'], 'readdir');
  });

  t.test('a handler that throws fails its request with EIO; the mount stays up', async (t) => {
    const s = setup(t);
    await s.next('mounted');
    const r = spawnSync('stat', [join(s.mnt, 'boom')], { encoding: 'utf8' });
    t.not(r.status, 0);
    t.match(r.stderr, /Input\/output error/);
    t.equal(statSync(join(s.mnt, 'file')).size, 28, 'still serving');
    // The child's stderr arrives through a pipe: give it a moment.
    for (let i = 0; i < 40 && !s.stderr().includes('handler threw'); i++) await new Promise((r) => setTimeout(r, 50));
    t.match(s.stderr(), /lookup handler threw: Error: lookup of boom failed on purpose/);
  });

  t.test('a reply may come later; a second reply to one request is refused', async (t) => {
    const s = setup(t);
    await s.next('mounted');
    const started = Date.now();
    t.ok(statSync(join(s.mnt, 'late')).isFile(), 'answered asynchronously');
    t.ok(Date.now() - started >= 90, 'after the delay');
    t.equal((await s.next('late-replied')).ok, true);
    t.ok(statSync(join(s.mnt, 'twice')).isFile());
    t.equal((await s.next('second-reply')).ok, false, 'the stale id is refused');
  });

  t.test('unmounting ends the session: onExit runs, nothing is left pending', async (t) => {
    const s = setup(t);
    await s.next('mounted');
    statSync(join(s.mnt, 'file'));
    must(`umount ${s.mnt}`);
    const e = await s.next('exit');
    t.equal(e.pending, 0);
    await s.exited;
    t.equal(s.child.exitCode, 0);
    t.notOk(isMounted(s.mnt));
  });

  t.test('an option libfuse does not know fails the mount with an error, nothing mounted', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-ll-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const s = serve(dir, '/dev/null', 'bad-option');
    const e = await s.next('mount-failed');
    t.match(e.message as string, /bad FUSE options/);
    t.notOk(isMounted(dir));
  });
}
