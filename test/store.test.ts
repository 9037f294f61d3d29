/**
 * The layer store: import of real tarballs (DiffIDs, trees, compression), the exact tar back
 * from a stored layer, whiteouts and opaque markers in the kernel's on-disk form, Docker's
 * changeset rules for writable layers, image mounts, export, refcounts, check and prune, the
 * store lock, and bad input that must be refused without writing anything outside the store.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { spawn } from 'node:child_process';
import { extract } from 'tar-stream';
import { sys } from '../driver/native/sys.js';
import { LayerStore } from '../driver/store/store.js';
import { isMounted, tempDir, unmountStrata, type Teardown } from './lib/mounts.js';
import { must, sh, strata, type Result } from './lib/run.js';
import { diffSnapshots, snapshot } from './lib/tree.js';
import { tarBytes, writeTar, type TarEntry } from './lib/tars.js';

function sha(buf: Buffer): string {
  return 'sha256:' + createHash('sha256').update(buf).digest('hex');
}

/** A store root and a `strata` bound to it. */
function newStore(t: Teardown) {
  const base = tempDir(t);
  const root = join(base, 'store');
  const s = (...args: string[]): Result => strata(['--root', root, ...args]);
  return { base, root, s };
}

function ok(t: Test, r: Result, what: string): string {
  t.equal(r.code, 0, `${what} exits 0 (${r.stderr.trim()})`);
  return r.stdout;
}

/** A small rootfs with the things layers must carry: modes, owners, links, a fifo, xattrs. */
function makeRootfs(dir: string): void {
  must(`
    set -e; cd ${JSON.stringify(dir)}
    mkdir -p bin etc/conf.d var/empty usr/share/doc
    printf 'root:x:0:0::/root:/bin/sh\\n' > etc/passwd
    echo hello > etc/motd
    head -c 100000 /dev/urandom > usr/share/doc/blob
    cp /bin/busybox bin/busybox && chmod 4755 bin/busybox
    ln bin/busybox bin/sh
    ln -s busybox bin/ls
    mkfifo var/fifo
    chown 1000:1000 etc/conf.d && chmod 2775 etc/conf.d
    setfattr -n user.color -v blue etc/motd
    touch -d '2020-01-02 03:04:05' etc/motd
  `);
}

async function untar(buf: Buffer): Promise<Array<{ name: string; type: string; size: number; mode: number; mtime: number }>> {
  const out: Array<{ name: string; type: string; size: number; mode: number; mtime: number }> = [];
  const x = extract();
  const feed = Readable.from([buf]).pipe(x as unknown as NodeJS.WritableStream);
  void feed;
  for await (const e of x) {
    out.push({ name: e.header.name, type: e.header.type, size: e.header.size, mode: e.header.mode, mtime: e.header.mtime.getTime() / 1000 });
    for await (const _ of e) {
      // drain
    }
  }
  return out;
}

async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

t.test('import: the DiffID is the digest of the tar, the tree is the tarball, check passes', async (t) => {
  const { base, s } = newStore(t);
  const rootfs = join(base, 'rootfs');
  mkdirSync(rootfs);
  makeRootfs(rootfs);
  must(`tar --xattrs --xattrs-include='user.*' -C ${rootfs} -cf ${base}/rootfs.tar .`);
  const id = ok(t, s('import', `${base}/rootfs.tar`, 'base:1'), 'import').trim();
  t.match(id, /^sha256:[0-9a-f]{64}$/, 'prints the image id');
  const info = JSON.parse(ok(t, s('inspect', 'base:1'), 'inspect')) as { Config: { rootfs: { diff_ids: string[] } }; Layers: string[] };
  t.same(info.Config.rootfs.diff_ids, [sha(readFileSync(`${base}/rootfs.tar`))], 'DiffID = sha256 of the tar');
  const layer = JSON.parse(ok(t, s('inspect', info.Layers[0]!), 'inspect layer')) as { Dir: string };
  t.same(diffSnapshots(snapshot(rootfs, { nlink: true, mtime: true }), snapshot(layer.Dir, { nlink: true, mtime: true })), [], 'same tree, links, xattrs, times');
  ok(t, s('check'), 'check');
});

