/**
 * strata as dockerd's storage driver: `strata driver serve` speaks the GraphDriver plugin
 * protocol on a unix socket, `strata driver install` writes the spec file dockerd 20.10 finds it
 * by. The protocol is checked call by call (bad input included); then a real dockerd runs on it
 * the same sequence as a dockerd on overlay2 (import, build, run, diff, commit, save, load, rmi)
 * and both must give the same trees, changes and layer counts; then the server is killed while
 * dockerd holds mounts, and restarted.
 */
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { archiveLayers, DOCKER, startDockerd, type Dockerd } from './lib/docker.js';
import { tempDir, type Teardown } from './lib/mounts.js';
import { CLI, must, run, strata, ROOT } from './lib/run.js';
import { tarBytes } from './lib/tars.js';

interface Server {
  socket: string;
  root: string;
  /** SIGTERM (or `signal`), and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  stderr(): string;
}

/** `strata driver serve` on a socket under `base`, its store in `base`/store. */
async function startServer(t: Teardown, base: string): Promise<Server> {
  const socket = join(base, 'plugin.sock');
  const root = join(base, 'store');
  const child: ChildProcess = spawn(process.execPath, [CLI, '--root', root, 'driver', 'serve', '--socket', socket], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  };
  t.teardown(() => stop());
  for (let i = 0; i < 100 && !err.includes('serving GraphDriver'); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!err.includes('serving GraphDriver')) throw new Error(`the plugin server did not start: ${err}`);
  return { socket, root, stop, stderr: () => err };
}

interface Reply {
  status: number;
  body: Buffer;
  json: Record<string, unknown>;
}

/** POST /`method` to the plugin, a JSON body (or raw bytes), as dockerd's plugin client does. */
function call(socket: string, method: string, body: unknown = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: `/${method}`, method: 'POST', headers: { Accept: 'application/vnd.docker.plugins.v1+json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(buf.toString()) as Record<string, unknown>;
        } catch {
          // A raw reply (Diff).
        }
        resolve({ status: res.statusCode ?? 0, body: buf, json });
      });
    });
    req.on('error', reject);
    req.end(Buffer.isBuffer(body) ? body : JSON.stringify(body));
  });
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(dir + '/'));
}

