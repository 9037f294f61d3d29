/**
 * strata push, pull and login against a real registry (Docker Distribution, Debian
 * docker-registry) on 127.0.0.1, with skopeo as the independent other side: what strata pushes
 * skopeo reads with the same DiffIDs, what skopeo pushes strata pulls to the same tree, strata to
 * strata across two stores, a second push uploads no layer, an index resolves to linux/amd64.
 * Then htpasswd authentication, and blobs spoiled on the way: a clear error, a non-zero exit,
 * nothing half-written in the store.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './lib/mounts.js';
import { startRegistry, startSpoilingProxy, startTokenRegistry } from './lib/registry.js';
import { must, run, strata, ROOT, type Result } from './lib/run.js';

interface Store {
  root: string;
  s: (...args: string[]) => Result;
}

function store(base: string, name: string, env: NodeJS.ProcessEnv): Store {
  const root = join(base, name);
  return { root, s: (...args) => strata(['--root', root, ...args], { env }) };
}

function ok(t: Test, r: Result, what: string): string {
  t.equal(r.code, 0, `${what} exits 0 (${r.stderr.trim().slice(-600)})`);
  return r.stdout;
}

function diffIds(st: Store, image: string): string[] {
  return (JSON.parse(st.s('inspect', image).stdout) as { Config: { rootfs: { diff_ids: string[] } } }).Config.rootfs.diff_ids;
}

/** The merged tree of an image, as `tar -tv` lines of its export (sorted). */
function tree(st: Store, image: string, out: string): string[] {
  const r = st.s('export', image, '-o', out);
  if (r.code !== 0) throw new Error(r.stderr);
  return must(`tar -tvf ${out}`).trim().split('\n').sort();
}