t.test('import: gzip, bzip2 and xz give the same DiffID as the plain tar', async (t) => {
  const { base, s } = newStore(t);
  await writeTar(`${base}/l.tar`, [{ name: 'a/', type: 'directory' }, { name: 'a/f', body: 'x'.repeat(5000) }]);
  must(`cd ${base} && gzip -k l.tar && bzip2 -k l.tar && xz -k l.tar`);
  const want = sha(readFileSync(`${base}/l.tar`));
  for (const f of ['l.tar', 'l.tar.gz', 'l.tar.bz2', 'l.tar.xz']) {
    ok(t, s('import', `${base}/${f}`, `c:${f.replace(/\W/g, '')}`), `import ${f}`);
    const info = JSON.parse(s('inspect', `c:${f.replace(/\W/g, '')}`).stdout) as { Config: { rootfs: { diff_ids: string[] } } };
    t.equal(info.Config.rootfs.diff_ids[0], want, `${f}: DiffID of the uncompressed tar`);
  }
  t.equal(s('layers').stdout.trim().split('\n').length, 2, 'one layer stored for all four');
});

t.test('a stored layer gives back its exact tar (binary xattrs, long names, links)', async (t) => {
  const { base, root } = newStore(t);
  const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0xfe, 0x00, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const long = 'd'.repeat(120) + '/' + 'é'.repeat(60);
  const entries: TarEntry[] = [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/ping', body: 'ELF', mode: 0o755, xattrs: { 'security.capability': cap } },
    { name: 'bin/pong', type: 'link', linkname: 'bin/ping' },
    { name: long.split('/')[0]! + '/', type: 'directory' },
    { name: long, body: 'long' },
  ];
  const tar = await tarBytes(entries);
  const store = await LayerStore.open(root);
  try {
    const rec = await store.importLayer(Readable.from([tar]), null);
    t.equal(rec.diffId, sha(tar), 'DiffID');
    const v = sys.getxattrAt(sys.AT_FDCWD, join(store.diffDir(rec.id), 'bin/ping'), 'security.capability');
    t.same(v, cap, 'binary xattr value kept byte for byte');
    t.equal(lstatSync(join(store.diffDir(rec.id), 'bin/pong')).nlink, 2, 'hard link');
    t.equal(readFileSync(join(store.diffDir(rec.id), long), 'utf8'), 'long', 'long non-ASCII name');
    t.ok((await collect(await store.diff(rec.id))).equals(tar), 'diff replays the same bytes');
  } finally {
    await store.close();
  }
});

t.test('check finds a changed layer; the store says which', async (t) => {
  const { base, root, s } = newStore(t);
  await writeTar(`${base}/l.tar`, [{ name: 'f', body: 'original' }]);
  ok(t, s('import', `${base}/l.tar`, 'x'), 'import');
  const layer = readdirSync(join(root, 'layers'))[0]!;
  writeFileSync(join(root, 'layers', layer, 'diff', 'f'), 'tampered');
  const r = s('check');
  t.not(r.code, 0, 'check fails');
  t.match(r.stdout, new RegExp(`layer ${layer}: `), 'names the layer');
});

t.test('whiteouts and opaque markers land in the kernel form; overlayfs shows the result', async (t) => {
  const { base, root } = newStore(t);
  const store = await LayerStore.open(root);
  try {
    const l1 = await store.importLayer(
      Readable.from([
        await tarBytes([
          { name: 'etc/', type: 'directory' },
          { name: 'etc/gone', body: '1' },
          { name: 'etc/kept', body: '2' },
          { name: 'opq/', type: 'directory' },
          { name: 'opq/old', body: '3' },
        ]),
      ]),
      null,
    );
    const l2 = await store.importLayer(
      Readable.from([await tarBytes([{ name: 'etc/', type: 'directory' }, { name: 'etc/.wh.gone' }, { name: 'opq/', type: 'directory' }, { name: 'opq/.wh..wh..opq' }, { name: 'opq/new', body: '4' }])]),
      l1.id,
    );
    const d2 = store.diffDir(l2.id);
    const wh = lstatSync(join(d2, 'etc/gone'));
    t.ok(wh.isCharacterDevice() && wh.rdev === 0, 'whiteout is a 0:0 character device');
    t.notOk(existsSync(join(d2, 'etc/.wh.gone')), 'no .wh. file left');
    t.equal(String(sys.getxattrAt(sys.AT_FDCWD, join(d2, 'opq'), 'trusted.overlay.opaque')), 'y', 'opaque xattr');
    const mnt = join(base, 'mnt');
    mkdirSync(mnt);
    must(`mount -t overlay overlay -o lowerdir=${d2}:${store.diffDir(l1.id)} ${mnt}`);
    t.teardown(() => void sh(`umount ${mnt}`));
    t.same(readdirSync(join(mnt, 'etc')).sort(), ['kept'], 'overlayfs hides the whited-out file');
    t.same(readdirSync(join(mnt, 'opq')), ['new'], 'and the opaque dir’s lower content');
    t.ok((await collect(await store.diff(l2.id))).equals(await tarBytes([{ name: 'etc/', type: 'directory' }, { name: 'etc/.wh.gone' }, { name: 'opq/', type: 'directory' }, { name: 'opq/.wh..wh..opq' }, { name: 'opq/new', body: '4' }])), 'and the layer tar comes back as it was');
  } finally {
    await store.close();
  }
});

