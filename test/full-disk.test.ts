/**
 * Commands against a store whose file system is full (ENOSPC: out of space or of inodes) or
 * read-only (EROFS). Each must fail with one line that says why and exit 1 (never an internal
 * error), and leave the store as it was: `check` passes, no image or layer is listed that was not
 * there before, nothing stays in ROOT/tmp, no mount is left. Stores live on small tmpfs mounts.
 *
 * A command meets a full disk at different stages (opening the database, staging an archive,
 * unpacking a layer, its tar-split, the record in the database) depending on how much room is
 * left, so the sweeps below leave 0, 3, 6... pages (or inodes) free until the command succeeds,
 * then each count just below: every stage gets its turn, whatever the exact sizes are.
 */
import t, { type Test } from 'tap';
import { mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './lib/mounts.js';
import { CLI, must, run, sh, strata, ROOT, type Result } from './lib/run.js';
import { Metadata } from '../driver/store/metadata.js';
import { StoreError } from '../driver/store/errors.js';

interface Disk {
  base: string;
  /** The tmpfs mountpoint; the store is `root`, below it. */
  disk: string;
  root: string;
  s: (...args: string[]) => Result;
}

/** A store on a tmpfs of `size` (and `inodes`), detached at teardown even if the test fails. */
function smallDisk(t: Test, size: string, inodes = '100k'): Disk {
  const base = tempDir(t);
  const disk = join(base, 'disk');
  mkdirSync(disk);
  must(`mount -t tmpfs -o size=${size},nr_inodes=${inodes} strata-test-full ${disk}`);
  t.teardown(() => void sh(`umount -l ${disk}`));
  const root = join(disk, 'store');
  const s = (...args: string[]): Result => strata(['--root', root, ...args]);
  return { base, disk, root, s };
}

function ok(t: Test, r: Result, what: string): string {
  t.equal(r.code, 0, `${what} exits 0 (${r.stderr.trim()})`);
  return r.stdout;
}

/** Leave `pages` pages of the disk free: a file of zeros takes the rest. */
function leavePages(d: Disk, pages: number): void {
  const st = statfsSync(d.disk);
  const n = (st.bavail - pages) * st.bsize;
  if (n > 0) writeFileSync(join(d.disk, 'fill'), Buffer.alloc(n));
}

/** Leave `n` inodes free: empty files take the rest. */
function leaveInodes(d: Disk, n: number): void {
  const dir = join(d.disk, 'fill');
  mkdirSync(dir);
  const free = statfsSync(d.disk).ffree;
  for (let i = 0; i < free - n; i++) writeFileSync(join(dir, String(i)), '');
}

function unfill(d: Disk): void {
  rmSync(join(d.disk, 'fill'), { recursive: true, force: true });
}

/** A failure as the user must see it: exit 1, one line on stderr saying why, no crash. */
function failsClearly(t: Test, r: Result, what: string, why = /ENOSPC|no space left/i): void {
  t.equal(r.code, 1, `${what}: exits 1 (${r.stderr.trim()})`);
  t.match(r.stderr, why, `${what}: says why`);
  t.notMatch(r.stderr, /internal error|\n\s+at /, `${what}: an error, not a crash`);
  t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`);
}

interface Listing {
  images: string;
  layers: string;
  containers?: string;
}

function listing(d: Disk, containers = false): Listing {
  const l: Listing = { images: d.s('images', '-q').stdout, layers: d.s('layers').stdout };
  if (containers) l.containers = d.s('ps', '-aq').stdout;
  return l;
}

/**
 * The store as `before`, with nothing staged or mounted and `check` passing. With `newLayers`, a
 * failed build may leave read-only layers of steps it completed (no image uses them; prune frees
 * them), as a failed docker build keeps its finished steps; check has proven their content.
 */
function unchanged(t: Test, d: Disk, before: Listing, what: string, o: { newLayers?: boolean | undefined; containers?: boolean | undefined } = {}): void {
  const now = listing(d, o.containers);
  if (o.newLayers === true) {
    // Rows without the table's padding, which follows the widest cell.
    const rows = (l: string) => l.trim().split('\n').slice(1).map((r) => r.split(/\s+/).join(' '));
    t.same({ ...now, layers: '' }, { ...before, layers: '' }, `${what}: the same images listed`);
    t.same(rows(before.layers).filter((r) => !rows(now.layers).includes(r)), [], `${what}: every layer still there, as it was`);
    const added = rows(now.layers).filter((r) => !rows(before.layers).includes(r));
    t.same(added.filter((r) => !/ ro .* 0$/.test(r)), [], `${what}: no writable layer, no new layer an image uses`);
  } else t.same(now, before, `${what}: the same images and layers listed`);
  t.same(readdirSync(join(d.root, 'tmp')), [], `${what}: nothing left in tmp/`);
  t.same(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(d.root)), [], `${what}: no mount left`);
  const c = d.s('check');
  t.equal(c.code, 0, `${what}: strata check (${(c.stdout + c.stderr).trim()})`);
}

/**
 * Run `attempt` with n units (pages, or inodes) free, for n = 0, step, 2 * step... until it
 * succeeds, then for each n between the last failure and that success: the stages wider than
 * `step` are met on the way up, and the last (the record in the database, one page) right below
 * the success. Every failure must be clear and leave the store unchanged. Answers the failures'
 * messages, for the test to see which stages were met.
 */
function sweep(t: Test, d: Disk, o: Sweep): string[] {
  const seen: string[] = [];
  // Opening the store settles its database (a log left by the last command is compacted), so the
  // room measured next is the room the command gets; the checks after each failure open it too.
  const before = listing(d, o.containers);
  const succeeds = (n: number): boolean => {
    (o.leave ?? leavePages)(d, n);
    const r = o.attempt();
    unfill(d);
    if (r.code === 0) {
      o.undo();
      d.s('images');
      return true;
    }
    failsClearly(t, r, `${o.what}, ${n} free`, o.why);
    unchanged(t, d, before, `${o.what}, ${n} free`, { newLayers: o.newLayers, containers: o.containers });
    seen.push(r.stderr.trim());
    return false;
  };
  const step = o.step ?? 3;
  let n = 0;
  for (; !succeeds(n); n += step) {
    if (n > o.max) {
      t.fail(`${o.what}: never succeeded with up to ${o.max} free`);
      return seen;
    }
  }
  for (let m = Math.max(0, n - step + 1); m < n && !succeeds(m); m++);
  t.ok(seen.length > 0, `${o.what}: failed with less room, succeeded with ${n} free`);
  return seen;
}

interface Sweep {
  what: string;
  attempt: () => Result;
  /** Undo a success, so that the store is as before for the next attempt. */
  undo: () => void;
  /** leavePages (the default) or leaveInodes. */
  leave?: (d: Disk, n: number) => void;
  step?: number;
  max: number;
  /** What the failures must say (failsClearly's default: ENOSPC). */
  why?: RegExp;
  newLayers?: boolean;
  containers?: boolean;
}

function randomTar(base: string, name: string, bytes: number): string {
  must(`mkdir -p ${base}/${name} && head -c ${bytes} /dev/urandom > ${base}/${name}/f && tar -C ${base}/${name} -cf ${base}/${name}.tar .`);
  return `${base}/${name}.tar`;
}

t.test('import: every stage a full disk can stop it at is a clear error and leaves the store as it was', async (t) => {
  const d = smallDisk(t, '512k');
  ok(t, d.s('images'), 'a store on the small disk');
  // Ten pages of data: each stage is met over a few page counts, so that the sweep's steps of 3
  // cannot miss one.
  const tar = randomTar(d.base, 'small', 40_000);
  const seen = sweep(t, d, { what: 'import', attempt: () => d.s('import', tar, 'x:1'), undo: () => void (d.s('rmi', 'x:1'), d.s('prune')), max: 16 });
  t.match(seen.join('\n'), /cannot open the store at .*No space left/, 'the database could not open');
  t.match(seen.join('\n'), /cannot unpack the layer/, 'the layer did not fit');
  // Before: "internal error: Error: IO error: .../db/000135.log: No space left on device", exit 70,
  // and the layer's directory left in layers/ without a record.
  t.match(seen.join('\n'), /cannot write the store's database: .*No space left/, 'the layer fit, its record did not');
});

t.test('database: after a failed write, later writes are refused, never reported done and lost', async (t) => {
  // LevelDB alone keeps taking writes after a failed one, and drops them at its next open: a
  // command's clean-up would then delete directories whose records come back.
  const d = smallDisk(t, '1m');
  const path = join(d.disk, 'db');
  let meta = await Metadata.open(path, () => undefined);
  const tag = (key: string, value: string) => ({ type: 'put' as const, sublevel: meta.tags, key, value });
  const outcome = (p: Promise<void>) => p.then(() => null, (err: unknown) => err);
  await meta.write([tag('kept', 'a')]);
  leavePages(d, 0);
  let failure: unknown = null;
  for (let i = 0; i < 100 && failure === null; i++) failure = await outcome(meta.write([tag(`filler${i}`, 'x'.repeat(2000))]));
  t.ok(failure instanceof StoreError, `a full disk is the store's refusal (${String(failure)})`);
  t.ok(meta.lastFailureWasSpace, 'known to have failed for want of room: the batch is not recorded');
  unfill(d);
  // The failed append took the disk's last pages, so the database could not be reopened.
  const late = await outcome(meta.write([{ type: 'del', sublevel: meta.tags, key: 'kept' }, tag('late', 'c')]));
  t.ok(late instanceof StoreError, `a later write is refused (${String(late)})`);
  await meta.close().catch(() => undefined);
  meta = await Metadata.open(path, () => undefined);
  t.equal(await meta.tags.get('kept'), 'a', 'the next open finds what was written before the failure');
  t.equal(await meta.tags.get('late'), undefined, 'and nothing that was refused');
  await meta.close();
});

