/**
 * Containers end to end, through the CLI on a busybox image: run with the image config and its
 * overrides, exit codes, the container's changes (diff, commit's layer tar, export), the
 * lifecycle (create, start, stop, kill, rm, ps, logs, -d) and its state when processes die,
 * isolation (pid namespace, mounts, permissions for a non-root user), chroot, terminals, and bad
 * input that must fail with the right exit code and leave nothing behind.
 */
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { must, run, sh, strata, ROOT, type Result } from './lib/run.js';

interface Store {
  root: string;
  base: string;
  s: (...args: string[]) => Result;
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(dir + '/'));
}

/**
 * A store with busybox:latest (plus a file in a directory for opaque-directory checks). Teardown
 * removes every container first (ending their processes), then detaches what is left mounted.
 */
function newStore(t: Test): Store {
  const base = mkdtempSync('/tmp/strata-test-');
  const root = join(base, 'store');
  const s = (...args: string[]) => strata(['--root', root, ...args]);
  t.teardown(() => {
    const ids = s('ps', '-aq').stdout.split('\n').filter((x) => x !== '');
    if (ids.length > 0) s('rm', '-f', ...ids);
    for (const m of mountsUnder(base).reverse()) sh(`umount -l ${JSON.stringify(m)}`);
    rmSync(base, { recursive: true, force: true });
  });
  must(`bash ${ROOT}native-deps/busybox-rootfs.sh ${base}/busybox.tar`);
  const r = s('import', `${base}/busybox.tar`, 'busybox:latest');
  if (r.code !== 0) throw new Error(r.stderr);
  return { root, base, s };
}

/** An image with a config (Env, WorkingDir, User, Cmd) and a directory with content below. */
function buildApp(st: Store): void {
  const ctx = join(st.base, 'ctx');
  mkdirSync(ctx, { recursive: true });
  writeFileSync(
    join(ctx, 'Dockerfile'),
    `FROM busybox
RUN mkdir -p /srv/data /app && echo one > /srv/data/a && echo two > /srv/data/b && echo keep > /srv/keep && chown user /app
ENV GREETING=hello MODE=image
WORKDIR /app
CMD ["sh", "-c", "echo $GREETING from $(pwd) as $(id -un)"]
USER user
`,
  );
  // Layer times clamped to 2023: Docker's diff rules count a directory as unchanged when its
  // times match to the second and one side has no nanoseconds (as tar leaves them), so a
  // container changing a directory in the same second as the build made it would show no change.
  const r = strata(['--root', st.root, 'build', '-t', 'app', ctx], { env: { ...process.env, SOURCE_DATE_EPOCH: '1700000000' } });
  if (r.code !== 0) throw new Error(r.stdout + r.stderr);
}

function noLeftovers(t: Test, st: Store): void {
  t.same(mountsUnder(st.root), [], 'nothing mounted under the store');
  const runc = JSON.parse(run('runc', ['list', '--format', 'json']).stdout || '[]') as Array<{ bundle: string }> | null;
  t.same((runc ?? []).filter((c) => c.bundle.startsWith(st.root + '/')), [], 'no runc container left');
}