/** A store with a two-layer image app:1 (the busybox base, then a COPY). */
function withImage(base: string, env: NodeJS.ProcessEnv): Store {
  const a = store(base, 'a', env);
  must(`bash ${ROOT}native-deps/busybox-rootfs.sh ${base}/busybox.tar`);
  if (a.s('import', `${base}/busybox.tar`, 'busybox:latest').code !== 0) throw new Error('import failed');
  const ctx = join(base, 'ctx');
  mkdirSync(join(ctx, 'etc/app'), { recursive: true });
  writeFileSync(join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY etc/ /etc/\nENV APP=1\n');
  writeFileSync(join(ctx, 'etc/app/app.conf'), 'setting=1\n'.repeat(5000));
  const b = a.s('build', '-t', 'app:1', ctx);
  if (b.code !== 0) throw new Error(b.stderr);
  return a;
}

const env = (base: string): NodeJS.ProcessEnv => ({ ...process.env, STRATA_AUTH_FILE: join(base, 'auth.json') });

/** A manifest as the registry serves it (Docker v2), straight over HTTP. */
async function manifestOf(reg: string, repo: string, tag: string): Promise<{ layers: Array<{ digest: string; mediaType: string }> }> {
  const res = await fetch(`http://${reg}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
  return (await res.json()) as { layers: Array<{ digest: string; mediaType: string }> };
}

/** `strata login REG -u USER --password-stdin`, the password on stdin. */
function login(e: NodeJS.ProcessEnv, reg: string, user: string, password: string): Result {
  return run(process.execPath, [join(ROOT, 'dist/bundle/strata.cjs'), 'login', reg, '-u', user, '--password-stdin'], { input: password + '\n', env: e });
}

t.test('push and pull: skopeo reads what strata pushes, strata pulls what skopeo pushes, store to store', async (t) => {
  const base = tempDir(t);
  const e = env(base);
  const reg = await startRegistry(t, base);
  const a = withImage(base, e);
  const ids = diffIds(a, 'app:1');
  t.equal(ids.length, 2);

  const first = a.s('push', 'app:1', `${reg}/team/app:1`);
  ok(t, first, 'push');
  t.equal(first.stderr.match(/: pushed$/gm)?.length, 2, 'both layers uploaded');
  t.match(first.stderr, /^1: digest: sha256:[0-9a-f]{64} size: \d+$/m);

  const again = a.s('push', 'app:1', `${reg}/team/app:1`);
  ok(t, again, 'second push');
  t.notMatch(again.stderr, /pushing|pushed/, 'a second push uploads no layer');
  t.equal(again.stderr.match(/layer already exists/g)?.length, 2);
  const other = a.s('push', 'app:1', `${reg}/elsewhere/app:2`);
  ok(t, other, 'push to another repository');
  t.equal(other.stderr.match(/mounted from team\/app/g)?.length, 2, 'layers are mounted across repositories, not uploaded');

  // skopeo, the independent reader: the same DiffIDs in the config it copies.
  ok(t, run('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${reg}/team/app:1`, `oci:${base}/sk-oci:app`]), 'skopeo copy from the registry');
  const index = JSON.parse(readFileSync(`${base}/sk-oci/index.json`, 'utf8')) as { manifests: Array<{ digest: string }> };
  const blob = (d: string) => JSON.parse(readFileSync(`${base}/sk-oci/blobs/sha256/${d.slice(7)}`, 'utf8')) as Record<string, unknown>;
  const manifest = blob(index.manifests[0]!.digest) as { config: { digest: string } };
  t.same((blob(manifest.config.digest) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids, ids, 'skopeo reads the same DiffIDs');

  // strata to strata, across two stores: the same image id (the config's bytes) and tree.
  const c = store(base, 'c', e);
  const pulled = c.s('pull', `${reg}/team/app:1`);
  ok(t, pulled, 'pull');
  t.equal(pulled.stdout.trim(), (JSON.parse(a.s('inspect', 'app:1').stdout) as { Id: string }).Id, 'the same image id');
  t.same(tree(c, `${reg}/team/app:1`, `${base}/c.tar`), tree(a, 'app:1', `${base}/a.tar`), 'the same tree');
  const repull = c.s('pull', `${reg}/team/app:1`, 'mine:1');
  ok(t, repull, 'pull again under another name');
  t.equal(repull.stderr.match(/Already exists/g)?.length, 2, 'layers present by ChainID are not downloaded');

  // skopeo pushes an archive strata saved; strata pulls it into a fresh store.
  ok(t, a.s('save', 'app:1', '-o', `${base}/app.tar`), 'save');
  ok(t, run('skopeo', ['copy', '-q', '--dest-tls-verify=false', `docker-archive:${base}/app.tar`, `docker://${reg}/skopeo/app:1`]), 'skopeo copy to the registry');
  const d = store(base, 'd', e);
  ok(t, d.s('pull', `${reg}/skopeo/app:1`, 'fromskopeo:1'), 'pull what skopeo pushed');
  t.same(diffIds(d, 'fromskopeo:1'), ids, 'the same DiffIDs');
  t.same(tree(d, 'fromskopeo:1', `${base}/d.tar`), tree(a, 'app:1', `${base}/a2.tar`), 'the same tree');

  // An index: an amd64 entry (the image) and an arm64 one, as multi-platform images come.
  const mf = await fetch(`http://${reg}/v2/team/app/manifests/1`, { method: 'HEAD', headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
  const digest = mf.headers.get('docker-content-digest')!;
  const size = Number(mf.headers.get('content-length'));
  const list = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest, size, platform: { os: 'linux', architecture: 'arm64' } },
      { mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest, size, platform: { os: 'linux', architecture: 'amd64' } },
    ],
  };
  const put = await fetch(`http://${reg}/v2/team/app/manifests/multi`, { method: 'PUT', headers: { 'content-type': list.mediaType }, body: JSON.stringify(list) });
  t.equal(put.status, 201, 'the index is stored');
  const m = store(base, 'm', e);
  ok(t, m.s('pull', `${reg}/team/app:multi`), 'pull through an index');
  t.same(diffIds(m, `${reg}/team/app:multi`), ids, 'linux/amd64 is picked');
  const none = m.s('pull', '--platform', 'linux/s390x', `${reg}/team/app:multi`);
  t.equal(none.code, 1);
  t.match(none.stderr, /no image for linux\/s390x \(offered: linux\/arm64, linux\/amd64\)/);
  ok(t, m.s('pull', `${reg}/team/app@${digest}`, 'bydigest:1'), 'pull by digest');

  const bad = m.s('pull', 'app:1');
  t.equal(bad.code, 1);
  t.match(bad.stderr, /name the registry/, 'a reference without a registry is refused');
  ok(t, m.s('check'), 'the store is consistent');
});

