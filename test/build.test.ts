/**
 * strata build, end to end on a busybox base: every instruction, layers and whiteouts in the
 * store, the config and history, multi-stage builds with --target, the build cache (unchanged
 * rebuild, one-file change, revert, --no-cache, a changed build-arg), and bad input that must fail
 * with a line number and leave no image, mount, writable layer or container behind.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type Teardown } from './lib/mounts.js';
import { freePort } from './lib/ports.js';
import { CLI, must, run, strata, ROOT, type Result } from './lib/run.js';

interface Store {
  root: string;
  base: string;
  s: (...args: string[]) => Result;
}

/** A store with the busybox base imported as busybox:latest. */
function newStore(t: Teardown): Store {
  const base = tempDir(t);
  const root = join(base, 'store');
  const s = (...args: string[]) => strata(['--root', root, ...args]);
  must(`bash ${ROOT}native-deps/busybox-rootfs.sh ${base}/busybox.tar`);
  const r = s('import', `${base}/busybox.tar`, 'busybox:latest');
  if (r.code !== 0) throw new Error(r.stderr);
  return { root, base, s };
}

function context(base: string, files: Record<string, string>): string {
  const dir = join(base, 'ctx');
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}

interface Inspect {
  Layers: string[];
  Config: {
    config: Record<string, unknown>;
    rootfs: { diff_ids: string[] };
    history: Array<{ created_by: string; empty_layer?: boolean }>;
  };
}

function inspect(st: Store, ref: string): Inspect {
  const r = st.s('inspect', ref);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as Inspect;
}

/** The entries of a stored layer's directory: "type mode uid:gid path". */
function layerTree(st: Store, id: string): string[] {
  return must(`cd ${st.root}/layers/${id}/diff && find . -mindepth 1 -printf '%y %m %U:%G %p\\n' | sort`).trim().split('\n').filter((l) => l !== '');
}

/** Nothing a build leaves around: writable layers, mounts, staging dirs, runc containers. */
function leftovers(t: Test, st: Store): void {
  const rw = st.s('layers').stdout.split('\n').filter((l) => / rw /.test(l));
  t.same(rw, [], 'no writable layer left');
  t.same(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(st.root)), [], 'no mount left');
  t.same(existsSync(join(st.root, 'tmp')) ? readdirSync(join(st.root, 'tmp')) : [], [], 'nothing staged');
  t.notMatch(run('runc', ['list', '-q']).stdout, /strata-build-/, 'no build container left');
}

function build(st: Store, ctx: string, ...args: string[]): Result {
  return st.s('build', ...args, ctx);
}

const EVERYTHING = `# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM \${BASE} AS builder
ARG FLAVOR=plain
RUN mkdir -p /out && echo "built $FLAVOR" > /out/artifact
FROM busybox AS never
RUN exit 99
FROM \${BASE}
ENV APP=/app \\
    GREETING="hello world"
LABEL org.example.name="$GREETING" version=1
WORKDIR $APP
COPY src/ ./src/
COPY --chown=user:users --chmod=0640 src/a.txt /etc/a.conf
COPY --from=builder /out/artifact /artifact
COPY <<EOF /etc/motd
welcome to $APP
EOF
RUN rm /etc/issue && rm -r /home/user && mkdir /home/user && echo fresh > /home/user/.profile
RUN <<EOF
set -e
test "$(cat /artifact)" = "built plain"
echo ran-heredoc > /heredoc
EOF
USER user
RUN id -u > /tmp/uid && id -G > /tmp/groups
USER root
EXPOSE 80 53/udp
VOLUME /data
HEALTHCHECK --interval=5s --retries=2 CMD true
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered > /onbuild
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /etc/motd"]
`;