/** The pid of the process supervising container `id`. */
function supervisorOf(id: string): number {
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (args.includes('container-supervise') && args.includes(id)) return Number(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return 0;
}

/** The pid of the driver serving `mountpoint`, from its state file under /run/strata/mounts. */
function driverOf(mountpoint: string): number {
  const dir = '/run/strata/mounts';
  for (const f of readdirSync(dir).filter((n) => /^[0-9a-f]+\.json$/.test(n))) {
    const state = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { pid: number; mountpoint: string };
    if (state.mountpoint === mountpoint) return state.pid;
  }
  return 0;
}

t.test('run applies the image config, the flags override it, exit codes propagate', async (t) => {
  const st = newStore(t);
  buildApp(st);
  let r = st.s('run', '--rm', 'app');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'hello from /app as user\n', 'Cmd, Env, WorkingDir and User of the image');
  r = st.s('run', '--rm', '-e', 'GREETING=hi', '-w', '/tmp', '-u', 'root', 'app');
  t.equal(r.stdout, 'hi from /tmp as root\n', '-e, -w and -u override');
  r = st.s('run', '--rm', 'app', 'sh', '-c', 'exit 3');
  t.equal(r.code, 3, 'the exit status of the command');
  r = st.s('run', '--rm', 'app', 'ls', '-d', '/srv');
  t.equal(r.stdout, '/srv\n', 'flags after the image belong to the command');
  r = st.s('run', '--rm', '--entrypoint', 'echo', 'app', 'via', 'entrypoint');
  t.equal(r.stdout, 'via entrypoint\n', '--entrypoint, with the arguments after the image');
  r = st.s('run', '--rm', 'app', 'no-such-command');
  t.equal(r.code, 127, 'a command not in the image: 127');
  t.match(r.stderr, /executable file not found/);
  r = st.s('run', '--rm', 'app', '/srv/keep');
  t.equal(r.code, 126, 'a file that cannot be executed: 126');
  r = strata(['--root', st.root, 'run', '--rm', '-e', 'FROM_HOST', 'app', 'sh', '-c', 'echo $FROM_HOST'], { env: { ...process.env, FROM_HOST: 'yes' } });
  t.equal(r.stdout, 'yes\n', "-e NAME takes the caller's value");
  t.equal(st.s('ps', '-aq').stdout, '', '--rm removed every container');
  noLeftovers(t, st);
});

t.test('diff, commit and export show the container layer as docker does', async (t) => {
  const st = newStore(t);
  buildApp(st);
  const r = st.s('run', '--name', 'c1', '-u', 'root', 'app', 'sh', '-c',
    'echo new > /newfile && echo more >> /etc/issue && rm /bin/vi && rm -rf /home && rm -rf /srv/data && mkdir /srv/data && echo fresh > /srv/data/c');
  t.equal(r.code, 0, r.stderr);
  const diff = st.s('diff', 'c1');
  t.equal(diff.code, 0, diff.stderr);
  // Docker's rules for overlay: the parent of an added or deleted path is C; a modified file's
  // parent only if the directory itself changed; a deleted directory is one D; a directory made
  // anew over a deleted one (opaque) is C with only its new content below.
  t.same(diff.stdout.trim().split('\n'), ['C /bin', 'D /bin/vi', 'C /etc/issue', 'D /home', 'A /newfile', 'C /srv', 'C /srv/data', 'A /srv/data/c'],
    "docker diff's rules");

  const id = st.s('commit', 'c1', 'app:committed');
  t.equal(id.code, 0, id.stderr);
  const dir = join(st.base, 'saved');
  mkdirSync(dir);
  must(`${JSON.stringify(process.execPath)} ${ROOT}dist/bundle/strata.cjs --root ${st.root} save app:committed -o ${dir}/img.tar && tar -xf ${dir}/img.tar -C ${dir}`);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Array<{ Layers: string[] }>;
  const top = manifest[0]!.Layers[manifest[0]!.Layers.length - 1]!;
  const entries = must(`tar -tf ${dir}/${top}`).trim().split('\n').sort();
  t.same(entries, ['.wh.home', 'bin/', 'bin/.wh.vi', 'etc/', 'etc/issue', 'newfile', 'srv/', 'srv/data/', 'srv/data/.wh..wh..opq', 'srv/data/c'],
    "the committed layer: whiteouts, an opaque marker, parents, and nothing of the init layer's");
  let c = st.s('run', '--rm', 'app:committed', 'sh', '-c', 'cat /newfile /srv/data/*; ls /home 2>&1; echo $GREETING');
  t.equal(c.stdout, "new\nfresh\nls: /home: No such file or directory\nhello\n", 'the committed image runs with the changes and the config');

  must(`${JSON.stringify(process.execPath)} ${ROOT}dist/bundle/strata.cjs --root ${st.root} export c1 -o ${dir}/c1.tar`);
  const exported = must(`tar -tf ${dir}/c1.tar | sed 's#/$##' | sort`).trim().split('\n');
  c = st.s('mount', 'c1');
  t.equal(c.code, 0, c.stderr);
  const mnt = c.stdout.trim();
  const merged = must(`cd ${mnt} && find . -mindepth 1 | sed 's#^\\./##' | sort`).trim().split('\n');
  t.equal(st.s('umount', 'c1').code, 0, 'umount C');
  t.same(exported, merged, 'export is the merged tree');
  t.ok(exported.includes('newfile') && !exported.includes('home') && !exported.includes('srv/data/a'), 'with the changes');
  noLeftovers(t, st);
});