t.test('the GraphDriver protocol, call by call, bad input included', async (t) => {
  const base = tempDir(t, 'strata-test-');
  const srv = await startServer(t, base);
  const c = (method: string, body?: unknown) => call(srv.socket, method, body);
  must(`bash ${ROOT}native-deps/busybox-rootfs.sh ${base}/busybox.tar`);

  t.same((await c('Plugin.Activate', null)).json, { Implements: ['GraphDriver'] });
  t.equal((await c('GraphDriver.Init', { Home: join(base, 'home'), Opts: [], UIDMaps: null, GIDMaps: null })).status, 200);
  t.same((await c('GraphDriver.Capabilities', null)).json, { Capabilities: { ReproducesExactDiffs: true } });

  const A = 'a'.repeat(64);
  const B = 'b'.repeat(64);
  t.equal((await c('GraphDriver.Create', { ID: A, Parent: '', MountLabel: '', StorageOpt: null })).status, 200);
  t.same((await c('GraphDriver.Exists', { ID: A })).json, { Exists: true });
  t.same((await c('GraphDriver.Exists', { ID: B })).json, { Exists: false });
  const applied = await c(`GraphDriver.ApplyDiff?id=${A}&parent=`, readFileSync(`${base}/busybox.tar`));
  t.equal(applied.status, 200, applied.body.toString());
  t.ok((applied.json['Size'] as number) > 0, 'ApplyDiff answers the size');

  // A writable layer over it, as dockerd makes a container's, and Get/Put counted.
  t.equal((await c('GraphDriver.CreateReadWrite', { ID: `${B}-init`, Parent: A })).status, 200);
  t.equal((await c('GraphDriver.CreateReadWrite', { ID: B, Parent: `${B}-init` })).status, 200);
  const gets = await Promise.all(Array.from({ length: 8 }, () => c('GraphDriver.Get', { ID: B, MountLabel: '' })));
  const dir = gets[0]!.json['Dir'] as string;
  t.ok(gets.every((g) => g.status === 200 && g.json['Dir'] === dir), 'parallel Gets share one mount');
  t.ok(existsSync(join(dir, 'bin/busybox')), 'Get shows the whole chain');
  must(`rm ${dir}/etc/issue && echo new > ${dir}/new.txt && echo more >> ${dir}/etc/passwd`);
  const changes = (await c('GraphDriver.Changes', { ID: B, Parent: `${B}-init` })).json['Changes'] as Array<{ Path: string; Kind: number }>;
  t.same(changes.sort((x, y) => (x.Path < y.Path ? -1 : 1)), [
    { Path: '/etc', Kind: 0 },
    { Path: '/etc/issue', Kind: 2 },
    { Path: '/etc/passwd', Kind: 0 },
    { Path: '/new.txt', Kind: 1 },
  ], 'Changes: 0 modified, 1 added, 2 deleted');
  const diff = await c('GraphDriver.Diff', { ID: B, Parent: `${B}-init` });
  t.equal(diff.status, 200);
  writeFileSync(join(base, 'b.tar'), diff.body);
  t.match(must(`tar -tvf ${base}/b.tar`), /etc\/\.wh\.issue/, 'Diff is a tar with the whiteout');
  t.equal((await c('GraphDriver.DiffSize', { ID: B, Parent: `${B}-init` })).json['Size'], diff.body.length);
  const removeMounted = await c('GraphDriver.Remove', { ID: B });
  t.equal(removeMounted.status, 500);
  t.match(removeMounted.json['Err'], /mounted/, 'a mounted layer is not removed');

  const status = (await c('GraphDriver.Status', null)).json['Status'] as Array<[string, string]>;
  const st = Object.fromEntries(status);
  t.equal(st['Layers'], '3');
  t.equal(st['Active Mounts'], '1');
  t.match(st['Dentry Cache Hit Rate'], /% of \d+ lookups/);
  t.ok(Number(st['Copy-ups']) >= 1, 'the append to /etc/passwd copied it up');
  t.match(((await c('GraphDriver.GetMetadata', { ID: B })).json['Metadata'] as Record<string, string>)['UpperDir'], /\/diff$/);

  const puts = await Promise.all(gets.map(() => c('GraphDriver.Put', { ID: B })));
  t.ok(puts.every((p) => p.status === 200), 'as many Puts as Gets');
  t.same(mountsUnder(srv.root), [], 'the last Put unmounts');
  const extraPut = await c('GraphDriver.Put', { ID: B });
  t.equal(extraPut.status, 500);
  t.match(extraPut.json['Err'], /not mounted/, 'a Put too many is refused');
  t.match((await c('GraphDriver.Put', { ID: 'f'.repeat(64) })).json['Err'], /no layer|not mounted/, 'a Put of an unknown id is refused');

  // A broken tar leaves the layer empty and the store consistent.
  t.equal((await c('GraphDriver.Create', { ID: 'c'.repeat(64), Parent: A })).status, 200);
  const broken = await c(`GraphDriver.ApplyDiff?id=${'c'.repeat(64)}&parent=${A}`, readFileSync(`${base}/busybox.tar`).subarray(0, 5000));
  t.equal(broken.status, 500);
  t.match(broken.json['Err'], /tar|unexpected end|truncated/i, `a truncated tar is refused (${broken.json['Err']})`);
  const escape = await c(`GraphDriver.ApplyDiff?id=${'c'.repeat(64)}&parent=${A}`, await tarBytes([{ name: '../escaped', body: 'x' }]));
  t.equal(escape.status, 500);
  t.match(escape.json['Err'], /'\.\.'/, 'a tar with ../ is refused');
  t.notOk(existsSync(join(srv.root, 'escaped')) || existsSync(join(srv.root, 'layers/escaped')), 'and nothing is written outside');
  t.equal((await c('GraphDriver.DiffSize', { ID: 'c'.repeat(64), Parent: A })).json['Size'], 1024, 'and the layer is still empty');
  t.match((await c('GraphDriver.Nope', {})).json['Err'], /not a GraphDriver call/);
  t.match((await c('GraphDriver.Get', {})).json['Err'], /names no layer/);
  t.match((await c('GraphDriver.Get', 'not json{' as unknown)).json['Err'], /not a JSON object|not JSON/);

  // dockerd's concurrency: layers applied and read back in parallel. A read-only layer's Diff is
  // the very tar it was given (ReproducesExactDiffs).
  const layerTars = await Promise.all([1, 2, 3, 4].map((i) => tarBytes([{ name: `dir${i}/`, type: 'directory' }, { name: `dir${i}/f`, body: `${i}`.repeat(1000 * i) }])));
  const ids = [1, 2, 3, 4].map((i) => `${i}`.repeat(64));
  for (const id of ids) t.equal((await c('GraphDriver.Create', { ID: id, Parent: A })).status, 200);
  const appliedAll = await Promise.all(ids.map((id, i) => c(`GraphDriver.ApplyDiff?id=${id}&parent=${A}`, layerTars[i])));
  t.ok(appliedAll.every((r) => r.status === 200), 'parallel ApplyDiffs');
  const diffs = await Promise.all(ids.map((id) => c('GraphDriver.Diff', { ID: id, Parent: A })));
  t.ok(diffs.every((d, i) => d.body.equals(layerTars[i]!)), 'parallel Diffs give back each layer\'s exact tar');
  for (const id of ids) t.equal((await c('GraphDriver.Remove', { ID: id })).status, 200);

  const second = run(process.execPath, [CLI, '--root', join(base, 'other'), 'driver', 'serve', '--socket', srv.socket], { timeout: 20_000 });
  t.equal(second.code, 1);
  t.match(second.stderr, /served by another process/, 'a second server on a live socket is refused');

  for (const id of ['c'.repeat(64), B, `${B}-init`, A]) t.equal((await c('GraphDriver.Remove', { ID: id })).status, 200, `Remove ${id.slice(0, 8)}`);
  t.equal((await c('GraphDriver.Remove', { ID: A })).status, 200, 'removing a layer already gone succeeds');
  await srv.stop();
  t.notOk(existsSync(srv.socket), 'the socket goes with the server');
  const check = strata(['--root', srv.root, 'check']);
  t.equal(check.code, 0, `strata check passes (${check.stdout}${check.stderr})`);
});