t.test('every instruction: layers, whiteouts, config and history as docker build makes them', async (t) => {
  const st = newStore(t);
  const ctx = context(st.base, { Dockerfile: EVERYTHING, 'src/a.txt': 'A\n', 'src/sub/b.txt': 'B\n', 'secret.pem': 'no' });
  const r = build(st, ctx, '-t', 'everything:1');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /Step 1\/\d+ : FROM \$\{BASE\} AS builder/);
  t.notMatch(r.stdout, /exit 99/, 'the stage the target does not need is skipped');
  t.match(r.stdout, /Successfully built [0-9a-f]{12}\nSuccessfully tagged everything:1\n$/);
  const img = inspect(st, 'everything:1');
  const c = img.Config.config;
  t.same(c['Env'], ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'APP=/app', 'GREETING=hello world'], 'PATH added as the classic builder does');
  t.same(c['Labels'], { 'org.example.name': 'hello world', version: '1' });
  t.equal(c['WorkingDir'], '/app');
  t.equal(c['User'], 'root');
  t.same(c['ExposedPorts'], { '80/tcp': {}, '53/udp': {} });
  t.same(c['Volumes'], { '/data': {} });
  t.same(c['Healthcheck'], { Test: ['CMD-SHELL', 'true'], Interval: 5e9, Retries: 2 });
  t.equal(c['StopSignal'], 'SIGINT');
  t.same(c['Shell'], ['/bin/sh', '-ec']);
  t.same(c['OnBuild'], ['RUN echo triggered > /onbuild']);
  t.same(c['Entrypoint'], ['/bin/sh', '-c']);
  t.same(c['Cmd'], ['cat /etc/motd']);
  // busybox + WORKDIR (creates /app) + 4 COPY + 3 RUN
  t.equal(img.Config.rootfs.diff_ids.length, 9, 'one layer per filesystem-changing instruction');
  t.equal(img.Layers.length, 9);
  const h = img.Config.history;
  t.equal(h.filter((x) => x.empty_layer !== true).length, 9, 'history: one non-empty entry per layer');
  t.match(h.map((x) => x.created_by), [
    /import/, /#\(nop\)  ENV APP=\/app GREETING=hello world/, /#\(nop\)  LABEL/, /#\(nop\) WORKDIR \/app/,
    /#\(nop\) COPY dir:[0-9a-f]+ in \.\/src\//, /#\(nop\) COPY file:[0-9a-f]+ in \/etc\/a\.conf/, /#\(nop\) COPY file:/, /#\(nop\) COPY /,
    /^\/bin\/sh -c rm \/etc\/issue/, /^\/bin\/sh -c /, /#\(nop\)  USER user/, /^\/bin\/sh -c id -u/, /USER root/,
    /EXPOSE 53\/udp 80$/, /VOLUME \[\/data\]$/, /HEALTHCHECK &\{\["CMD-SHELL" "true"\] "5s" "0s" "0s" '\\x02'\}/, /STOPSIGNAL SIGINT/, /SHELL \[\/bin\/sh -ec\]/, /^\/bin\/sh -ec #\(nop\)  ONBUILD/, /ENTRYPOINT \["\/bin\/sh" "-c"\]/, /CMD \["cat \/etc\/motd"\]/,
  ]);

  const [, workdir, copySrc, copyConf, copyFrom, copyMotd, runRm, runHeredoc] = img.Layers;
  t.same(layerTree(st, workdir!), ['d 755 0:0 ./app']);
  t.same(layerTree(st, copySrc!), ['d 755 0:0 ./app', 'd 755 0:0 ./app/src', 'd 755 0:0 ./app/src/sub', 'f 644 0:0 ./app/src/a.txt', 'f 644 0:0 ./app/src/sub/b.txt'].sort());
  t.same(layerTree(st, copyConf!), ['d 755 0:0 ./etc', 'f 640 1000:100 ./etc/a.conf']);
  t.equal(readFileSync(join(st.root, 'layers', copyFrom!, 'diff/artifact'), 'utf8'), 'built plain\n', 'COPY --from a stage');
  t.equal(readFileSync(join(st.root, 'layers', copyMotd!, 'diff/etc/motd'), 'utf8'), 'welcome to $APP\n', 'a COPY heredoc is not expanded by the builder');
  const rmTree = layerTree(st, runRm!);
  t.ok(rmTree.includes('c 0 0:0 ./etc/issue'), 'a deleted lower file is a whiteout');
  t.notOk(rmTree.some((l) => /etc\/(hostname|hosts|resolv\.conf)$/.test(l)), 'the files bound into the container stay out');
  t.ok(rmTree.includes('d 755 0:0 ./home/user'), 'a recreated directory');
  t.equal(must(`getfattr --absolute-names --only-values -n trusted.overlay.opaque ${st.root}/layers/${runRm}/diff/home/user`), 'y', 'is opaque');
  t.notOk(rmTree.some((l) => / \.\/(proc|sys|dev)$/.test(l)), 'runtime mount points stay out of layers');
  t.same(layerTree(st, runHeredoc!), ['f 644 0:0 ./heredoc']);
  const last = img.Layers[img.Layers.length - 1]!;
  t.equal(readFileSync(join(st.root, 'layers', last, 'diff/tmp/uid'), 'utf8'), '1000\n', 'RUN as USER');
  t.equal(readFileSync(join(st.root, 'layers', last, 'diff/tmp/groups'), 'utf8'), '1000 100\n', 'with its supplementary groups');
  t.notOk(existsSync(join(st.root, 'layers', copySrc!, 'diff/secret.pem')));
  t.equal(st.s('check').code, 0, 'the store is consistent');
  leftovers(t, st);

  const child = context(join(st.base, 'child'), { Dockerfile: 'FROM everything:1\nRUN test -f /onbuild\n' });
  const rc = build(st, child, '-t', 'child:1');
  t.equal(rc.code, 0, rc.stderr);
  t.match(rc.stdout, /# Executing 1 build trigger/, 'ONBUILD triggers run in the child build');
  t.same(inspect(st, 'child:1').Config.config['OnBuild'], null, 'and are not inherited further');
});