t.test('lifecycle: detached runs, logs, stop and start keep changes, rm, ps', async (t) => {
  const st = newStore(t);
  const id = st.s('run', '-d', '--name', 'svc', 'busybox', 'sh', '-c', 'echo started >> /count; cat /count | wc -l; echo oops >&2; exec sleep 60');
  t.equal(id.code, 0, id.stderr);
  t.match(id.stdout, /^[0-9a-f]{64}\n$/, 'run -d prints the id');
  await new Promise((r) => setTimeout(r, 500));
  let ps = st.s('ps');
  t.match(ps.stdout, /^CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES\n/, "docker ps's header");
  t.match(ps.stdout, new RegExp(`${id.stdout.slice(0, 12)} +busybox +"sh -c echo started …" +.* ago +Up .* +svc\\n`), 'the running container');
  let logs = st.s('logs', 'svc');
  t.equal(logs.stdout, '1\n', 'logs: stdout');
  t.equal(logs.stderr, 'oops\n', 'logs: stderr, to stderr');
  let r = st.s('rm', 'svc');
  t.equal(r.code, 1, 'rm of a running container without -f fails');
  t.match(r.stderr, /cannot remove a running container/);
  r = st.s('stop', '-t', '1', 'svc');
  t.equal(r.code, 0, r.stderr);
  ps = st.s('ps', '-a');
  t.match(ps.stdout, /Exited \(137\) .* svc/, 'stopped: SIGKILL after the timeout (sleep as PID 1 ignores SIGTERM)');
  t.equal(st.s('ps', '-q').stdout, '', 'ps without -a lists running containers only');
  r = st.s('start', 'svc');
  t.equal(r.code, 0, r.stderr);
  await new Promise((r) => setTimeout(r, 500));
  logs = st.s('logs', 'svc');
  t.equal(logs.stdout, '1\n2\n', 'the second start sees the first one\'s change');
  r = st.s('kill', 'svc');
  t.equal(r.code, 0, r.stderr);
  for (let i = 0; i < 100 && !/Exited/.test(st.s('ps', '-a').stdout); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(st.s('ps', '-a').stdout, /Exited \(137\)/, 'killed');
  t.equal(st.s('create', '--name', 'once', 'busybox', 'sh', '-c', 'echo attached; exit 7').code, 0);
  r = st.s('start', '-a', 'once');
  t.equal(r.code, 7, "start -a waits and answers the container's status");
  t.equal(r.stdout, 'attached\n', 'with its output');
  t.equal(st.s('rm', 'once').code, 0);
  r = st.s('rm', 'svc');
  t.equal(r.code, 0, r.stderr);
  t.equal(st.s('ps', '-aq').stdout, '', 'removed');
  t.equal(readdirSync(join(st.root, 'containers')).length, 0, 'its directory too');
  t.notMatch(st.s('layers').stdout, / rw /, 'and its writable layers');
  t.match(st.s('check').stdout, /consistent/, 'the store is consistent');
  noLeftovers(t, st);
});

t.test('a killed supervisor or driver is reported by ps and cleaned by rm', async (t) => {
  const st = newStore(t);
  const id = st.s('run', '-d', '--name', 'victim', 'busybox', 'sh', '-c', 'echo up; exec sleep 60').stdout.trim();
  t.match(id, /^[0-9a-f]{64}$/);
  // Killed only once the command runs (a process still starting fails on the dead mount at once).
  for (let i = 0; i < 100 && st.s('logs', 'victim').stdout !== 'up\n'; i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));
  // The driver serving the container's rootfs: its state file names the mountpoint.
  const mnt = join(st.root, 'mnt', id);
  const driver = driverOf(mnt);
  t.ok(driver > 0, 'the driver pid');
  process.kill(driver, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  t.match(st.s('ps', '-a').stdout, /Up .*rootfs mount lost.* victim/, 'ps reports the lost mount');
  let r = st.s('rm', '-f', 'victim');
  t.equal(r.code, 0, r.stderr);
  t.equal(st.s('ps', '-aq').stdout, '', 'removed');

  const id2 = st.s('run', '-d', '--name', 'orphan', 'busybox', 'sleep', '60').stdout.trim();
  const supervisor = supervisorOf(id2);
  t.ok(supervisor > 0, 'the supervisor pid');
  process.kill(supervisor, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 200));
  t.match(st.s('ps', '-a').stdout, /Dead +orphan/, 'a container whose supervisor died is Dead');
  r = st.s('rm', 'orphan');
  t.equal(r.code, 0, r.stderr);
  t.equal(st.s('ps', '-aq').stdout, '', 'and rm cleans it');
  t.match(st.s('check').stdout, /consistent/);
  noLeftovers(t, st);
});