const DOCKERFILE = [
  'FROM busybox',
  'ENV GREETING=hello MODE=test',
  'WORKDIR /srv/app',
  'COPY data/ ./data/',
  'RUN rm /etc/issue && echo "$GREETING from $MODE" > greeting && ln -s greeting link',
  'COPY run.sh /usr/local/bin/',
  'CMD ["run.sh"]',
  '',
].join('\n');

/** The same sequence on a dockerd: what each step showed, for comparing two engines. */
async function sequence(t: Test, d: Dockerd, base: string, tag: string): Promise<{ run: string; diff: string[]; layers: string[][]; committed: string; loaded: string }> {
  const ok = (r: { code: number; stderr: string }, what: string) => t.equal(r.code, 0, `${tag}: ${what} (${r.stderr.slice(-400)} ${d.log().slice(-400)})`);
  ok(d.docker('import', `${base}/busybox.tar`, 'busybox:latest'), 'docker import');
  const ctx = join(base, 'ctx');
  ok(d.docker('build', '--network', 'none', '-t', 'app:1', ctx), 'docker build');
  const r = d.docker('run', '--rm', '--network', 'none', 'app:1');
  ok(r, 'docker run --rm');
  const c = d.docker('run', '--name', 'c1', '--network', 'none', 'app:1', 'sh', '-c', 'echo new > /srv/app/new.txt && rm /srv/app/data/one.txt && echo more >> /etc/passwd');
  ok(c, 'docker run');
  const diff = d.docker('diff', 'c1');
  ok(diff, 'docker diff');
  ok(d.docker('commit', 'c1', 'app:committed'), 'docker commit');
  const committed = d.docker('run', '--rm', '--network', 'none', 'app:committed', 'cat', '/srv/app/new.txt', '/srv/app/greeting');
  ok(committed, 'run the committed image');
  ok(d.docker('save', 'app:committed', '-o', `${base}/saved.tar`), 'docker save');
  ok(d.docker('rm', 'c1'), 'docker rm');
  ok(d.docker('rmi', 'app:committed'), 'docker rmi');
  ok(d.docker('load', '-i', `${base}/saved.tar`), 'docker load');
  const loaded = d.docker('run', '--rm', '--network', 'none', 'app:committed', 'sh', '-c', 'cat /srv/app/new.txt; ls /srv/app/data; ls /etc/issue 2>&1 || true');
  ok(loaded, 'run the loaded image');
  ok(d.docker('rmi', 'app:committed', 'app:1', 'busybox:latest'), 'docker rmi of everything');
  return {
    run: r.stdout,
    diff: diff.stdout.trim().split('\n').sort(),
    layers: await archiveLayers(readFileSync(`${base}/saved.tar`)),
    committed: committed.stdout,
    loaded: loaded.stdout,
  };
}