t.test('the build cache: unchanged, one file changed, reverted, --no-cache, a changed build-arg', async (t) => {
  const st = newStore(t);
  const ctx = context(st.base, {
    Dockerfile: 'FROM busybox\nARG V=1\nRUN echo "v=$V" > /v\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\nCOPY b.txt /b.txt\n',
    'a.txt': 'one\n',
    'b.txt': 'bee\n',
  });
  const first = build(st, ctx, '-t', 'c:1');
  t.equal(first.code, 0, first.stderr);
  t.equal(first.stdout.match(/Running in/g)?.length, 2);
  const firstId = inspect(st, 'c:1').Config.rootfs.diff_ids;

  const again = build(st, ctx, '-t', 'c:2');
  t.equal(again.code, 0);
  t.notMatch(again.stdout, /Running in/, 'an unchanged rebuild runs no RUN');
  t.equal(again.stdout.match(/Using cache/g)?.length, 5, 'every step after FROM is cached');
  t.same(inspect(st, 'c:2').Config.rootfs.diff_ids, firstId, 'and gives the same layers');

  writeFileSync(join(ctx, 'a.txt'), 'two\n');
  const changed = build(st, ctx, '-t', 'c:3');
  t.equal(changed.code, 0);
  t.equal(changed.stdout.match(/Using cache/g)?.length, 2, 'the steps before the changed COPY are cached');
  t.equal(changed.stdout.match(/Running in/g)?.length, 1, 'the RUN after it runs again');
  const cid = inspect(st, 'c:3').Config.rootfs.diff_ids;
  t.same(cid.slice(0, 2), firstId.slice(0, 2));
  t.not(cid[2], firstId[2]);

  writeFileSync(join(ctx, 'a.txt'), 'one\n');
  const reverted = build(st, ctx, '-t', 'c:4');
  t.notMatch(reverted.stdout, /Running in/, 'reverting the file hits the cache again');
  t.same(inspect(st, 'c:4').Config.rootfs.diff_ids, firstId);

  // Host mtimes are not part of the key.
  must(`touch -d '2001-01-01' ${ctx}/a.txt`);
  t.notMatch(build(st, ctx, '-t', 'c:5').stdout, /Running in/, 'touching a file is not a change');

  const nocache = build(st, ctx, '--no-cache', '-t', 'c:6');
  t.equal(nocache.stdout.match(/Running in/g)?.length, 2, '--no-cache runs every RUN');
  t.notMatch(nocache.stdout, /Using cache/);

  const arg = build(st, ctx, '--build-arg', 'V=2', '-t', 'c:7');
  t.equal(arg.code, 0, arg.stderr);
  t.equal(arg.stdout.match(/Running in/g)?.length, 2, 'a changed build-arg reruns what follows its ARG');
  const l = inspect(st, 'c:7').Layers;
  t.equal(readFileSync(join(st.root, 'layers', l[1]!, 'diff/v'), 'utf8'), 'v=2\n');
  const unused = build(st, ctx, '--build-arg', 'NOPE=1', '-t', 'c:8');
  t.match(unused.stdout, /\[Warning\] One or more build-args \[NOPE\] were not consumed/);
  leftovers(t, st);
});