t.test('authentication: 401 without credentials, a wrong password, login, logout', async (t) => {
  const base = tempDir(t);
  const e = env(base);
  const reg = await startRegistry(t, base, { alice: 's3cret' });
  const a = withImage(base, e);
  const anon = a.s('push', 'app:1', `${reg}/x/app:1`);
  t.equal(anon.code, 1);
  t.match(anon.stderr, new RegExp(`requires a login: strata login ${reg}`), 'a 401 says to log in');
  const wrong = login(e, reg, 'alice', 'nope');
  t.equal(wrong.code, 1);
  t.match(wrong.stderr, /refused the credentials/);
  t.notOk(existsSync(join(base, 'auth.json')), 'nothing saved');
  const good = login(e, reg, 'alice', 's3cret');
  ok(t, good, 'login');
  t.equal(statSync(join(base, 'auth.json')).mode & 0o777, 0o600, 'the credentials file is only its owner\'s');
  ok(t, a.s('push', 'app:1', `${reg}/x/app:1`), 'push with the saved credentials');
  const b = store(base, 'b', e);
  ok(t, b.s('pull', `${reg}/x/app:1`), 'pull with them');
  const missing = b.s('pull', `${reg}/x/app:nope`);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /no manifest nope \(unknown tag or digest\)/, 'a missing tag');
  ok(t, b.s('logout', reg), 'logout');
  t.equal(b.s('pull', `${reg}/x/app:1`).code, 1, 'and the credentials are gone');
});

t.test('blobs spoiled on the way: a wrong digest, a connection cut halfway; nothing half-written', async (t) => {
  const base = tempDir(t);
  const e = env(base);
  const reg = await startRegistry(t, base);
  const a = withImage(base, e);
  ok(t, a.s('push', '--compress', 'none', 'app:1', `${reg}/team/app:1`), 'push uncompressed');
  const mf = await manifestOf(reg, 'team/app', '1');
  t.match(mf.layers[0]!.mediaType, /rootfs\.diff\.tar$/, '--compress none sends the tar as it is');
  const target = mf.layers[1]!.digest;
  for (const how of ['corrupt', 'cut'] as const) {
    const proxy = await startSpoilingProxy(t, reg, target, how);
    const b = store(base, `b-${how}`, e);
    const r = b.s('pull', `${proxy}/team/app:1`);
    t.equal(r.code, 1, `${how}: pull fails`);
    t.match(r.stderr, how === 'corrupt' ? /its content has digest sha256:[0-9a-f]+, not sha256:/ : /the connection closed after \d+ of \d+ bytes/, `${how}: says why (${r.stderr.trim()})`);
    t.equal(b.s('images', '-q').stdout, '', `${how}: no image`);
    t.same(b.s('layers').stdout.trim().split('\n').slice(1), [], `${how}: no layer left`);
    t.same(readdirSync(join(b.root, 'tmp')), [], `${how}: nothing staged`);
    ok(t, b.s('check'), `${how}: the store is consistent`);
    // The same store pulls fine from the registry itself afterwards.
    ok(t, b.s('pull', `${reg}/team/app:1`), `${how}: a clean pull afterwards`);
  }
});

