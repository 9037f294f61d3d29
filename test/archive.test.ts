/**
 * Image archives against the real tools: what strata saves, skopeo and umoci read; what they
 * write, strata loads with the same DiffIDs; import -> save -> load -> export keeps the tree; and
 * archives that lie (missing files, wrong digests) are refused with the store left as it was.
 */
import t, { type Test } from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, unmountStrata, type Teardown } from './lib/mounts.js';
import { must, sh, strata, type Result } from './lib/run.js';
import { diffSnapshots, snapshot } from './lib/tree.js';

function newStore(t: Teardown, name = 'store') {
  const base = tempDir(t);
  const root = join(base, name);
  const s = (...args: string[]): Result => strata(['--root', root, ...args]);
  return { base, root, s };
}

function ok(t: Test, r: Result, what: string): string {
  t.equal(r.code, 0, `${what} exits 0 (${r.stderr.trim()})`);
  return r.stdout;
}

function diffIds(s: (...a: string[]) => Result, image: string): string[] {
  return (JSON.parse(s('inspect', image).stdout) as { Config: { rootfs: { diff_ids: string[] } } }).Config.rootfs.diff_ids;
}

/** A rootfs with what a round trip must keep: modes, owners, times, xattrs, links, devices. */
function rootfs(dir: string): void {
  must(`
    set -e; mkdir -p ${dir}; cd ${dir}
    mkdir -p bin etc dev var/spool
    cp /bin/busybox bin/busybox && chmod 4755 bin/busybox && ln bin/busybox bin/sh && ln -s busybox bin/ls
    echo hello > etc/motd && setfattr -n user.note -v kept etc/motd
    mknod dev/null c 1 3 && mkfifo var/spool/fifo
    chown 1000:1000 var/spool && chmod 1777 var/spool
    touch -d '2021-05-06 07:08:09' etc/motd bin/busybox
  `);
}

t.test('skopeo and umoci read what strata saves', async (t) => {
  const { base, s } = newStore(t);
  rootfs(join(base, 'r'));
  must(`tar --xattrs --xattrs-include='user.*' -C ${base}/r -cf ${base}/r.tar .`);
  ok(t, s('import', `${base}/r.tar`, 'app:v1'), 'import');
  ok(t, s('save', 'app:v1', '-o', `${base}/d.tar`), 'save docker');
  ok(t, s('save', 'app:v1', '--format', 'oci', '-o', `${base}/o.tar`), 'save oci');
  const cfg = JSON.parse(must(`skopeo inspect --config docker-archive:${base}/d.tar`)) as { rootfs: { diff_ids: string[] } };
  t.same(cfg.rootfs.diff_ids, diffIds(s, 'app:v1'), 'skopeo reads the docker-archive, same DiffIDs');
  mkdirSync(`${base}/oci`);
  must(`tar -C ${base}/oci -xf ${base}/o.tar`);
  const ocfg = JSON.parse(must(`skopeo inspect --config oci:${base}/oci:app:v1`)) as { rootfs: { diff_ids: string[] } };
  t.same(ocfg.rootfs.diff_ids, diffIds(s, 'app:v1'), 'skopeo reads the OCI layout');
  must(`umoci unpack --image ${base}/oci:app:v1 ${base}/bundle`);
  const mnt = ok(t, s('mount', 'app:v1'), 'mount').trim();
  t.teardown(() => unmountStrata(mnt));
  t.same(diffSnapshots(snapshot(mnt), snapshot(join(base, 'bundle/rootfs'))), [], 'umoci unpack gives the tree strata mounts');
});

t.test('strata loads what skopeo and umoci write, with the same DiffIDs', async (t) => {
  const { base, s } = newStore(t);
  rootfs(join(base, 'r'));
  must(`tar -C ${base}/r -cf ${base}/r.tar .`);
  ok(t, s('import', `${base}/r.tar`, 'app:v1'), 'import');
  ok(t, s('save', 'app:v1', '-o', `${base}/d.tar`), 'save');
  const want = diffIds(s, 'app:v1');
  must(`skopeo copy -q docker-archive:${base}/d.tar oci:${base}/sk-oci:app:v2 && skopeo copy -q docker-archive:${base}/d.tar docker-archive:${base}/sk.tar:app:v3`);
  const other = newStore(t, 'other');
  t.match(ok(t, other.s('load', '-i', `${base}/sk-oci`), 'load skopeo OCI dir'), /Loaded image: app:v2/);
  t.match(ok(t, other.s('load', '-i', `${base}/sk.tar`), 'load skopeo docker-archive (symlinked layers)'), /Loaded image: app:v3/);
  t.same(diffIds(other.s, 'app:v2'), want, 'OCI: same DiffIDs');
  t.same(diffIds(other.s, 'app:v3'), want, 'docker-archive: same DiffIDs');
  // umoci: unpack, change, repack (a gzip layer with a whiteout on top).
  must(`cd ${base} && umoci unpack --image sk-oci:app:v2 b && rm b/rootfs/etc/motd && echo new > b/rootfs/etc/new && umoci repack --image sk-oci:app:umoci b`);
  ok(t, other.s('load', '-i', `${base}/sk-oci`), 'load umoci repack');
  const umociCfg = JSON.parse(must(`skopeo inspect --config oci:${base}/sk-oci:app:umoci`)) as { rootfs: { diff_ids: string[] } };
  t.same(diffIds(other.s, 'app:umoci'), umociCfg.rootfs.diff_ids, 'umoci layers: same DiffIDs');
  const mnt = ok(t, other.s('mount', 'app:umoci'), 'mount').trim();
  t.teardown(() => unmountStrata(mnt));
  t.equal(sh(`ls ${mnt}/etc`).stdout.trim(), 'new', 'the whiteout hides the file');
  ok(t, other.s('check'), 'check');
});