t.test('the build cache trusts an unchanged lstat only: content under the same mtime, .dockerignore, COPY --from', async (t) => {
  const st = newStore(t);
  const ctx = context(st.base, {
    Dockerfile: 'FROM busybox AS gen\nRUN echo gen > /gen\nFROM busybox\nCOPY dir/ /d/\nCOPY --from=gen /gen /gen\nRUN cat /d/* > /all\n',
    'dir/x.txt': 'aaa\n',
    'dir/skip.txt': 'skipped\n',
    '.dockerignore': 'dir/skip.txt\n',
  });
  const first = build(st, ctx, '-t', 'l:1');
  t.equal(first.code, 0, first.stderr);
  const layers = () => inspect(st, 'l:1').Layers;
  const fileIn = (layer: string, path: string) => readFileSync(join(st.root, 'layers', layer, 'diff', path), 'utf8');
  t.equal(fileIn(layers()[3]!, 'all'), 'aaa\n', 'the excluded file is not copied');

  const again = build(st, ctx, '-t', 'l:1');
  t.notMatch(again.stdout, /Running in/, 'an unchanged rebuild runs nothing');
  t.equal(again.stdout.match(/Using cache/g)?.length, 4, 'every step after each FROM is cached, COPY --from included');

  // Same size, same mtime: only the change time (and the content) tell.
  const mtime = must(`stat -c %y ${ctx}/dir/x.txt`).trim();
  writeFileSync(join(ctx, 'dir/x.txt'), 'bbb\n');
  must(`touch -d '${mtime}' ${ctx}/dir/x.txt`);
  const changed = build(st, ctx, '-t', 'l:1');
  t.equal(changed.code, 0, changed.stderr);
  t.match(changed.stdout, /Running in/, 'new content under the old mtime is a change');
  t.equal(fileIn(layers()[3]!, 'all'), 'bbb\n');

  writeFileSync(join(ctx, '.dockerignore'), '');
  const unignored = build(st, ctx, '-t', 'l:1');
  t.equal(unignored.code, 0, unignored.stderr);
  t.match(unignored.stdout, /Running in/, 'a file no longer excluded is a change');
  t.equal(fileIn(layers()[3]!, 'all'), 'skipped\nbbb\n');

  const stage = ctx.replace(/ctx$/, 'ctx2');
  mkdirSync(stage);
  writeFileSync(join(stage, 'Dockerfile'), 'FROM busybox AS gen\nRUN echo other > /gen\nFROM busybox\nCOPY --from=gen /gen /gen\n');
  const other = build(st, stage, '-t', 'l:2');
  t.equal(other.code, 0, other.stderr);
  t.equal(fileIn(inspect(st, 'l:2').Layers[1]!, 'gen'), 'other\n', 'COPY --from of another stage content is not taken from the cache');
  leftovers(t, st);
});

t.test('--target builds only the stages it needs', async (t) => {
  const st = newStore(t);
  const ctx = context(st.base, { Dockerfile: 'FROM busybox AS a\nRUN echo a > /a\nFROM busybox AS b\nRUN exit 3\nFROM a AS c\nRUN test -f /a\n' });
  const r = build(st, ctx, '--target', 'c', '-t', 't:c');
  t.equal(r.code, 0, r.stderr);
  t.notMatch(r.stdout, /exit 3/);
  t.equal(inspect(st, 't:c').Layers.length, 3);
  t.match(build(st, ctx, '--target', 'nope').stderr, /target stage "nope" could not be found/);
});

