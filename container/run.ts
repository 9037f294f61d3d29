/**
 * Running a container: mount its layers through the strata driver (a process of its own), check
 * the command exists, record it running under this process, run it with runc, then record how it
 * ended and release the mount. This process is the container's supervisor: the CLI itself for an
 * attached run, a detached `strata container-supervise` for `run -d` and `start`. The store is
 * open only around the two bookkeeping moments, so other commands work while the container runs.
 */
import { accessSync, constants, lstatSync } from 'node:fs';
import { posix } from 'node:path';
import type { Writable } from 'node:stream';
import { resolveInRoot } from '../builder/fs/in-root.js';
import { mkdirInRoot } from '../builder/copy.js';
import type { ContainerRecord } from '../driver/store/metadata.js';
import { etcFiles } from '../runtime/etc-files.js';
import { runContainer, type RunStdio } from '../runtime/runc.js';
import { resolveUser } from '../runtime/user.js';
import type { LayerStore } from '../driver/store/store.js';
import {
  ContainerError,
  containerDir,
  liveState,
  logPath,
  removeContainer,
  resolveContainer,
  runcId,
  saveContainer,
  type StoreAccess,
} from './containers.js';
import { processStart } from '../driver/proc.js';
import { LogWriter } from './logs.js';

/** How the container's stdio is connected. */
export type Attach =
  /** Output to the log only. */
  | { kind: 'detached' }
  /** Output to the log and to these streams; stdin passed through with `stdin`. */
  | { kind: 'attached'; stdout: Writable; stderr: Writable; stdin: boolean }
  /** A terminal: runc makes the pty and relays this process's stdio to it (no log). */
  | { kind: 'tty' };

/**
 * Where `args[0]` is in the rootfs, as the kernel's execve would find it through PATH. Answers
 * Docker's exit code and message when it is missing (127) or not executable (126).
 */
function findCommand(rootfs: string, command: string, env: string[], cwd: string): { code: number; message: string } | null {
  const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '';
  const candidates = command.includes('/')
    ? [posix.resolve(cwd, command)]
    : pathVar.split(':').filter((d) => d !== '').map((d) => posix.join(posix.resolve(cwd, d), command));
  let found: string | undefined;
  for (const c of candidates) {
    const host = resolveInRoot(rootfs, c);
    const st = lstatSync(host, { throwIfNoEntry: false });
    if (st === undefined || st.isDirectory()) continue;
    found = host;
    try {
      accessSync(host, constants.X_OK);
      return null;
    } catch {
      // Not executable: keep looking along PATH, as execvp does.
    }
  }
  if (found !== undefined) return { code: 126, message: `exec: "${command}": permission denied` };
  return command.includes('/')
    ? { code: 127, message: `exec: "${command}": stat ${command}: no such file or directory` }
    : { code: 127, message: `exec: "${command}": executable file not found in $PATH` };
}

export interface StartHooks {
  /** The container runs (or failed to start: `err`); a detached start's CLI waits for this. */
  ready?: (err?: Error) => void;
}

/**
 * Start the container and supervise it until its process ends. Answers its exit status (Docker's
 * 126/127 when the command cannot be run).
 */
export async function superviseContainer(access: StoreAccess, ref: string, attach: Attach, hooks: StartHooks = {}): Promise<number> {
  // Until runc runs, an interrupt cancels the start (checked below); once it ended, the exit is
  // recorded whatever comes. runContainer forwards signals while the container runs.
  let interrupted: NodeJS.Signals | null = null;
  const hold = (sig: NodeJS.Signals) => (interrupted ??= sig);
  const held: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const sig of held) process.on(sig, hold);
  try {
    return await supervise(access, ref, attach, hooks, () => interrupted);
  } finally {
    for (const sig of held) process.off(sig, hold);
  }
}

/** The start's failure, recorded on the container (or the container removed, with --rm). */
async function recordFailedStart(store: LayerStore, rec: ContainerRecord, err: ContainerError): Promise<void> {
  const now = new Date().toISOString();
  rec.state = { status: 'exited', exitCode: err.exitCode, startedAt: now, finishedAt: now, error: err.message };
  if (rec.autoRemove) await removeContainer(store, rec);
  else await saveContainer(store, rec);
}