t.test('a pull killed halfway: no image, nothing half-applied, the store consistent, a pull afterwards works', async (t) => {
  const base = tempDir(t);
  const e = env(base);
  const reg = await startRegistry(t, base);
  const a = withImage(base, e);
  ok(t, a.s('push', '--compress', 'none', 'app:1', `${reg}/team/app:1`), 'push');
  const mf = await manifestOf(reg, 'team/app', '1');
  const proxy = await startSpoilingProxy(t, reg, mf.layers[1]!.digest, 'stall');
  const b = store(base, 'b', e);
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [join(ROOT, 'dist/bundle/strata.cjs'), '--root', b.root, 'pull', `${proxy}/team/app:1`], { env: e, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  for (let i = 0; i < 100 && !/Pull complete/.test(err); i++) await new Promise((r) => setTimeout(r, 100));
  t.match(err, /Pull complete/, 'the first layer is in, the second stalls');
  await new Promise((r) => setTimeout(r, 300));
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  t.equal(b.s('images', '-q').stdout, '', 'no image');
  const check = b.s('check');
  t.equal(check.code, 0, `strata check passes (${check.stdout}${check.stderr})`);
  t.same(readdirSync(join(b.root, 'tmp')), [], 'the killed pull\'s staging is gone at the next open');
  ok(t, b.s('pull', `${reg}/team/app:1`), 'the pull, again');
  t.same(diffIds(b, `${reg}/team/app:1`), diffIds(a, 'app:1'));
});

t.test('Bearer tokens: the challenge, the token service, a login it accepts', async (t) => {
  const base = tempDir(t);
  const e = env(base);
  const reg = await startTokenRegistry(t, base, { bob: 'hunter2' });
  const a = withImage(base, e);
  const anon = a.s('push', 'app:1', `${reg}/team/app:1`);
  t.equal(anon.code, 1);
  t.match(anon.stderr, new RegExp(`requires a login: strata login ${reg}`), 'the token service refuses an anonymous push');
  t.equal(login(e, reg, 'bob', 'wrong').code, 1, 'a wrong password is refused');
  ok(t, login(e, reg, 'bob', 'hunter2'), 'login through the token service');
  ok(t, a.s('push', 'app:1', `${reg}/team/app:1`), 'push with a token');
  const other = a.s('push', 'app:1', `${reg}/other/app:1`);
  ok(t, other, 'push to another repository');
  t.equal(other.stderr.match(/mounted from team\/app/g)?.length, 2, 'its layers mounted, with a token for both repositories');
  const b = store(base, 'b', e);
  ok(t, b.s('pull', `${reg}/team/app:1`), 'pull with a token');
  t.same(diffIds(b, `${reg}/team/app:1`), diffIds(a, 'app:1'));
});

t.test('a push killed halfway: the next push uploads only what is missing', async (t) => {
  const base = tempDir(t);
  const e = env(base);
  const reg = await startRegistry(t, base);
  const a = withImage(base, e);
  const proxy = await startSpoilingProxy(t, reg, '', 'stall-second-upload');
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [join(ROOT, 'dist/bundle/strata.cjs'), '--root', a.root, 'push', 'app:1', `${proxy}/team/app:1`], { env: e, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  for (let i = 0; i < 100 && (err.match(/: pushing$/gm)?.length ?? 0) < 2; i++) await new Promise((r) => setTimeout(r, 100));
  t.equal(err.match(/: pushed$/gm)?.length, 1, 'one layer up, the second stalls');
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  ok(t, a.s('check'), 'the store is consistent');
  const again = a.s('push', 'app:1', `${reg}/team/app:1`);
  ok(t, again, 'push again');
  t.equal(again.stderr.match(/layer already exists/g)?.length, 1, 'the layer that made it is not sent again');
  t.equal(again.stderr.match(/: pushed$/gm)?.length, 1, 'the other is');
  const b = store(base, 'b', e);
  ok(t, b.s('pull', `${reg}/team/app:1`), 'and the image pulls');
  t.same(diffIds(b, `${reg}/team/app:1`), diffIds(a, 'app:1'));
});