t.test('ADD https: redirects, and CA certificates from NODE_EXTRA_CA_CERTS through the strata command', async (t) => {
  const st = newStore(t);
  const dir = join(st.base, 'tls');
  mkdirSync(dir);
  must(`cd ${dir} && openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -days 1 -keyout key.pem -out cert.pem 2>/dev/null`);
  // A server in a process of its own: the builds below block this one.
  const { spawn } = await import('node:child_process');
  const server = spawn(process.execPath, ['-e', `
    const fs = require('node:fs');
    const s = require('node:https').createServer({ key: fs.readFileSync('key.pem'), cert: fs.readFileSync('cert.pem') }, (req, res) => {
      if (req.url === '/moved') { res.writeHead(302, { location: '/secure.txt' }); res.end(); return; }
      if (req.url === '/secure.txt') { res.end('over tls\\n'); return; }
      res.writeHead(404); res.end();
    });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));
  `], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void server.kill());
  const port = await new Promise<string>((resolve) => server.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
  const ctx = context(join(st.base, 'https'), { Dockerfile: `FROM busybox\nADD https://127.0.0.1:${port}/moved /secure.txt\n` });

  const env = { ...process.env };
  delete env['NODE_EXTRA_CA_CERTS'];
  delete env['STRATA_EXTRA_CA_CERTS'];
  const untrusted = strata(['--root', st.root, 'build', '-t', 'tls:1', ctx], { env });
  t.equal(untrusted.code, 1);
  t.match(untrusted.stderr, /Dockerfile:2: ADD: failed to fetch https:.*self.signed certificate/, 'an unknown CA is refused');

  // The command itself, as a user runs it: its first line moves the variable out of Node's way.
  const trusted = run(CLI, ['--root', st.root, 'build', '-t', 'tls:1', ctx], { env: { ...env, NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem') } });
  t.equal(trusted.code, 0, trusted.stderr);
  t.equal(readFileSync(join(st.root, 'layers', inspect(st, 'tls:1').Layers[1]!, 'diff/secure.txt'), 'utf8'), 'over tls\n', 'the redirect is followed');
  leftovers(t, st);
});

t.test('bad input: a clear error with the line, exit 1, nothing tagged or left behind', async (t) => {
  const st = newStore(t);
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['syntax', { Dockerfile: 'FROM busybox\nRUN true\nFROMM x\n' }, /Dockerfile:3: unknown instruction: FROMM/],
    ['flag', { Dockerfile: 'FROM busybox\nCOPY --own=1 a /\n' }, /Dockerfile:2: COPY: unknown flag: --own/],
    ['outside', { Dockerfile: 'FROM busybox\nCOPY ../etc/passwd /\n' }, /Dockerfile:2: COPY: \.\.\/etc\/passwd: forbidden path outside the build context/],
    ['missing', { Dockerfile: 'FROM busybox\nCOPY nothere /\n' }, /Dockerfile:2: COPY: nothere: no such file or directory in the build context/],
    ['ignored', { Dockerfile: 'FROM busybox\nCOPY key.pem /\n', '.dockerignore': '*.pem\n', 'key.pem': 'x' }, /key\.pem: .*excluded by \.dockerignore/],
    ['image', { Dockerfile: 'FROM nosuchimage:1\n' }, /Dockerfile:1: FROM: no such image: nosuchimage:1/],
    ['run', { Dockerfile: 'FROM busybox\nRUN echo partial > /p; exit 5\n' }, /Dockerfile:2: RUN: The command '\/bin\/sh -c echo partial > \/p; exit 5' returned a non-zero code: 5/],
    ['user', { Dockerfile: 'FROM busybox\nUSER ghost\nRUN true\n' }, /Dockerfile:3: RUN: unable to find user ghost/],
    ['bound', { Dockerfile: 'FROM busybox\nRUN rm /etc/hostname\n' }, /Device or resource busy[\s\S]*returned a non-zero code: 1|returned a non-zero code: 1/],
    ['expansion', { Dockerfile: 'FROM busybox\nENV A="${B:?must be set}"\n' }, /Dockerfile:2: ENV: B: must be set/],
  ];
  for (const [name, files, re] of cases) {
    const ctx = context(join(st.base, name), files);
    const r = build(st, ctx, '-t', `bad:${name}`);
    t.equal(r.code, 1, `${name}: exit 1`);
    t.match(r.stderr, re, `${name}: the message`);
    t.equal(st.s('inspect', `bad:${name}`).code, 1, `${name}: nothing tagged`);
  }
  const fifo = context(join(st.base, 'fifo'), { Dockerfile: 'FROM busybox\nCOPY pipe /pipe\n' });
  must(`mkfifo ${fifo}/pipe`);
  const rf = build(st, fifo, '-t', 'bad:fifo');
  t.equal(rf.code, 1, 'a fifo in the context');
  t.match(rf.stderr, /Dockerfile:2: COPY: .*pipe: only files, directories and symlinks can be copied/);
  const broken = context(join(st.base, 'broken'), { Dockerfile: 'FROM busybox\nADD broken.tar.gz /x/\n' });
  must(`head -c 3000 /dev/urandom | gzip > ${broken}/broken.tar.gz && printf '\\037\\213garbage' > ${broken}/broken.tar.gz`);
  const rbk = build(st, broken, '-t', 'bad:broken');
  t.equal(rbk.code, 1, 'a corrupt archive for ADD');
  t.match(rbk.stderr, /Dockerfile:2: ADD: broken\.tar\.gz: /);
  const symlinkOut = context(join(st.base, 'symlink'), { Dockerfile: 'FROM busybox\nCOPY link/passwd /stolen\n' });
  must(`ln -s /etc ${symlinkOut}/link`);
  const r = build(st, symlinkOut, '-t', 'bad:symlink');
  t.equal(r.code, 1, 'a symlink in the context cannot lead outside it');
  t.match(r.stderr, /link\/passwd: no such file or directory in the build context/);
  t.equal(st.s('check').code, 0);
  leftovers(t, st);
});

t.test('COPY and ADD: directories, wildcards, destinations, archives, URLs', async (t) => {
  const st = newStore(t);
  const ctx = context(st.base, {
    'a.txt': 'A\n',
    'b.txt': 'B\n',
    'dir/x': 'X\n',
    'dir/sub/y': 'Y\n',
    'pkg/file': 'packed\n',
  });
  must(`cd ${ctx} && ln -s file pkg/link && tar -cf plain.tar pkg && tar -czf gz.tar.gz pkg && tar -cjf bz.tar.bz2 pkg && tar -cJf xz.tar.xz pkg && rm -r pkg`);
  // A web server in a process of its own (the builds below block this one): busybox httpd.
  const www = join(st.base, 'www');
  mkdirSync(www);
  writeFileSync(join(www, 'remote.txt'), 'from the web\n');
  must(`touch -d @1445412480 ${www}/remote.txt`);
  const port = await freePort();
  const { spawn } = await import('node:child_process');
  const httpd = spawn('busybox', ['httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', www], { stdio: 'ignore' });
  t.teardown(() => void httpd.kill());
  for (let i = 0; i < 50 && run('busybox', ['wget', '-q', '-O', '/dev/null', `http://127.0.0.1:${port}/remote.txt`]).code !== 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  writeFileSync(join(ctx, 'Dockerfile'), [
    'FROM busybox',
    'COPY *.txt /multi/',
    'COPY dir /dircontents',
    'COPY a.txt /renamed',
    'COPY b.txt /etc',
    'COPY --chown=user dir/x /owned',
    'ADD plain.tar /x/plain/',
    'ADD gz.tar.gz /x/gz/',
    'ADD bz.tar.bz2 /x/bz/',
    'ADD xz.tar.xz /x/xz/',
    'ADD a.txt /added.txt',
    `ADD http://127.0.0.1:${port}/remote.txt /web/`,
    'RUN mkdir -p /opt/real && ln -s /opt/real /linkdir && chmod 700 /opt/real',
    'COPY a.txt /linkdir/through-link.txt',
    '',
  ].join('\n'));
  const r = build(st, ctx, '-t', 'copies:1');
  t.equal(r.code, 0, r.stderr);
  const mnt = st.s('mount', 'copies:1').stdout.trim();
  t.teardown(() => void (existsSync(join(mnt, 'bin')) && st.s('umount', mnt)));
  const read = (p: string) => readFileSync(join(mnt, p), 'utf8');
  t.same([read('multi/a.txt'), read('multi/b.txt')], ['A\n', 'B\n'], 'a wildcard copies into the directory');
  t.same([read('dircontents/x'), read('dircontents/sub/y')], ['X\n', 'Y\n'], "a directory source copies its contents");
  t.notOk(existsSync(join(mnt, 'dircontents/dir')));
  t.equal(read('renamed'), 'A\n', 'a file to a new path takes that name');
  t.equal(read('etc/b.txt'), 'B\n', 'a file into an existing directory keeps its name');
  t.equal(must(`stat -c %u:%g ${mnt}/owned`).trim(), '1000:1000', '--chown by user name');
  for (const kind of ['plain', 'gz', 'bz', 'xz']) {
    t.equal(read(`x/${kind}/pkg/file`), 'packed\n', `ADD unpacks a ${kind} tar`);
    t.equal(must(`readlink ${mnt}/x/${kind}/pkg/link`).trim(), 'file');
  }
  t.equal(read('added.txt'), 'A\n', 'ADD of a plain file copies it');
  t.equal(read('web/remote.txt'), 'from the web\n', 'ADD of a URL downloads it');
  t.equal(must(`stat -c %a ${mnt}/web/remote.txt`).trim(), '600', 'with mode 0600');
  t.equal(must(`stat -c %Y ${mnt}/web/remote.txt`).trim(), '1445412480', "and the server's Last-Modified");
  t.equal(read('opt/real/through-link.txt'), 'A\n', 'a destination through a symlink of a lower layer lands where it points');
  const img = inspect(st, 'copies:1');
  const lastLayer = img.Layers[img.Layers.length - 1]!;
  t.same(layerTree(st, lastLayer), ['d 700 0:0 ./opt/real', 'd 755 0:0 ./opt', 'f 644 0:0 ./opt/real/through-link.txt'].sort(), 'the layer holds the real path, parents with their metadata');
  t.equal(st.s('umount', mnt).code, 0);

  // A symlink at ADD's target is resolved inside the image: nothing outside it is written.
  const victim = join(st.base, 'victim.txt');
  writeFileSync(victim, 'host file\n');
  const esc = context(join(st.base, 'escape'), {
    Dockerfile: `FROM busybox\nRUN ln -s ${victim} /f && ln -s ../../../../../../..${victim} /g\nADD http://127.0.0.1:${port}/remote.txt /f\nADD http://127.0.0.1:${port}/remote.txt /g\n`,
  });
  const re = build(st, esc, '-t', 'esc:1');
  t.equal(re.code, 0, re.stderr);
  t.equal(readFileSync(victim, 'utf8'), 'host file\n', 'ADD through a symlink never writes the host');
  const sum = context(join(st.base, 'sum'), { Dockerfile: `FROM busybox\nADD --checksum=sha256:${'0'.repeat(64)} http://127.0.0.1:${port}/remote.txt /r\n` });
  t.match(build(st, sum).stderr, /Dockerfile:2: ADD: .*the download's digest is sha256:[0-9a-f]{64}, not the --checksum/, '--checksum is verified');
  const ign = context(join(st.base, 'ign'), { Dockerfile: 'FROM busybox\nCOPY link /x\n', '.dockerignore': 'secret.txt\n', 'secret.txt': 's' });
  must(`ln -s secret.txt ${ign}/link`);
  t.match(build(st, ign).stderr, /link: .*excluded by \.dockerignore/, 'a symlink does not get around .dockerignore');
  const bad = context(join(st.base, 'bad'), { Dockerfile: 'FROM busybox\nADD http://127.0.0.1:9/nothing.txt /\n' });
  const rb = build(st, bad, '-t', 'bad:url');
  t.equal(rb.code, 1);
  t.match(rb.stderr, /Dockerfile:2: ADD: failed to fetch http:\/\/127\.0\.0\.1:9\/nothing\.txt/);
  const missing = context(join(st.base, 'missing'), { Dockerfile: `FROM busybox\nADD http://127.0.0.1:${port}/gone.txt /\n` });
  t.match(build(st, missing).stderr, /HTTP 404/);
  leftovers(t, st);
});