t.test('import -> save -> load -> export keeps the tree; save of a loaded image keeps its DiffIDs', async (t) => {
  const { base, s } = newStore(t);
  rootfs(join(base, 'r'));
  must(`tar --xattrs --xattrs-include='user.*' -C ${base}/r -cf ${base}/r.tar .`);
  ok(t, s('import', `${base}/r.tar`, 'app:v1'), 'import');
  ok(t, s('save', 'app:v1', '-o', `${base}/d.tar`), 'save');
  const other = newStore(t, 'other');
  ok(t, other.s('load', '-i', `${base}/d.tar`), 'load');
  ok(t, other.s('save', 'app:v1', '-o', `${base}/d2.tar`), 'save again');
  t.same(diffIds(other.s, 'app:v1'), diffIds(s, 'app:v1'), 'same DiffIDs after the round trip');
  t.equal(must(`tar -xOf ${base}/d2.tar manifest.json`), must(`tar -xOf ${base}/d.tar manifest.json`), 'same manifest, so same image id and layers');
  ok(t, other.s('export', 'app:v1', '-o', `${base}/e.tar`), 'export');
  mkdirSync(`${base}/e`);
  must(`tar --xattrs --xattrs-include='user.*' -C ${base}/e -xpf ${base}/e.tar`);
  const a = snapshot(join(base, 'r'), { nlink: true });
  const b = snapshot(join(base, 'e'), { nlink: true });
  t.same(diffSnapshots(a, b), [], 'modes, owners, xattrs, hard links, devices, fifos');
  t.equal(sh(`stat -c %Y ${base}/e/etc/motd`).stdout, sh(`stat -c %Y ${base}/r/etc/motd`).stdout, 'times to the second');
});

t.test('save and export to a full disk fail, and leave no file behind', async (t) => {
  const { base, s } = newStore(t);
  rootfs(join(base, 'r'));
  must(`tar -C ${base}/r -cf ${base}/r.tar .`);
  ok(t, s('import', `${base}/r.tar`, 'app:v1'), 'import');
  const full = join(base, 'full');
  mkdirSync(full);
  must(`mount -t tmpfs -o size=256k strata-test-full ${full}`);
  t.teardown(() => void sh(`umount -l ${full}`));
  // Files over 1 MiB take another path through export (streamed, not read whole).
  must(`mkdir -p ${base}/big && head -c 3M /dev/urandom > ${base}/big/blob && tar -C ${base}/big -cf ${base}/big.tar .`);
  ok(t, s('import', `${base}/big.tar`, 'big:v1'), 'import a tree with a large file');
  for (const [verb, args] of [['save', ['save', 'app:v1']], ['export', ['export', 'app:v1']], ['export of a large file', ['export', 'big:v1']]] as const) {
    const r = s(...args, '-o', `${full}/out.tar`);
    t.not(r.code, 0, `${verb} exits non-zero`);
    t.match(r.stderr, /ENOSPC|no space|takes no more data/i, `${verb} says why (${r.stderr.trim()})`);
    t.same(must(`ls -A ${full}`), '', `${verb} leaves nothing in the directory`);
  }
});

t.test('import into a store on a full disk fails, lists nothing and leaves the store consistent', async (t) => {
  const base = tempDir(t);
  const root = join(base, 'full');
  mkdirSync(root);
  must(`mount -t tmpfs -o size=512k,nr_inodes=100k strata-test-full ${root}`);
  t.teardown(() => void sh(`umount -l ${root}`));
  const s = (...args: string[]): Result => strata(['--root', join(root, 'store'), ...args]);
  ok(t, s('images'), 'a store on the small disk');
  // Data that does not fit: the file writer meets ENOSPC.
  must(`mkdir -p ${base}/big && head -c 3M /dev/urandom > ${base}/big/blob && tar -C ${base}/big -cf ${base}/big.tar .`);
  // Files with no data but long random names: on tmpfs they take no pages, so what fills the disk
  // is the layer's tar-split (its headers), written while the layer unpacks.
  must(`python3 -c '
import io, os, tarfile, sys
with tarfile.open(sys.argv[1], "w", format=tarfile.USTAR_FORMAT) as t:
    for i in range(15000):
        t.addfile(tarfile.TarInfo(os.urandom(40).hex()[:90]))
' ${base}/names.tar`);
  for (const [what, tar] of [['file data', 'big.tar'], ['the tar-split', 'names.tar']] as const) {
    const r = s('import', `${base}/${tar}`, 'x:1');
    t.not(r.code, 0, `${what}: non-zero exit`);
    t.match(r.stderr, /ENOSPC|no space/i, `${what}: says why (${r.stderr.trim()})`);
    t.notMatch(r.stderr, /internal error/, `${what}: an error, not a crash`);
    t.equal(s('images', '-q').stdout.trim(), '', `${what}: no image listed`);
    t.equal(s('layers').stdout.trim().split('\n').length, 1, `${what}: no layer listed (only the heading)`);
    t.same(must(`ls -A ${root}/store/tmp`), '', `${what}: nothing left unpacked`);
    ok(t, s('check'), `${what}: strata check passes`);
  }
});

