/**
 * Containers in the store: an image's layers, an init layer with the runtime's mount points, and
 * the container's own writable layer on top, recorded in LevelDB with what the container runs and
 * its last known state. Removing a container removes its two layers and leaves the image alone.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerRecord, Op } from '../driver/store/metadata.js';
import type { Images } from '../driver/store/images.js';
import type { LayerStore } from '../driver/store/store.js';
import { mountServed } from '../driver/launch.js';
import { ETC_FILE_PATHS } from '../runtime/etc-files.js';
import { makeInitLayer } from '../runtime/init-layer.js';
import { runcDelete } from '../runtime/runc.js';
import { processAlive } from '../driver/proc.js';
import { randomName, validName } from './names.js';
import { planContainer, type ImageRunConfig, type RunFlags } from './process.js';

/** A request the container's state refuses, or a name or reference that does not resolve. */
export class ContainerError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** The store, opened for one call and closed after it: a container's process must not hold it. */
export type StoreAccess = <T>(fn: (images: Images, store: LayerStore) => Promise<T>) => Promise<T>;

export function containerDir(store: LayerStore, id: string): string {
  return join(store.root, 'containers', id);
}

export function logPath(store: LayerStore, id: string): string {
  return join(containerDir(store, id), 'json.log');
}

/** runc's name for the container. */
export function runcId(rec: ContainerRecord): string {
  return `strata-${rec.id}`;
}

export function mountpointOf(store: LayerStore, rec: ContainerRecord): string {
  return join(store.root, 'mnt', rec.layer);
}

/** A container by full id, unique id prefix, or name (Docker's order). */
export async function resolveContainer(store: LayerStore, ref: string): Promise<ContainerRecord> {
  const byId = await store.meta.containers.get(ref);
  if (byId !== undefined) return byId;
  const all = await store.meta.allContainers();
  const named = all.find((c) => c.name === ref.replace(/^\//, ''));
  if (named !== undefined) return named;
  const prefixed = /^[0-9a-f]+$/.test(ref) ? all.filter((c) => c.id.startsWith(ref)) : [];
  if (prefixed.length === 1) return prefixed[0]!;
  if (prefixed.length > 1) throw new ContainerError(`multiple containers match ${ref}: give more of the id`);
  throw new ContainerError(`No such container: ${ref}`);
}

export async function saveContainer(store: LayerStore, rec: ContainerRecord): Promise<void> {
  await store.meta.write([{ type: 'put', sublevel: store.meta.containers, key: rec.id, value: rec }]);
}

export interface CreateRequest extends RunFlags {
  image: string;
  name?: string | undefined;
  autoRemove: boolean;
}

/** create: the container's layers and record; nothing runs yet. */
export async function createContainer(images: Images, store: LayerStore, req: CreateRequest): Promise<ContainerRecord> {
  let img;
  try {
    img = await images.resolve(req.image);
  } catch {
    throw new ContainerError(`Unable to find image '${req.image}' locally (strata runs local images: build, import or load it first)`, 125);
  }
  const all = await store.meta.allContainers();
  if (req.name !== undefined) {
    if (!validName(req.name)) throw new ContainerError(`Invalid container name (${req.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`, 125);
    const holder = all.find((c) => c.name === req.name);
    if (holder !== undefined) {
      throw new ContainerError(`Conflict. The container name "/${req.name}" is already in use by container "${holder.id}". You have to remove (or rename) that container to be able to reuse that name.`, 125);
    }
  }
  const config = (JSON.parse(img.config) as { config?: ImageRunConfig }).config ?? {};
  const plan = planContainer(config, req);
  for (const b of plan.process.binds) {
    if (!existsSync(b.source)) throw new ContainerError(`invalid mount config: bind source path does not exist: ${b.source}`, 125);
    statSync(b.source);
  }
  const id = randomBytes(32).toString('hex');
  const initLayer = `${id}-init`;
  const top = img.layers[img.layers.length - 1] ?? null;
  const made: string[] = [];
  try {
    await makeInitLayer(store, initLayer, top, ETC_FILE_PATHS);
    made.push(initLayer);
    await store.createReadWrite(id, initLayer);
    made.push(id);
    mkdirSync(containerDir(store, id), { recursive: true, mode: 0o700 });
    const rec: ContainerRecord = {
      id,
      name: req.name ?? randomName(new Set(all.map((c) => c.name))),
      created: new Date().toISOString(),
      image: img.id,
      imageRef: req.image,
      layer: id,
      initLayer,
      process: plan.process,
      cmd: plan.cmd,
      entrypoint: plan.entrypoint,
      stopSignal: plan.stopSignal,
      autoRemove: req.autoRemove,
      state: { status: 'created' },
    };
    await saveContainer(store, rec);
    return rec;
  } catch (err) {
    for (const l of made.reverse()) await store.remove(l).catch(() => undefined);
    rmSync(containerDir(store, id), { recursive: true, force: true });
    throw err;
  }
}

/** What `ps` and the lifecycle commands go by: the record's state checked against the machine. */
export type LiveState =
  | { status: 'created' }
  | { status: 'running'; since: string; mountLost: boolean }
  | { status: 'exited'; exitCode: number; finishedAt: string }
  /** Recorded as running, but the process supervising it is gone (killed). */
  | { status: 'dead' };

export function liveState(store: LayerStore, rec: ContainerRecord): LiveState {
  const s = rec.state;
  if (s.status === 'created') return s;
  if (s.status === 'exited') return { status: 'exited', exitCode: s.exitCode, finishedAt: s.finishedAt };
  if (!processAlive(s.pid, s.pidStart)) return { status: 'dead' };
  return { status: 'running', since: s.startedAt, mountLost: !mountServed(mountpointOf(store, rec)) };
}

/**
 * rm: the container's mounts, runc's state, its layers and its record. The caller has made sure
 * nothing runs in it any more.
 */
export async function removeContainer(store: LayerStore, rec: ContainerRecord): Promise<void> {
  runcDelete(runcId(rec));
  // Every get() of the writable layer (the container's run, `strata mount C`) is released.
  const mountpoint = mountpointOf(store, rec);
  for (let i = 0; i < 1000 && (await store.meta.mounts.get(mountpoint)) !== undefined; i++) await store.put(rec.layer);
  const ops: Op[] = [{ type: 'del', sublevel: store.meta.containers, key: rec.id }];
  await store.meta.write(ops);
  for (const l of [rec.layer, rec.initLayer]) {
    if (await store.exists(l)) await store.remove(l);
  }
  rmSync(containerDir(store, rec.id), { recursive: true, force: true });
}