t.test('load: an archive that does not fit, a layer that does not, a record that does not', async (t) => {
  const d = smallDisk(t, '512k');
  // The archives come from a store on an ordinary disk.
  const src = { base: d.base, s: (...args: string[]): Result => strata(['--root', join(d.base, 'src'), ...args]) };
  // The sweep's archive is small (its layer is one page; the layer stage has its case above).
  for (const [ref, bytes] of [['big', 600_000], ['mid', 300_000], ['small', 4_000]] as const) {
    ok(t, src.s('import', randomTar(src.base, ref, bytes), `${ref}:1`), `import ${ref}`);
    ok(t, src.s('save', `${ref}:1`, '-o', `${src.base}/${ref}-save.tar`), `save ${ref}`);
  }
  const before = listing(d);
  // Staging the archive fills the disk. Before: "not a readable image archive (ENOSPC: ...)".
  const r1 = d.s('load', '-i', `${src.base}/big-save.tar`);
  failsClearly(t, r1, 'an archive larger than the disk');
  t.match(r1.stderr, /cannot unpack the archive into the store/, 'the store is full, the archive is fine');
  unchanged(t, d, before, 'an archive larger than the disk');
  // The archive is staged; its layer, unpacked beside it, does not fit.
  const r2 = d.s('load', '-i', `${src.base}/mid-save.tar`);
  failsClearly(t, r2, 'a layer that does not fit beside the staged archive');
  t.match(r2.stderr, /cannot unpack the layer/);
  unchanged(t, d, before, 'a layer that does not fit');
  const seen = sweep(t, d, { what: 'load', attempt: () => d.s('load', '-i', `${src.base}/small-save.tar`), undo: () => void (d.s('rmi', 'small:1'), d.s('prune')), max: 24 });
  t.match(seen.join('\n'), /cannot unpack the archive into the store/, 'staging the archive failed');
  t.match(seen.join('\n'), /cannot write the store's database/, 'the layer fit, its record did not');
});

t.test('load of a many-layer image: a record that fails part-way, and the clean-up after it, last', async (t) => {
  const d = smallDisk(t, '2m');
  const src = (...args: string[]): Result => strata(['--root', join(d.base, 'src'), ...args]);
  const files: Record<string, number> = {};
  for (let i = 0; i < 12; i++) files[`f${i}`] = 8_000;
  const ctx = context(d.base, 'layers12', `FROM scratch\n${Object.keys(files).map((f) => `COPY ${f} /${f}\n`).join('')}`, files);
  ok(t, src('build', '-t', 'many:1', ctx), 'build a 12-layer image');
  ok(t, src('save', 'many:1', '-o', `${d.base}/many.tar`), 'save it');
  // LevelDB keeps a failed batch's partial record and goes on taking writes that its next open
  // drops: the load's clean-up (records of the layers before deleted, then their directories)
  // left records without directories, and loading again then failed for good. Layers the
  // clean-up could not drop (no room to reopen the database) may stay: recorded, unused, whole.
  const seen = sweep(t, d, { what: 'load of 12 layers', attempt: () => d.s('load', '-i', `${d.base}/many.tar`), undo: () => void (d.s('rmi', 'many:1'), d.s('prune')), step: 8, max: 400, newLayers: true });
  t.match(seen.join('\n'), /cannot write the store's database/, 'a record failed part-way');
  ok(t, d.s('load', '-i', `${d.base}/many.tar`), 'with room, the load succeeds');
  ok(t, d.s('check'), 'and the store is consistent');
});

t.test('tag, rmi and import on a full disk, and on a read-only store', async (t) => {
  const d = smallDisk(t, '512k');
  const tar = randomTar(d.base, 'small', 16_000);
  ok(t, d.s('import', tar, 'app:1'), 'import');
  const before = listing(d);
  const tags = d.s('images').stdout;
  leavePages(d, 0);
  for (const args of [['tag', 'app:1', 'app:2'], ['rmi', 'app:1'], ['import', tar, 'other:1']]) {
    const r = d.s(...args);
    // Before: "cannot open the store at ROOT: Database failed to open", the reason left out.
    failsClearly(t, r, `${args[0]} on a full disk`, /cannot open the store at .*: .*No space left on device/);
  }
  unfill(d);
  unchanged(t, d, before, 'after a full disk');
  t.equal(d.s('images').stdout, tags, 'the tags as they were');

  const ro = join(d.base, 'ro');
  mkdirSync(ro);
  must(`mount --bind ${d.disk} ${ro} && mount -o remount,bind,ro ${ro}`);
  t.teardown(() => void sh(`umount -l ${ro}`));
  const r = (...args: string[]): Result => strata(['--root', join(ro, 'store'), ...args]);
  for (const args of [['import', tar, 'other:1'], ['tag', 'app:1', 'app:2'], ['rmi', 'app:1']]) {
    failsClearly(t, r(...args), `${args[0]} on a read-only store`, /cannot open the store at .*Read-only file system/);
  }
  must(`umount ${ro}`);
  unchanged(t, d, before, 'after a read-only store');
  t.equal(d.s('images').stdout, tags, 'the tags as they were');
});

t.test('save and export: into a read-only directory, and to standard output on a full disk', async (t) => {
  const base = tempDir(t);
  const root = join(base, 'store');
  const s = (...args: string[]): Result => strata(['--root', root, ...args]);
  ok(t, s('import', randomTar(base, 'r', 200_000), 'app:1'), 'import');
  const ro = join(base, 'ro');
  mkdirSync(join(base, 'out'));
  mkdirSync(ro);
  must(`mount --bind ${base}/out ${ro} && mount -o remount,bind,ro ${ro}`);
  t.teardown(() => void sh(`umount -l ${ro}`));
  for (const args of [['save', 'app:1'], ['save', '--format', 'oci', 'app:1'], ['export', 'app:1']]) {
    const r = s(...args, '-o', `${ro}/out.tar`);
    failsClearly(t, r, `${args.join(' ')} -o into a read-only directory`, /cannot write .*EROFS/);
  }
  t.same(readdirSync(`${base}/out`), [], 'nothing written');
  const full = join(base, 'full');
  mkdirSync(full);
  must(`mount -t tmpfs -o size=64k strata-test-full ${full}`);
  t.teardown(() => void sh(`umount -l ${full}`));
  for (const args of [['save', 'app:1'], ['export', 'app:1'], ['images']]) {
    writeFileSync(join(full, 'fill'), Buffer.alloc(statfsSync(full).bavail * statfsSync(full).bsize));
    // Before: an uncaught ENOSPC thrown from stdout's error event, with its stack, exit 1.
    const r = run('bash', ['-c', `${CLI} --root ${root} ${args.join(' ')} > ${full}/out`]);
    failsClearly(t, r, `${args[0]} > a file on a full disk`, /cannot write to standard output: ENOSPC/);
    rmSync(join(full, 'fill'));
  }
});

/** A store on a 4 MiB disk with the busybox base (2 MB) imported as busybox:latest. */
function buildStore(t: Test, inodes = '100k'): Disk {
  const d = smallDisk(t, '4m', inodes);
  must(`bash ${ROOT}native-deps/busybox-rootfs.sh ${d.base}/busybox.tar`);
  ok(t, d.s('import', `${d.base}/busybox.tar`, 'busybox:latest'), 'import busybox');
  return d;
}

function context(base: string, name: string, dockerfile: string, files: Record<string, number> = {}): string {
  const dir = join(base, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'Dockerfile'), dockerfile);
  for (const [f, bytes] of Object.entries(files)) must(`head -c ${bytes} /dev/urandom > ${dir}/${f}`);
  return dir;
}

t.test('build: a RUN or a COPY that writes more than the disk holds', async (t) => {
  const d = buildStore(t);
  const before = listing(d);
  const free = statfsSync(d.disk).bavail * statfsSync(d.disk).bsize;
  const cases = [
    // The RUN's own writes fail: its command fails, as in Docker.
    ['RUN fills the disk', `FROM busybox\nRUN dd if=/dev/zero of=/big bs=64k count=${Math.ceil(free / 65536) + 8}\n`, /RUN: The command .* returned a non-zero code: 1/],
    // The RUN succeeds, but its layer cannot be committed next to its upper.
    ['the commit of a RUN', `FROM busybox\nRUN dd if=/dev/urandom of=/big bs=64k count=${Math.ceil(free / 65536 / 2) + 2} || true\n`, /cannot unpack the layer: .*ENOSPC/],
    // A plain COPY writes the new upper directly. Before: "COPY: <the source file>: ENOSPC".
    ['a COPY larger than the disk', 'FROM busybox\nCOPY big /big\n', /COPY: ENOSPC: no space left on device, copyfile .* -> /],
  ] as const;
  for (const [what, dockerfile, why] of cases) {
    const ctx = context(d.base, `ctx-${what.replace(/\W+/g, '-')}`, dockerfile, dockerfile.includes('COPY') ? { big: free + 65536 } : {});
    const r = d.s('build', '-t', 'out:1', ctx);
    failsClearly(t, r, what, why);
    unchanged(t, d, before, what);
    t.notMatch(run('runc', ['list', '-q']).stdout, /strata-build-/, `${what}: no build container left`);
  }
});

t.test('build: a COPY with the disk filling up at every stage', async (t) => {
  const d = buildStore(t);
  const ctx = context(d.base, 'ctx', 'FROM busybox\nCOPY f /f\n', { f: 40_000 });
  const seen = sweep(t, d, { what: 'build COPY', attempt: () => d.s('build', '--no-cache', '-t', 'out:1', ctx), undo: () => void (d.s('rmi', 'out:1'), d.s('prune')), max: 24, newLayers: true });
  t.match(seen.join('\n'), /COPY: ENOSPC/, 'the copy did not fit');
  t.match(seen.join('\n'), /cannot unpack the layer/, 'its commit did not fit');
});

t.test('build: a RUN step out of inodes at every stage (init layer, mount, runc bundle)', async (t) => {
  const d = buildStore(t, '2000');
  const ctx = context(d.base, 'ctx', 'FROM busybox\nRUN echo hi > /f\n');
  const seen = sweep(t, d, {
    what: 'build RUN',
    attempt: () => d.s('build', '--no-cache', '-t', 'out:1', ctx),
    // With room for everything strata makes, the step's own command may meet the full disk.
    why: /ENOSPC|no space left|RUN: The command .* returned a non-zero code: [12]$/im,
    undo: () => void (d.s('rmi', 'out:1'), d.s('prune')),
    leave: leaveInodes,
    step: 4,
    max: 40,
    newLayers: true,
  });
  // Before: the init layer, made but not filled, stayed recorded as a writable layer no one owns.
  t.match(seen.join('\n'), /\/diff\/(proc|sys|dev|etc)/, "the init layer's mount points did not fit");
  t.match(seen.join('\n'), /run-strata-build-/, "runc's bundle did not fit");
});

t.test('commit and container creation on a full disk', async (t) => {
  const d = buildStore(t, '2000');
  ok(t, d.s('run', '--name', 'c1', 'busybox', 'sh', '-c', 'head -c 40000 /dev/urandom > /f'), 'run a container that writes a file');
  const seen = sweep(t, d, { what: 'commit', attempt: () => d.s('commit', 'c1', 'snap:1'), undo: () => void (d.s('rmi', 'snap:1'), d.s('prune')), max: 24, containers: true });
  t.match(seen.join('\n'), /cannot unpack the layer/, 'the layer did not fit');
  // Before: exit 70 and an orphan layer directory.
  t.match(seen.join('\n'), /cannot write the store's database/, 'the layer fit, its record did not');
  const made = sweep(t, d, {
    what: 'create',
    attempt: () => d.s('create', '--name', 'c2', 'busybox', 'true'),
    undo: () => void d.s('rm', 'c2'),
    leave: leaveInodes,
    step: 4,
    max: 40,
    containers: true,
  });
  // Before: each such failure left a writable init layer recorded, which check reports.
  t.match(made.join('\n'), /-init\/diff/, "the init layer's mount points did not fit");
});
