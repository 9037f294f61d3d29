/**
 * The container commands: run, create, start, stop, kill, rm, ps, logs, commit, and the container
 * forms of diff, export, mount, umount and chroot. Output and exit codes follow the docker CLI's:
 * 125 when strata itself refuses (unknown image, bad flag value, name taken), the command's own
 * status otherwise (126 not executable, 127 not found).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerRecord } from '../../driver/store/metadata.js';
import type { LayerStore } from '../../driver/store/store.js';
import { ContainerError, createContainer, liveState, logPath, mountpointOf, resolveContainer, type CreateRequest, type StoreAccess } from '../../container/containers.js';
import { ContainerConfigError } from '../../container/process.js';
import { UserError } from '../errors.js';
import { storeRoot, withStore } from './images.js';

/** Exit status when strata itself cannot do what was asked (docker's). */
const EXIT_REFUSED = 125;

function access(root: string | undefined): StoreAccess {
  return (fn) => withStore(root, fn);
}

/** Container errors as the CLI reports them. */
async function reported<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ContainerError) throw new UserError(err.message, err.exitCode);
    if (err instanceof ContainerConfigError) throw new UserError(err.message, EXIT_REFUSED);
    throw err;
  }
}

export interface RunArgs extends Omit<CreateRequest, 'autoRemove'> {
  root: string | undefined;
  rm: boolean;
  detach: boolean;
}

function checkTty(tty: boolean): void {
  if (tty && !process.stdin.isTTY) throw new UserError('the input device is not a TTY', 1);
}

export async function create(a: RunArgs): Promise<void> {
  const rec = await reported(() => withStore(a.root, (images, store) => createContainer(images, store, { ...a, autoRemove: a.rm })));
  process.stdout.write(rec.id + '\n');
}

export async function run(a: RunArgs): Promise<void> {
  if (a.detach && a.tty) {
    // A detached terminal would need a console to attach to later; strata has none.
    throw new UserError('-d with -t is not supported: a detached container has no terminal to attach to', EXIT_REFUSED);
  }
  if (!a.detach) {
    checkTty(a.tty);
    // The driver that will serve the rootfs starts now, while the layers are made.
    const { keepDriverReady } = await import('../../driver/launch.js');
    keepDriverReady();
  }
  const rec = await reported(() => withStore(a.root, (images, store) => createContainer(images, store, { ...a, autoRemove: a.rm })));
  if (a.detach) {
    await startDetached(a.root, rec.id);
    process.stdout.write(rec.id + '\n');
    return;
  }
  process.exitCode = await attachedRun(a.root, rec.id, a.tty, a.interactive);
}

async function attachedRun(root: string | undefined, id: string, tty: boolean, interactive: boolean): Promise<number> {
  const { superviseContainer } = await import('../../container/run.js');
  return reported(() =>
    superviseContainer(access(root), id, tty ? { kind: 'tty' } : { kind: 'attached', stdout: process.stdout, stderr: process.stderr, stdin: interactive }),
  );
}

/**
 * Start the container under a supervisor process of its own (this CLI's entry point, hidden
 * command container-supervise) and return once it runs, or with the reason it could not start.
 */
async function startDetached(root: string | undefined, id: string): Promise<void> {
  const script = process.argv[1]!;
  const dir = storeRoot(root);
  const args = [script, '--root', dir, 'container-supervise', id];
  // What the supervisor itself has to say (it outlives this command) goes to a file of its own.
  const log = openSync(join(dir, 'containers', id, 'supervisor.log'), 'a', 0o600);
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log, 'pipe'] });
  closeSync(log);
  const answer = await new Promise<string>((resolve) => {
    let text = '';
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (c: string) => (text += c));
    pipe.on('end', () => resolve(text));
    pipe.on('error', () => resolve(text));
  });
  child.unref();
  if (answer.startsWith('ok')) return;
  const m = /^error (\d+) ([\s\S]*)$/.exec(answer.trim());
  if (m !== null) throw new UserError(m[2]!, Number(m[1]));
  throw new UserError(`the container's supervisor ended before starting it${answer !== '' ? ': ' + answer.trim() : ''}`, EXIT_REFUSED);
}

