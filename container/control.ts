/**
 * What other commands do to a container while it runs or after: stop, kill, rm and commit. The
 * container's supervisor records its exit itself; these commands signal through runc and wait
 * for the supervisor to be gone, without holding the store meanwhile.
 */
import type { Digest } from '../driver/store/digest.js';
import type { ContainerRecord } from '../driver/store/metadata.js';
import type { Images } from '../driver/store/images.js';
import type { LayerStore } from '../driver/store/store.js';
import { containerConfig, withStep, type ContainerConfig } from '../builder/image-config.js';
import type { ImageConfig } from '../driver/store/images.js';
import { runcDelete, runcKill, runcPause } from '../runtime/runc.js';
import { ContainerError, liveState, removeContainer, resolveContainer, runcId, saveContainer, type StoreAccess } from './containers.js';
import { processAlive } from '../driver/proc.js';

async function waitGone(pid: number, start: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (processAlive(pid, start)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

/**
 * A container recorded as running whose supervisor was killed: its processes are ended through
 * runc and it is recorded as exited (137, as a kill), its mount released.
 */
async function reapDead(access: StoreAccess, rec: ContainerRecord): Promise<void> {
  runcDelete(runcId(rec));
  await access(async (_images, store) => {
    const current = await store.meta.containers.get(rec.id);
    if (current === undefined || current.state.status !== 'running') return;
    await store.put(current.layer).catch(() => undefined);
    const now = new Date().toISOString();
    current.state = { status: 'exited', exitCode: 137, startedAt: current.state.startedAt, finishedAt: now, error: 'the process supervising the container was killed' };
    await saveContainer(store, current);
  });
}

/** End the container's process and wait until its supervisor has recorded it (up to 10 s more). */
async function endProcess(access: StoreAccess, rec: ContainerRecord, signal: string, graceMs: number): Promise<void> {
  const s = rec.state;
  if (s.status !== 'running') return;
  if (!processAlive(s.pid, s.pidStart)) return reapDead(access, rec);
  runcKill(runcId(rec), signal);
  if (await waitGone(s.pid, s.pidStart, graceMs)) return;
  runcKill(runcId(rec), 'KILL');
  if (!(await waitGone(s.pid, s.pidStart, 10_000))) throw new ContainerError(`container ${rec.name} did not stop`);
}

/** stop: the image's stop signal, then SIGKILL after `timeoutSec`. Stopping a stopped one is no error. */
export async function stopContainer(access: StoreAccess, ref: string, timeoutSec: number): Promise<void> {
  const rec = await access(async (_images, store) => resolveContainer(store, ref));
  await endProcess(access, rec, rec.stopSignal, timeoutSec * 1000);
}

/** kill: one signal to the container's process (SIGKILL by default). */
export async function killContainer(access: StoreAccess, ref: string, signal: string): Promise<void> {
  const rec = await access(async (_images, store) => {
    const r = await resolveContainer(store, ref);
    const live = liveState(store, r);
    if (live.status !== 'running') throw new ContainerError(`Cannot kill container: ${ref}: container ${r.id.slice(0, 12)} is not running`);
    return r;
  });
  if (!runcKill(runcId(rec), signal.replace(/^SIG/i, '').toUpperCase())) throw new ContainerError(`Cannot kill container: ${ref}: runc could not send ${signal}`);
}

/** rm: a running container only with `force` (it is killed first). */
export async function rmContainer(access: StoreAccess, ref: string, force: boolean): Promise<void> {
  const rec = await access(async (_images, store) => {
    const r = await resolveContainer(store, ref);
    const live = liveState(store, r);
    if (live.status === 'running' && !force) {
      throw new ContainerError(`You cannot remove a running container ${r.id}. Stop the container before attempting removal or force remove`);
    }
    return r;
  });
  if (rec.state.status === 'running') {
    if (processAlive(rec.state.pid, rec.state.pidStart)) await endProcess(access, rec, 'KILL', 10_000);
    else await reapDead(access, rec);
  }
  await access(async (_images, store) => {
    // The supervisor of a --rm container may have removed it meanwhile.
    const current = await store.meta.containers.get(rec.id);
    if (current === undefined) return;
    // Started again between the two looks (another `strata start`): not removed under it.
    if (liveState(store, current).status === 'running') throw new ContainerError(`container ${current.name} was started meanwhile; try again`);
    await removeContainer(store, current);
  });
}

/**
 * commit: the container's writable layer, as a diff against the image, becomes a new layer over
 * the image's; the config is the container's (Env, Cmd, Entrypoint, WorkingDir, User).
 */
export async function commitContainer(images: Images, store: LayerStore, ref: string, opts: { tag: string | null; message?: string | undefined; author?: string | undefined }): Promise<Digest> {
  const rec = await resolveContainer(store, ref);
  let img;
  try {
    img = await images.resolve(rec.image);
  } catch {
    throw new ContainerError(`the image of container ${rec.name} (${rec.image}) is gone; it cannot be committed`);
  }
  const top = img.layers[img.layers.length - 1] ?? null;
  // A running container is paused (cgroup freezer) while its layer is read, as docker commit does.
  const paused = liveState(store, rec).status === 'running' && runcPause(runcId(rec), true);
  let layer;
  try {
    layer = await store.importLayer(await store.diff(rec.layer), top);
  } finally {
    if (paused) runcPause(runcId(rec), false);
  }
  const base = JSON.parse(img.config) as ImageConfig;
  const created = new Date().toISOString();
  const next = withStep(base, rec.process.args.join(' '), layer.diffId!, created);
  const last = next.history[next.history.length - 1]!;
  if (opts.message !== undefined) last.comment = opts.message;
  if (opts.author !== undefined) {
    next.author = opts.author;
    last.author = opts.author;
  }
  next.container = rec.id;
  const c: ContainerConfig = containerConfig(next);
  c.Env = rec.process.env;
  c.Cmd = rec.cmd;
  c.Entrypoint = rec.entrypoint;
  c.WorkingDir = rec.process.cwd === '/' ? '' : rec.process.cwd;
  c.User = rec.process.user;
  const added = await images.add(JSON.stringify(next), opts.tag === null ? [] : [opts.tag]);
  return added.id;
}