function dockerContext(base: string): void {
  must(`bash ${ROOT}native-deps/busybox-rootfs.sh ${base}/busybox.tar`);
  mkdirSync(join(base, 'ctx/data'), { recursive: true });
  writeFileSync(join(base, 'ctx/Dockerfile'), DOCKERFILE);
  writeFileSync(join(base, 'ctx/data/one.txt'), 'one\n');
  writeFileSync(join(base, 'ctx/data/two.txt'), 'two\n');
  writeFileSync(join(base, 'ctx/run.sh'), '#!/bin/sh\ncat /srv/app/greeting /srv/app/data/*\n', { mode: 0o755 });
}

/** `strata driver install` under a name of this test's own, uninstalled in teardown. */
function installPlugin(t: Teardown, socket: string): string {
  const name = `strata-test-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
  t.teardown(() => void strata(['driver', 'uninstall', '--name', name]));
  const r = strata(['driver', 'install', '--name', name, '--socket', socket]);
  if (r.code !== 0) throw new Error(r.stderr);
  return name;
}

if (!existsSync(DOCKER) || run('which', ['dockerd']).code !== 0) {
  t.fail('docker.io is not installed (native-deps/apt.sh installs it)');
} else {
  t.test('dockerd on strata does what dockerd on overlay2 does', async (t) => {
    const base = tempDir(t, 'strata-test-');
    const srv = await startServer(t, join(base, 'plugin'));
    const name = installPlugin(t, srv.socket);
    t.equal(readFileSync(`/etc/docker/plugins/${name}.spec`, 'utf8'), `unix://${srv.socket}\n`, 'install writes the spec file');

    const sBase = join(base, 'on-strata');
    const oBase = join(base, 'on-overlay2');
    for (const b of [sBase, oBase]) {
      mkdirSync(b);
      dockerContext(b);
    }
    const onStrata = await startDockerd(t, sBase, ['--experimental', '--storage-driver', name]);
    const info = onStrata.docker('info', '--format', '{{.Driver}} {{json .DriverStatus}}').stdout;
    t.match(info, new RegExp(`^${name} .*Dentry Cache Hit Rate`), `docker info shows strata's status (${info})`);
    const onOverlay = await startDockerd(t, oBase, ['--storage-driver', 'overlay2']);

    const s = await sequence(t, onStrata, sBase, 'strata');
    const o = await sequence(t, onOverlay, oBase, 'overlay2');
    t.equal(s.run, 'hello from test\none\ntwo\n');
    t.equal(s.run, o.run, 'docker run: the same output');
    t.same(s.diff, o.diff, 'docker diff: the same changes');
    t.same(s.diff, ['A /srv/app/new.txt', 'C /etc', 'C /etc/passwd', 'C /srv', 'C /srv/app', 'C /srv/app/data', 'D /srv/app/data/one.txt']);
    t.equal(s.layers.length, o.layers.length, 'docker save: as many layers');
    for (let i = 0; i < Math.min(s.layers.length, o.layers.length); i++) t.same(s.layers[i], o.layers[i], `docker save: layer ${i} has the same entries`);
    t.equal(s.committed, 'new\nhello from test\n');
    t.equal(s.loaded, o.loaded, 'the loaded image runs the same');
    t.match(s.loaded, /^new\ntwo\.txt\n.*No such file/s);

    await onStrata.stop();
    t.same(mountsUnder(srv.root), [], 'no strata mount is left once dockerd stops');
    t.same(mountsUnder(sBase).filter((m) => !m.endsWith('/data') && m.includes(name)), [], 'nor one of dockerd on strata');
  });

  t.test('the server killed while dockerd holds mounts: restarted, dockerd carries on', async (t) => {
    const base = tempDir(t, 'strata-test-');
    let srv = await startServer(t, join(base, 'plugin'));
    const name = installPlugin(t, srv.socket);
    dockerContext(base);
    let d = await startDockerd(t, base, ['--experimental', '--storage-driver', name]);
    t.equal(d.docker('import', `${base}/busybox.tar`, 'busybox:latest').code, 0);
    const started = d.docker('run', '-d', '--name', 'sleeper', '--network', 'none', 'busybox', 'sh', '-c', 'echo hi > /tmp/hi && sleep 120');
    t.equal(started.code, 0, started.stderr);
    t.ok(mountsUnder(srv.root).length > 0, 'the container rootfs is a strata mount');

    await srv.stop('SIGKILL');
    // A call while the server is down: dockerd retries it until the server is back.
    const pending = new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(DOCKER, ['-H', `unix://${base}/docker.sock`, 'run', '--rm', '--network', 'none', 'busybox', 'echo', 'while away'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (c: Buffer) => (out += c.toString()));
      p.stderr.on('data', (c: Buffer) => (err += c.toString()));
      p.on('exit', (code) => resolve({ code: code ?? 1, stdout: out, stderr: err }));
    });
    await new Promise((r) => setTimeout(r, 2000));
    srv = await startServer(t, join(base, 'plugin'));
    const r = await pending;
    t.equal(r.code, 0, `a call made while the server was down succeeds once it is back (${r.stderr})`);
    t.equal(r.stdout, 'while away\n');

    const diff = d.docker('diff', 'sleeper');
    t.equal(diff.code, 0, diff.stderr);
    t.match(diff.stdout, /A \/tmp\/hi/, 'the restarted server answers for the running container');
    t.equal(d.docker('exec', 'sleeper', 'cat', '/tmp/hi').stdout, 'hi\n', "the container's mount lived on");
    // dockerd restarted with containers present: it kills the running one on the way down, and
    // the next dockerd's Init releases whatever Gets the last one left.
    t.equal(d.docker('create', '--name', 'kept', '--network', 'none', 'busybox', 'sh', '-c', 'echo kept >> /kept; cat /kept').code, 0);
    t.equal(d.docker('start', '-a', 'kept').stdout, 'kept\n');
    await d.stop();
    t.same(mountsUnder(srv.root), [], 'no mount once dockerd is down');
    d = await startDockerd(t, base, ['--experimental', '--storage-driver', name]);
    t.equal(d.docker('start', '-a', 'kept').stdout, 'kept\nkept\n', 'a container keeps its changes across a dockerd restart');
    t.equal(d.docker('start', 'sleeper').code, 0, 'and the one that was running starts again');
    const rm = d.docker('rm', '-f', 'sleeper', 'kept');
    t.equal(rm.code, 0, rm.stderr);
    t.equal(d.docker('rmi', 'busybox:latest').code, 0);
    await d.stop();
    t.same(mountsUnder(srv.root), [], 'no mount left');
    await srv.stop();
    const check = strata(['--root', srv.root, 'check']);
    t.equal(check.code, 0, `strata check passes (${check.stdout}${check.stderr})`);
  });
}