t.test('a writable layer diffs by Docker’s rules', async (t) => {
  const { base, root, s } = newStore(t);
  await writeTar(`${base}/l.tar`, [
    { name: 'etc/', type: 'directory' },
    { name: 'etc/hostname', body: 'old' },
    { name: 'etc/passwd', body: 'root' },
    { name: 'keep/', type: 'directory' },
    { name: 'keep/a', body: 'a' },
    { name: 'tree/', type: 'directory' },
    { name: 'tree/x', body: 'x' },
  ]);
  ok(t, s('import', `${base}/l.tar`, 'img'), 'import');
  const mnt = join(base, 'mnt');
  mkdirSync(mnt);
  ok(t, s('mount', 'img', mnt, '--rw'), 'mount --rw');
  t.teardown(() => unmountStrata(mnt));
  const store0 = await LayerStore.open(root);
  const empty = await collect(await store0.diff((await store0.meta.allLayers()).find((l) => l.rw)!.id));
  await store0.close();
  t.ok(empty.equals(Buffer.alloc(1024)), 'no changes: exactly 1024 zero bytes');
  must(`cd ${mnt} && echo new > etc/hostname && rm etc/passwd && rm -r tree && rm -r keep && mkdir keep && echo b > keep/b && mkdir -p add/deep && echo z > add/deep/z`);
  const store = await LayerStore.open(root);
  try {
    const rw = (await store.meta.allLayers()).find((l) => l.rw)!;
    const entries = await untar(await collect(await store.diff(rw.id, { sourceDateEpoch: 1_600_000_000 })));
    t.same(
      entries.map((e) => e.name),
      ['add/', 'add/deep/', 'add/deep/z', 'etc/', 'etc/hostname', 'etc/.wh.passwd', 'keep/', 'keep/.wh..wh..opq', 'keep/b', '.wh.tree'],
      'parents included, sorted, whiteouts where the name was, opaque marker after its dir',
    );
    t.equal(entries.find((e) => e.name === 'etc/.wh.passwd')!.mode, 0o600, 'whiteout mode 0600');
    t.equal(entries.find((e) => e.name === 'keep/.wh..wh..opq')!.mtime, 0, 'opaque marker mtime 0');
    t.ok(entries.every((e) => e.name.endsWith('.wh..wh..opq') || e.mtime === 1_600_000_000), 'mtimes clamped to SOURCE_DATE_EPOCH');
  } finally {
    await store.close();
  }
});

t.test('image mounts: read-only, or a writable layer dropped at umount; rmi waits for them', async (t) => {
  const { base, s } = newStore(t);
  await writeTar(`${base}/l.tar`, [{ name: 'etc/', type: 'directory' }, { name: 'etc/motd', body: 'hi' }]);
  ok(t, s('import', `${base}/l.tar`, 'img'), 'import');
  const ro = ok(t, s('mount', 'img'), 'mount').trim();
  t.teardown(() => unmountStrata(ro));
  t.equal(readFileSync(join(ro, 'etc/motd'), 'utf8'), 'hi', 'content visible');
  t.match(sh(`echo x > ${ro}/etc/motd`).stderr, /Read-only file system/, 'read-only');
  const rmi = s('rmi', 'img');
  t.not(rmi.code, 0, 'rmi refuses a mounted image');
  t.match(rmi.stderr, /mounted at/);
  ok(t, s('umount', ro), 'umount');
  t.notOk(existsSync(ro), 'the mountpoint the store made is gone');
  const rw = ok(t, s('mount', 'img', '--rw'), 'mount --rw').trim();
  t.teardown(() => unmountStrata(rw));
  writeFileSync(join(rw, 'etc/motd'), 'changed');
  t.equal(s('layers').stdout.split('\n').filter((l) => / rw /.test(l)).length, 1, 'a writable layer while mounted');
  ok(t, s('umount', rw), 'umount');
  t.equal(s('layers').stdout.split('\n').filter((l) => / rw /.test(l)).length, 0, 'dropped at umount');
  t.notOk(isMounted(rw));
  ok(t, s('tag', 'img', 'org/app:1'), 'tag with a repository path');
  const named = ok(t, s('mount', 'org/app:1'), 'mount an image whose name has a slash').trim();
  t.teardown(() => unmountStrata(named));
  ok(t, s('umount', named), 'umount');
  ok(t, s('check'), 'check');
});