t.test('isolation: PID 1, no host mounts, a non-root user meets the kernel permissions', async (t) => {
  const st = newStore(t);
  let r = st.s('run', '--rm', 'busybox', 'sh', '-c', 'echo $$');
  t.equal(r.stdout, '1\n', 'the command is PID 1');
  r = st.s('run', '--rm', 'busybox', 'cat', '/proc/mounts');
  t.notMatch(r.stdout, new RegExp(st.base), "the host's mounts are not visible");
  t.notMatch(r.stdout, /\/work|\/tmp\/strata-test/, 'nor host paths');
  r = st.s('run', '--rm', '-u', 'nobody', 'busybox', 'sh', '-c', 'touch /etc/x');
  t.not(r.code, 0, 'nobody cannot write a root-owned directory');
  t.match(r.stderr, /Permission denied/);
  r = st.s('run', '--rm', '-u', 'nobody', 'busybox', 'sh', '-c', 'touch /tmp/ok && id -u');
  t.equal(r.stdout, '65534\n', 'but can write /tmp, as nobody');
  const vol = join(st.base, 'vol');
  mkdirSync(vol);
  writeFileSync(join(vol, 'in'), 'from host\n');
  r = st.s('run', '--rm', '-v', `${vol}:/data:ro`, 'busybox', 'sh', '-c', 'cat /data/in; echo x > /data/out');
  t.equal(r.stdout, 'from host\n', '-v binds a host directory');
  t.not(r.code, 0, 'read-only with :ro');
  noLeftovers(t, st);
});