/** The hidden command a detached container runs under: tells its starter through fd 3. */
export async function supervise(a: { root: string | undefined; id: string }): Promise<void> {
  const { superviseContainer } = await import('../../container/run.js');
  const { writeSync } = await import('node:fs');
  let told = false;
  const tell = (msg: string) => {
    if (told) return;
    told = true;
    try {
      writeSync(3, msg);
      closeSync(3);
    } catch {
      // The starter is gone; the container runs regardless.
    }
  };
  try {
    await superviseContainer(access(a.root), a.id, { kind: 'detached' }, {
      ready: (err) => tell(err === undefined ? 'ok' : `error ${err instanceof ContainerError ? err.exitCode : EXIT_REFUSED} ${err.message}`),
    });
  } catch (err) {
    tell(`error ${err instanceof ContainerError ? err.exitCode : EXIT_REFUSED} ${(err as Error).message}`);
    process.exitCode = 1;
  }
}

export async function start(a: { root: string | undefined; containers: string[]; attach: boolean; interactive: boolean }): Promise<void> {
  if (a.attach) {
    if (a.containers.length !== 1) throw new UserError('you cannot start and attach multiple containers at once', 1);
    const rec = await reported(() => withStore(a.root, (_images, store) => resolveContainer(store, a.containers[0]!)));
    checkTty(rec.process.tty);
    process.exitCode = await attachedRun(a.root, rec.id, rec.process.tty, a.interactive);
    return;
  }
  for (const ref of a.containers) {
    const { rec, running } = await reported(() =>
      withStore(a.root, async (_images, store) => {
        const r = await resolveContainer(store, ref);
        return { rec: r, running: liveState(store, r).status === 'running' };
      }),
    );
    // As docker: starting a running container is no error.
    if (!running) {
      if (rec.process.tty) throw new UserError(`container ${rec.name} has a terminal (-t): start it attached, with start -a`, 1);
      await startDetached(a.root, rec.id);
    }
    process.stdout.write(ref + '\n');
  }
}

export async function stop(a: { root: string | undefined; containers: string[]; time: number }): Promise<void> {
  const { stopContainer } = await import('../../container/control.js');
  for (const ref of a.containers) {
    await reported(() => stopContainer(access(a.root), ref, a.time));
    process.stdout.write(ref + '\n');
  }
}

export async function kill(a: { root: string | undefined; containers: string[]; signal: string }): Promise<void> {
  const { killContainer } = await import('../../container/control.js');
  for (const ref of a.containers) {
    await reported(() => killContainer(access(a.root), ref, a.signal));
    process.stdout.write(ref + '\n');
  }
}

export async function rm(a: { root: string | undefined; containers: string[]; force: boolean }): Promise<void> {
  const { rmContainer } = await import('../../container/control.js');
  let failed: UserError | undefined;
  for (const ref of a.containers) {
    try {
      await reported(() => rmContainer(access(a.root), ref, a.force));
      process.stdout.write(ref + '\n');
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      // Like docker rm: every container is tried, each failure said, the exit code the last one's.
      process.stderr.write(`strata: ${err.message}\n`);
      failed = err;
    }
  }
  if (failed !== undefined) process.exitCode = failed.exitCode;
}

/** go-units' HumanDuration, which docker ps uses. */
function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.floor(s / 60);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days`;
  if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months`;
  return `${Math.floor(h / 24 / 365)} years`;
}

function statusText(store: LayerStore, rec: ContainerRecord, now: number): string {
  const live = liveState(store, rec);
  switch (live.status) {
    case 'created':
      return 'Created';
    case 'running':
      return `Up ${humanDuration(now - Date.parse(live.since))}${live.mountLost ? ' (rootfs mount lost: its driver died)' : ''}`;
    case 'exited':
      return `Exited (${live.exitCode}) ${humanDuration(now - Date.parse(live.finishedAt))} ago`;
    case 'dead':
      return 'Dead';
  }
}

/** The COMMAND column: the command line quoted, cut at 20 characters as docker ps does. */
function commandText(rec: ContainerRecord): string {
  const line = rec.process.args.join(' ');
  return JSON.stringify(line.length > 20 ? line.slice(0, 19) + '…' : line);
}