t.test('export writes the merged tree of the image', async (t) => {
  const { base, root, s } = newStore(t);
  const store = await LayerStore.open(root);
  const l1 = await store.importLayer(Readable.from([await tarBytes([{ name: 'a/', type: 'directory' }, { name: 'a/1', body: '1' }, { name: 'a/2', body: '2' }, { name: 'l', type: 'symlink', linkname: 'a/1' }])]), null);
  const l2 = await store.importLayer(Readable.from([await tarBytes([{ name: 'a/', type: 'directory' }, { name: 'a/.wh.1' }, { name: 'a/3', body: '3', mode: 0o600 }])]), l1.id);
  const { Images } = await import('../driver/store/images.js');
  await new Images(store).add(JSON.stringify({ architecture: 'amd64', os: 'linux', created: '2024-01-01T00:00:00Z', config: {}, rootfs: { type: 'layers', diff_ids: [l1.diffId, l2.diffId] }, history: [{ created: '2024-01-01T00:00:00Z' }, { created: '2024-01-01T00:00:00Z' }] }), ['two:layers']);
  await store.close();
  ok(t, s('export', 'two:layers', '-o', `${base}/out.tar`), 'export');
  const out = join(base, 'out');
  mkdirSync(out);
  must(`tar -C ${out} -xpf ${base}/out.tar`);
  const mnt = ok(t, s('mount', 'two:layers'), 'mount').trim();
  t.teardown(() => unmountStrata(mnt));
  t.same(diffSnapshots(snapshot(mnt), snapshot(out)), [], 'export = the mounted tree');
  t.same(readdirSync(join(out, 'a')).sort(), ['2', '3']);
});

t.test('rmi, tag and prune keep refcounts exact', async (t) => {
  const { base, s } = newStore(t);
  await writeTar(`${base}/l.tar`, [{ name: 'f', body: 'f' }]);
  ok(t, s('import', `${base}/l.tar`, 'a:1'), 'import');
  ok(t, s('tag', 'a:1', 'b:2'), 'tag');
  t.match(s('layers').stdout, / 1\n$/, 'one image uses the layer');
  t.match(ok(t, s('rmi', 'a:1'), 'rmi a:1'), /Untagged: a:1/);
  t.notMatch(s('rmi', 'b:2').stdout, /^$/, 'rmi b:2 deletes the image');
  t.match(s('layers').stdout, / 0\n$/, 'no image uses the layer');
  ok(t, s('check'), 'check with an unused layer');
  t.match(ok(t, s('prune'), 'prune'), /1 layer\(s\) freed/);
  t.equal(s('layers').stdout.trim().split('\n').length, 1, 'no layers left');
  t.equal(s('rmi', 'nope').code, 1, 'unknown image: exit 1');
});

t.test('an interrupted import leaves what check explains and prune reclaims', async (t) => {
  const { root, s } = newStore(t);
  ok(t, s('images'), 'create the store');
  mkdirSync(join(root, 'layers', 'f'.repeat(64), 'diff'), { recursive: true });
  mkdirSync(join(root, 'tmp', 'staging-of-a-dead-command'), { recursive: true });
  const r = s('check');
  t.not(r.code, 0, 'check fails');
  t.match(r.stdout, /a directory with no record/, 'explains the orphan');
  t.notOk(existsSync(join(root, 'tmp', 'staging-of-a-dead-command')), 'stale staging removed on open');
  t.match(ok(t, s('prune'), 'prune'), /removed orphan directory/);
  ok(t, s('check'), 'check after prune');
});