t.test('chroot into an image and a container; terminals and stdin', async (t) => {
  const st = newStore(t);
  let r = st.s('chroot', 'busybox', 'sh', '-c', 'ls /proc/self/ >/dev/null && echo ok && exit 4');
  t.equal(r.stdout, 'ok\n');
  t.equal(r.code, 4, "chroot answers the command's status");
  t.equal(st.s('run', '--name', 'c', 'busybox', 'sh', '-c', 'echo mark > /mark').code, 0);
  r = st.s('chroot', 'c', 'cat', '/mark');
  t.equal(r.stdout, 'mark\n', "chroot into a container sees its changes");
  t.notMatch(st.s('layers').stdout, /chroot-/, "chroot of an image leaves no layer");
  r = sh(`script -qec "${process.execPath} ${ROOT}dist/bundle/strata.cjs --root ${st.root} run -it --rm busybox sh -c 'tty; exit 5'" /dev/null`);
  t.equal(r.code, 5, 'run -it exits with the status');
  t.match(r.stdout, /\/dev\/pts\/\d+/, 'on a pseudo-terminal');
  r = strata(['--root', st.root, 'run', '-i', '--rm', 'busybox', 'tr', 'a-z', 'A-Z'], { input: 'piped in\n' });
  t.equal(r.stdout, 'PIPED IN\n', '-i passes stdin');
  r = st.s('run', '--rm', '-ie', 'X=grouped', 'busybox', 'sh', '-c', 'echo $X');
  t.equal(r.stdout, 'grouped\n', 'a group of short flags ending in one that takes a value');
  // A closed pipe on strata's output stops the echo, not the container or its bookkeeping.
  r = sh(`${process.execPath} ${ROOT}dist/bundle/strata.cjs --root ${st.root} run --name piped busybox sh -c 'yes | head -c 2000000; exit 6' | head -c 5`);
  t.equal(r.stdout, 'y\ny\ny', 'the reader got its bytes');
  t.match(st.s('ps', '-a').stdout, /Exited \(6\) .* piped/, 'and the exit was recorded');
  t.equal(st.s('rm', 'piped').code, 0);
  // SIGTERM to an attached run reaches the container's process once, and its status comes back.
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [`${ROOT}dist/bundle/strata.cjs`, '--root', st.root, 'run', '--rm', 'busybox', 'sh', '-c', 'trap "echo got TERM; exit 42" TERM; echo ready; while :; do sleep 0.1; done'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    if (out === 'ready\n') child.kill('SIGTERM');
  });
  const code = await new Promise<number | null>((res) => child.on('close', res));
  t.equal(code, 42, 'SIGTERM forwarded; the exit status of the container');
  t.equal(out, 'ready\ngot TERM\n', 'delivered once');
  r = strata(['--root', st.root, 'run', '-t', '--rm', 'busybox', 'true'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.equal(r.code, 1, '-t without a terminal');
  t.match(r.stderr, /not a TTY/);
  noLeftovers(t, st);
});

t.test('bad input: a clear error, the right exit code, nothing left behind', async (t) => {
  const st = newStore(t);
  let r = st.s('run', 'no-such-image');
  t.equal(r.code, 125, 'unknown image');
  t.match(r.stderr, /Unable to find image 'no-such-image'/);
  r = st.s('run', '-v', 'relative:/x', 'busybox', 'true');
  t.equal(r.code, 125, 'a relative -v path');
  r = st.s('run', '-v', `${st.base}/missing:/x`, 'busybox', 'true');
  t.equal(r.code, 125, 'a missing -v source');
  t.match(r.stderr, /bind source path does not exist/);
  t.equal(st.s('create', '--name', 'taken', 'busybox', 'true').code, 0);
  r = st.s('run', '--name', 'taken', 'busybox', 'true');
  t.equal(r.code, 125, 'a name already taken');
  t.match(r.stderr, /is already in use/);
  r = st.s('run', '--rm', '-u', 'nosuch', 'busybox', 'true');
  t.equal(r.code, 125, 'a user the image does not have');
  t.match(r.stderr, /nosuch/);
  r = st.s('run', '--rm', '-w', '/etc/passwd', 'busybox', 'true');
  t.equal(r.code, 125, 'a working directory that is a file');
  r = st.s('rm', 'nope');
  t.equal(r.code, 1, 'rm of an unknown container');
  t.match(r.stderr, /No such container: nope/);
  r = st.s('rmi', 'busybox');
  t.equal(r.code, 1, 'an image a container uses is kept');
  t.match(r.stderr, /must force/);
  // What a create or rm killed halfway leaves: check explains it, prune reclaims it.
  mkdirSync(join(st.root, 'containers', 'f'.repeat(64)));
  t.match(st.s('check').stdout, /containers\/f{64}: a directory with no container/);
  t.equal(st.s('prune').code, 0);
  t.notOk(readdirSync(join(st.root, 'containers')).includes('f'.repeat(64)), 'prune removed it');
  r = st.s('start', '-a', 'taken');
  t.equal(r.code, 0, "prune kept the container's layers");
  const ids = st.s('ps', '-aq').stdout.trim().split('\n');
  t.equal(ids.length, 1, 'only the created container exists: the failed runs left none');
  t.equal(st.s('layers').stdout.split('\n').filter((l) => / rw /.test(l)).length, 2, "and no writable layer but its own and its init layer");
  t.match(st.s('check').stdout, /consistent/);
  noLeftovers(t, st);
});