t.test('save of a layer whose files changed on disk fails and leaves no file', async (t) => {
  const { base, s } = newStore(t);
  rootfs(join(base, 'r'));
  must(`tar -C ${base}/r -cf ${base}/r.tar .`);
  ok(t, s('import', `${base}/r.tar`, 'app:v1'), 'import');
  // Something outside strata appends to a file of the stored layer.
  must(`echo more >> $(ls -d ${base}/store/layers/*/diff | head -1)/etc/motd`);
  const r = s('save', 'app:v1', '-o', `${base}/out.tar`);
  t.not(r.code, 0, 'non-zero exit');
  t.match(r.stderr, /changed on disk.*etc\/motd/, `says which file (${r.stderr.trim()})`);
  t.notMatch(r.stderr, /internal error/, 'an error of the store, not a crash');
  t.equal(sh(`ls -A ${base} | grep -c out.tar`).stdout.trim(), '0', 'no archive left, not even a temporary one');
  const c = s('check');
  t.not(c.code, 0, 'strata check finds the damage');
});

t.test('archives that lie are refused and the store stays as it was', async (t) => {
  const { base, s } = newStore(t);
  must(`mkdir -p ${base}/r/etc && echo x > ${base}/r/etc/f && tar -C ${base}/r -cf ${base}/r.tar .`);
  ok(t, s('import', `${base}/r.tar`, 'app:v1'), 'import');
  ok(t, s('save', 'app:v1', '-o', `${base}/d.tar`), 'save');
  ok(t, s('save', 'app:v1', '--format', 'oci', '-o', `${base}/o.tar`), 'save oci');
  const other = newStore(t, 'other');
  // docker-archive whose manifest names a file that is not there
  must(`mkdir ${base}/m && tar -C ${base}/m -xf ${base}/d.tar && cd ${base}/m && sed -i 's#/layer.tar#/missing.tar#' manifest.json && tar -cf ${base}/missing.tar .`);
  let r = other.s('load', '-i', `${base}/missing.tar`);
  t.not(r.code, 0, 'missing layer file: non-zero exit');
  t.match(r.stderr, /has no .*missing\.tar/, 'names the missing file');
  // docker-archive whose layer does not match the config's DiffID
  must(`mkdir ${base}/w && tar -C ${base}/w -xf ${base}/d.tar && cd ${base}/w && L=$(ls -d */ | head -1) && mkdir x && tar -C x -xf $L/layer.tar && echo changed > x/etc/f && tar -C x -cf $L/layer.tar . && rm -r x && tar -cf ${base}/wrong.tar .`);
  r = other.s('load', '-i', `${base}/wrong.tar`);
  t.not(r.code, 0, 'wrong DiffID: non-zero exit');
  t.match(r.stderr, /DiffID/, 'says which digest');
  // OCI layout with a corrupted blob
  must(`mkdir ${base}/c && tar -C ${base}/c -xf ${base}/o.tar`);
  const index = JSON.parse(readFileSync(`${base}/c/index.json`, 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(readFileSync(`${base}/c/blobs/sha256/${index.manifests[0]!.digest.slice(7)}`, 'utf8')) as { layers: Array<{ digest: string }> };
  const layerPath = `${base}/c/blobs/sha256/${manifest.layers[0]!.digest.slice(7)}`;
  const bytes = readFileSync(layerPath);
  bytes[700] = bytes[700]! ^ 0xff;
  writeFileSync(layerPath, bytes);
  r = other.s('load', '-i', `${base}/c`);
  t.not(r.code, 0, 'corrupt blob: non-zero exit');
  t.match(r.stderr, /blob sha256:[0-9a-f]+ has digest/, 'says the blob is wrong');
  t.match(other.s('load', '-i', `${base}/r`).stderr, /not an OCI layout/, 'a plain directory is refused');
  t.equal(other.s('images', '-q').stdout, '', 'nothing loaded');
  t.equal(other.s('layers').stdout.trim().split('\n').length, 1, 'no layer left behind');
  ok(t, other.s('check'), 'store consistent');
  t.equal(s('save', 'nope:1', '-o', `${base}/n.tar`).code, 1, 'save of an unknown image: exit 1');
  t.equal(sh(`ls ${base}/n.tar*`).code, 2, 'and no file written');
});