t.test('a second command waits for the store, saying so', async (t) => {
  const { root, s } = newStore(t);
  ok(t, s('images'), 'create the store');
  const holder = spawn(process.execPath, ['--input-type=module', '-e', `
    const { LayerStore } = await import(${JSON.stringify(new URL('../dist/driver/store/store.js', import.meta.url).pathname)});
    const s = await LayerStore.open(${JSON.stringify(root)});
    process.stdout.write('held\\n');
    setTimeout(() => s.close(), 1500);
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => holder.stdout!.once('data', () => res()));
  const started = Date.now();
  const r = await new Promise<Result>((res) => {
    const c = spawn(process.execPath, [new URL('../dist/cli/main.js', import.meta.url).pathname, '--root', root, 'images'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d));
    c.stderr.on('data', (d: Buffer) => (err += d));
    c.on('close', (code) => res({ code: code ?? 1, stdout: out, stderr: err }));
  });
  t.equal(r.code, 0, 'succeeds once the store is free');
  t.match(r.stderr, /waiting for another strata command/, 'says why it waits');
  t.ok(Date.now() - started > 500, 'it did wait');
});

t.test('bad input is refused and writes nothing outside the store', async (t) => {
  const { base, root, s } = newStore(t);
  const outside = join(base, 'outside');
  mkdirSync(outside);
  chmodSync(outside, 0o777);
  await writeTar(`${base}/good.tar`, [{ name: 'lnk', type: 'symlink', linkname: outside }, { name: 'd/', type: 'directory' }]);
  ok(t, s('import', `${base}/good.tar`, 'base'), 'a layer with a symlink pointing out');
  const store = await LayerStore.open(root);
  const baseLayer = (await store.meta.allLayers())[0]!.id;
  await store.close();
  const cases: Array<[string, TarEntry[] | Buffer, RegExp]> = [
    ['absolute name', [{ name: '/etc/evil', body: 'x' }], /absolute name/],
    ['dot-dot', [{ name: 'd/../../evil', body: 'x' }], /'\.\.'/],
    ['symlink in the same layer', [{ name: 'ln', type: 'symlink', linkname: outside }, { name: 'ln/evil', body: 'x' }], /symlink ln of this layer/],
    ['hard link out of the layer', [{ name: 'h', type: 'link', linkname: '../../etc/passwd' }], /'\.\.'|not a file of this layer/],
    ['hard link to nothing', [{ name: 'h', type: 'link', linkname: 'etc/shadow' }], /not a file of this layer/],
    ['garbage', Buffer.from('this is not a tar archive at all'.repeat(40)), /not a valid tar/],
  ];
  for (const [what, entries, msg] of cases) {
    const file = join(base, what.replace(/\W/g, '_') + '.tar');
    if (Buffer.isBuffer(entries)) writeFileSync(file, entries);
    else await writeTar(file, entries);
    const r = s('import', file, 'bad');
    t.not(r.code, 0, `${what}: non-zero exit`);
    t.match(r.stderr, msg, `${what}: says why`);
  }
  const good = await tarBytes([{ name: 'f', body: 'y'.repeat(100000) }]);
  writeFileSync(`${base}/truncated.tar`, good.subarray(0, 20000));
  t.match(s('import', `${base}/truncated.tar`, 'bad').stderr, /not a valid tar|truncated|Unexpected end/, 'truncated tar');
  must(`gzip -c ${base}/good.tar | head -c 60 > ${base}/cut.tgz`);
  t.match(s('import', `${base}/cut.tgz`, 'bad').stderr, /corrupt gzip|unexpected end/i, 'truncated gzip');
  // A path through a symlink of a lower layer, applied over the base layer.
  const store2 = await LayerStore.open(root);
  await t.rejects(store2.importLayer(Readable.from([await tarBytes([{ name: 'lnk/evil', body: 'x' }])]), baseLayer), /symlink lnk of a lower layer/, 'symlink in a lower layer');
  await store2.close();
  t.same(readdirSync(outside), [], 'nothing written outside');
  t.notOk(existsSync('/etc/evil'), 'nothing at the absolute path');
  t.same(readdirSync(join(root, 'tmp')), [], 'no staging left');
  t.equal(s('images', '-q').stdout.trim().split('\n').length, 1, 'only the good image');
  ok(t, s('check'), 'store consistent');
});

t.test('a symlink inside a layer is kept as a link, never followed', async (t) => {
  const { base, root, s } = newStore(t);
  await writeTar(`${base}/l.tar`, [{ name: 'etc', type: 'symlink', linkname: '/etc' }]);
  ok(t, s('import', `${base}/l.tar`, 'x'), 'import');
  const layer = readdirSync(join(root, 'layers'))[0]!;
  t.ok(lstatSync(join(root, 'layers', layer, 'diff', 'etc')).isSymbolicLink(), 'a symlink in the layer');
});

t.test('what follows the end of the archive is kept for the digest but never unpacked', async (t) => {
  const { base, root } = newStore(t);
  const first = await tarBytes([{ name: 'bin/', type: 'directory' }]);
  const appended = Buffer.concat([first, await tarBytes([{ name: 'etc/', type: 'directory' }, { name: 'etc/ld.so.preload', body: '/evil.so' }])]);
  const store = await LayerStore.open(root);
  try {
    const rec = await store.importLayer(Readable.from([appended]), null);
    t.equal(rec.diffId, sha(appended), 'the DiffID covers every byte');
    t.notOk(existsSync(join(store.diffDir(rec.id), 'etc')), 'entries after the end blocks are not unpacked');
    t.ok((await collect(await store.diff(rec.id))).equals(appended), 'and the tar comes back whole');
    const lone = Buffer.concat([first.subarray(0, first.length - 1024), Buffer.alloc(512), (await tarBytes([{ name: 'x', body: 'x' }])).subarray(0, 1024)]);
    await t.rejects(store.importLayer(Readable.from([lone]), null), /lone zero block/, 'a lone zero block before more entries is refused');
  } finally {
    await store.close();
  }
});

t.test('tars that cannot be stored faithfully are refused', async (t) => {
  const { base, root } = newStore(t);
  const store = await LayerStore.open(root);
  try {
    const replaced = await tarBytes([{ name: 'b', body: 'same' }, { name: 'a', body: 'data' }, { name: 'a', type: 'link', linkname: 'b' }]);
    await t.rejects(store.importLayer(Readable.from([replaced]), null), /replaces a, written earlier/, 'a file with data replaced later in the same tar');
    must(`cd ${base} && truncate -s 10M sparse && printf x >> sparse && tar --format=posix --sparse -cf sparse.tar sparse`);
    await t.rejects(store.importLayer(Readable.from([readFileSync(`${base}/sparse.tar`)]), null), /sparse/, 'sparse files');
    const dirThenLink = await tarBytes([{ name: 'a/', type: 'directory' }, { name: 'a/b/', type: 'directory' }, { name: 'a', type: 'symlink', linkname: 'x' }]);
    const rec = await store.importLayer(Readable.from([dirThenLink]), null);
    t.ok(lstatSync(join(store.diffDir(rec.id), 'a')).isSymbolicLink(), 'a directory replaced by a symlink in the same tar');
    t.same(readdirSync(join(root, 'tmp')), [], 'no staging left');
  } finally {
    await store.close();
  }
});

t.test('prune keeps what a live mount reads and removes writable layers nothing owns', async (t) => {
  const { base, root, s } = newStore(t);
  await writeTar(`${base}/l.tar`, [{ name: 'f', body: 'data' }]);
  ok(t, s('import', `${base}/l.tar`, 'img'), 'import');
  const mnt = ok(t, s('mount', 'img'), 'mount').trim();
  t.teardown(() => unmountStrata(mnt));
  ok(t, s('rmi', '-f', 'img'), 'rmi -f of a mounted image');
  ok(t, s('prune'), 'prune');
  t.equal(readFileSync(join(mnt, 'f'), 'utf8'), 'data', 'the mount still reads its layer');
  ok(t, s('umount', mnt), 'umount');
  t.match(ok(t, s('prune'), 'prune after umount'), /1 layer\(s\) freed/, 'then it goes');
  const store = await LayerStore.open(root);
  await store.createReadWrite('rw-orphan', null);
  await store.close();
  t.match(s('check').stdout, /writable layer no mount or container owns/, 'check reports an unowned writable layer');
  ok(t, s('prune'), 'prune');
  ok(t, s('check'), 'and prune removes it');
});

t.test('the driver contract: get/put are counted, changes follow docker diff, diffSize is the diff', async (t) => {
  const { root } = newStore(t);
  const store = await LayerStore.open(root);
  t.teardown(() => store.close());
  const base = await store.importLayer(
    Readable.from([
      await tarBytes([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/hostname', body: 'old' },
        { name: 'etc/passwd', body: 'root' },
        { name: 'gone/', type: 'directory' },
        { name: 'gone/a', body: 'a' },
        { name: 'same/', type: 'directory' },
        { name: 'same/s', body: 's' },
      ]),
    ]),
    null,
  );
  await store.createReadWrite('c1', base.id);
  const p = await store.get('c1');
  // Not `strata umount`: it would wait for the store this test holds open.
  t.teardown(() => void sh(`umount -l ${p} 2>/dev/null`));
  t.equal(await store.get('c1'), p, 'a second get shares the mount');
  must(`cd ${p} && echo new > etc/hostname && rm etc/passwd && rm -r gone && mkdir -p add/sub && echo z > add/sub/z && cat same/s >/dev/null`);
  t.same(
    (await store.changes('c1')).map((c) => `${c.kind} ${c.path}`),
    ['A /add', 'A /add/sub', 'A /add/sub/z', 'C /etc', 'C /etc/hostname', 'D /etc/passwd', 'D /gone'],
    'A/C/D as docker diff: changed parents as C, one D for a deleted directory, untouched dirs absent',
  );
  t.equal(await store.diffSize('c1'), (await collect(await store.diff('c1'))).length, 'diffSize = bytes of the diff');
  await store.put('c1');
  t.ok(isMounted(p), 'still mounted after one of two puts');
  await store.put('c1');
  t.notOk(isMounted(p), 'unmounted by the last put');
  t.notOk(existsSync(p), 'and its mountpoint removed');
  await t.rejects(store.put('c1'), /not mounted/, 'an unbalanced put is an error');
  const ro = await store.get(base.id);
  t.teardown(() => void sh(`umount -l ${ro} 2>/dev/null`));
  t.match(sh(`touch ${ro}/x`).stderr, /Read-only file system/, 'a read-only layer mounts read-only');
  await t.rejects(store.remove(base.id), /mounted|parent/, 'a mounted layer cannot be removed');
  await store.put(base.id);
  t.equal(await store.diffSize(base.id), base.tarBytes, 'a stored layer: its tar size');
});

t.test('an opaque directory in the xattr encoding (SCHILY.xattr.trusted.overlay.opaque) is opaque', async (t) => {
  const { root } = newStore(t);
  const store = await LayerStore.open(root);
  t.teardown(() => store.close());
  const l1 = await store.importLayer(Readable.from([await tarBytes([{ name: 'd/', type: 'directory' }, { name: 'd/old', body: 'o' }])]), null);
  const l2 = await store.importLayer(
    Readable.from([await tarBytes([{ name: 'd/', type: 'directory', xattrs: { 'trusted.overlay.opaque': Buffer.from('y') } }, { name: 'd/new', body: 'n' }])]),
    l1.id,
  );
  t.equal(String(sys.getxattrAt(sys.AT_FDCWD, join(store.diffDir(l2.id), 'd'), 'trusted.overlay.opaque')), 'y', 'marked opaque');
  const l3 = await store.importLayer(Readable.from([await tarBytes([{ name: 'e/', type: 'directory', xattrs: { 'trusted.overlay.redirect': Buffer.from('/d') } }])]), l2.id);
  t.equal(sys.getxattrAt(sys.AT_FDCWD, join(store.diffDir(l3.id), 'e'), 'trusted.overlay.redirect'), -61, 'no other overlay xattr gets in');
});

t.test('an import killed midway leaves nothing listed; check explains, prune reclaims', async (t) => {
  const { base, root, s } = newStore(t);
  must(`mkdir -p ${base}/big && for d in $(seq 40); do mkdir ${base}/big/$d; for f in $(seq 50); do head -c 20000 /dev/urandom > ${base}/big/$d/$f; done; done && tar -C ${base}/big -cf ${base}/big.tar .`);
  ok(t, s('images'), 'create the store');
  const child = spawn(process.execPath, [new URL('../dist/cli/main.js', import.meta.url).pathname, '--root', root, 'import', `${base}/big.tar`, 'big:1'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 400));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('close', r));
  t.equal(s('images', '-q').stdout, '', 'no image listed');
  s('check');
  ok(t, s('prune'), 'prune');
  ok(t, s('check'), 'check passes');
  t.same(readdirSync(join(root, 'tmp')), [], 'no staging left');
  t.match(ok(t, s('import', `${base}/big.tar`, 'big:1'), 'import again'), /^sha256:/, 'and the import works');
});