async function supervise(access: StoreAccess, ref: string, attach: Attach, hooks: StartHooks, interrupted: () => NodeJS.Signals | null): Promise<number> {
  let started: { rec: ContainerRecord; rootfs: string; log: string; dir: string; uid: number; gid: number; gids: number[]; env: string[] };
  try {
    started = await access(async (_images, store) => {
      const rec = await resolveContainer(store, ref);
      const live = liveState(store, rec);
      if (live.status === 'running') throw new ContainerError(`container ${rec.name} is already running`);
      if (live.status === 'dead') throw new ContainerError(`container ${rec.name} is dead (its supervisor was killed); remove it with strata rm -f`);
      let rootfs: string | null = null;
      try {
        rootfs = await store.get(rec.layer);
        const p = rec.process;
        const user = resolveUser(rootfs, p.user);
        const hostname = rec.id.slice(0, 12);
        let env = p.env.some((e) => e.startsWith('HOME=')) ? p.env : [...p.env, `HOME=${user.home}`];
        env = [`HOSTNAME=${hostname}`, ...(p.tty ? ['TERM=xterm'] : []), ...env];
        // Docker makes a missing working directory.
        mkdirInRoot(rootfs, p.cwd);
        const missing = findCommand(rootfs, p.args[0]!, env, p.cwd);
        if (missing !== null) throw new ContainerError(missing.message, missing.code);
        const sig = interrupted();
        if (sig !== null) throw new ContainerError(`interrupted (${sig}) before the container started`, 130);
        rec.state = { status: 'running', pid: process.pid, pidStart: processStart(process.pid) ?? 0, startedAt: new Date().toISOString() };
        await saveContainer(store, rec);
        return { rec, rootfs, log: logPath(store, rec.id), dir: containerDir(store, rec.id), uid: user.uid, gid: user.gid, gids: user.additionalGids, env };
      } catch (err) {
        if (rootfs !== null) await store.put(rec.layer).catch(() => undefined);
        // Whatever stopped the start (a user the image lacks, a working directory that is a file,
        // a mount that failed) is the container's failure to start, as docker's 125.
        const failure = err instanceof ContainerError ? err : new ContainerError((err as Error).message, 125);
        await recordFailedStart(store, rec, failure);
        throw failure;
      }
    });
  } catch (err) {
    hooks.ready?.(err as Error);
    throw err;
  }
  const { rec, rootfs } = started;
  const log = attach.kind === 'tty' ? null : new LogWriter(started.log, attach.kind === 'attached' ? attach : undefined);
  let stdio: RunStdio;
  if (attach.kind === 'tty') stdio = 'inherit';
  else stdio = { stdout: log!.stdout, stderr: log!.stderr, stdin: attach.kind === 'attached' && attach.stdin ? 'inherit' : 'ignore' };
  const hostname = rec.id.slice(0, 12);
  let status: number;
  let failure: Error | undefined;
  try {
    status = await runContainer(
      {
        rootfs,
        process: { args: rec.process.args, env: started.env, cwd: rec.process.cwd, uid: started.uid, gid: started.gid, additionalGids: started.gids, terminal: rec.process.tty },
        hostname,
        network: rec.process.network,
        binds: rec.process.binds,
      },
      {
        // In the container's directory: the store's tmp/ is emptied by every command that opens it.
        bundleParent: started.dir,
        id: runcId(rec),
        stdio,
        files: etcFiles(hostname),
        onSignal: 'forward',
        started: () => hooks.ready?.(),
      },
    );
  } catch (err) {
    failure = err as Error;
    status = 125;
    hooks.ready?.(failure);
  } finally {
    log?.close();
  }
  await access(async (_images, store) => {
    const now = new Date().toISOString();
    const startedAt = rec.state.status === 'running' ? rec.state.startedAt : now;
    // Whatever else happened meanwhile (a commit, a rename), the record is re-read; one removed
    // meanwhile (rm -f) took the mount along and is not brought back.
    const current = await store.meta.containers.get(rec.id);
    if (current === undefined) return;
    await store.put(rec.layer).catch(() => undefined);
    current.state = { status: 'exited', exitCode: status, startedAt, finishedAt: now, ...(failure !== undefined ? { error: failure.message } : {}) };
    if (current.autoRemove) await removeContainer(store, current);
    else await saveContainer(store, current);
  });
  if (failure !== undefined) throw failure;
  return status;
}