export async function ps(a: { root: string | undefined; all: boolean; quiet: boolean }): Promise<void> {
  const rows = await withStore(a.root, async (_images, store) => {
    const now = Date.now();
    const all = (await store.meta.allContainers()).sort((x, y) => (x.created < y.created ? 1 : -1));
    return all
      .filter((c) => a.all || liveState(store, c).status === 'running')
      .map((c) => [c.id.slice(0, 12), c.imageRef, commandText(c), `${humanDuration(now - Date.parse(c.created))} ago`, statusText(store, c, now), '', c.name]);
  });
  if (a.quiet) {
    for (const r of rows) process.stdout.write(r[0] + '\n');
    return;
  }
  const header = ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'];
  const table = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...table.map((r) => [...r[i]!].length)));
  for (const r of table) process.stdout.write(r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]! + 3 - ([...cell].length - cell.length)))).join('') + '\n');
}

export async function logs(a: { root: string | undefined; container: string }): Promise<void> {
  const path = await reported(() =>
    withStore(a.root, async (_images, store) => {
      const rec = await resolveContainer(store, a.container);
      if (rec.process.tty) throw new ContainerError(`container ${rec.name} runs on a terminal: its output is not logged`);
      return logPath(store, rec.id);
    }),
  );
  if (!existsSync(path)) return;
  const { replayLog } = await import('../../container/logs.js');
  await replayLog(path, process.stdout, process.stderr);
}

export async function commit(a: { root: string | undefined; container: string; image?: string | undefined; message?: string | undefined; author?: string | undefined }): Promise<void> {
  const { commitContainer } = await import('../../container/control.js');
  const { parseTag } = await import('../../driver/store/images.js');
  let tag: string | null = null;
  if (a.image !== undefined) {
    try {
      tag = parseTag(a.image);
    } catch (err) {
      throw new UserError((err as Error).message, EXIT_REFUSED);
    }
  }
  const id = await reported(() => withStore(a.root, (images, store) => commitContainer(images, store, a.container, { tag, message: a.message, author: a.author })));
  process.stdout.write(id + '\n');
}

/** The container `ref` names, or undefined when it names none (the caller tries an image or a path). */
export async function findContainer(root: string | undefined, ref: string): Promise<ContainerRecord | undefined> {
  return withStore(root, (_images, store) => resolveContainer(store, ref).catch(() => undefined));
}

export async function diffContainer(a: { root: string | undefined; container: string }): Promise<void> {
  await withStore(a.root, async (_images, store) => {
    const rec = await resolveContainer(store, a.container);
    for (const c of await store.changes(rec.layer)) process.stdout.write(`${c.kind} ${c.path}\n`);
  });
}

export async function exportContainer(a: { root: string | undefined; container: string; output?: string | undefined }, write: (tar: NodeJS.ReadableStream) => Promise<void>): Promise<void> {
  const { exportMerged } = await import('../../driver/store/diff.js');
  await withStore(a.root, async (_images, store) => {
    const rec = await resolveContainer(store, a.container);
    await write(exportMerged(await store.lowerDirs(rec.layer)));
  });
}

export async function mountContainer(a: { root: string | undefined; container: string }): Promise<void> {
  const path = await withStore(a.root, async (_images, store) => store.get((await resolveContainer(store, a.container)).layer));
  process.stdout.write(path + '\n');
}

export async function umountContainer(a: { root: string | undefined; container: string }): Promise<void> {
  await reported(() =>
    withStore(a.root, async (_images, store) => {
      const rec = await resolveContainer(store, a.container);
      const mount = await store.meta.mounts.get(mountpointOf(store, rec));
      if (mount === undefined) throw new ContainerError(`container ${rec.name} is not mounted`);
      // A running container holds its own reference: `umount` releases only what `mount` took.
      const held = liveState(store, rec).status === 'running' ? 1 : 0;
      if (mount.refs <= held) throw new ContainerError(`container ${rec.name} is mounted only for its running process; stop it instead`);
      await store.put(rec.layer);
    }),
  );
}

export async function chroot(a: { root: string | undefined; target: string; args: string[] }): Promise<void> {
  const { chroot: run } = await import('../../container/chroot.js');
  process.exitCode = await reported(() => run(access(a.root), a.target, a.args));
}
