/**
 * The layer store: layers as directories a union mounts, metadata in LevelDB, and the
 * storage-driver contract Docker's graph drivers follow (create, createReadWrite, remove, exists,
 * applyDiff, diff, changes, diffSize; get/put mount through the strata driver). The CLI and,
 * later, the Docker plugin touch layers only through this class.
 *
 * On disk, under the store root:
 *   db/                      LevelDB: layers, images, tags, mounts
 *   layers/<id>/diff/        the layer's content (a lowerdir; for a writable layer, the upperdir)
 *   layers/<id>/work/        a writable layer's overlay work dir
 *   layers/<id>/tar-split    a read-only layer's tar minus contents (reproduces its DiffID)
 *   tmp/                     staging; what a crashed command left here is removed on open
 *
 * Crash safety: content is unpacked in tmp/, flushed (syncfs), renamed into layers/ and only then
 * recorded in one batch. A crash leaves at worst a directory with no record, which `check`
 * reports and `prune` removes; never a record without its content.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { constants as fsc, existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { sys } from '../native/sys.js';
import { errnoName } from '../fs/errno.js';
import { applyLayer, type ApplyResult } from './apply.js';
import { chainId, hexOf } from './digest.js';
import { changesUpper, diffUpper, replay, type Change } from './diff.js';
import { mountedPaths, mountServed, startDriver, stopMount } from '../launch.js';
import type { MountConfig } from '../mount-config.js';
import { Metadata, type LayerRecord, type MountRecord, type Op } from './metadata.js';
import { readSplit } from './tar-split.js';

export { StoreError } from './errors.js';
import { StoreError } from './errors.js';

/** What a layer id may be: a directory name under layers/ and mnt/, never a path. */
export function isLayerId(id: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id);
}

export interface StoreOptions {
  /** Told once when another strata command holds the store and this one waits. */
  onWait?: () => void;
}

export class LayerStore {
  private constructor(
    readonly root: string,
    readonly meta: Metadata,
  ) {}

  static async open(root: string, opts: StoreOptions = {}): Promise<LayerStore> {
    for (const d of ['', 'layers', 'tmp', 'mnt']) mkdirSync(join(root, d), { recursive: true, mode: 0o700 });
    const meta = await Metadata.open(join(root, 'db'), opts.onWait ?? (() => undefined));
    const store = new LayerStore(root, meta);
    // Holding the database lock, nothing else is staging: leftovers are a crashed command's.
    for (const name of readdirSync(join(root, 'tmp'))) rmSync(join(root, 'tmp', name), { recursive: true, force: true });
    return store;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.removals]);
    await this.meta.close();
  }

  layerDir(id: string): string {
    return join(this.root, 'layers', id);
  }

  diffDir(id: string): string {
    return join(this.layerDir(id), 'diff');
  }

  async layer(id: string): Promise<LayerRecord | undefined> {
    return this.meta.layers.get(id);
  }

  async exists(id: string): Promise<boolean> {
    return (await this.layer(id)) !== undefined;
  }

  private async must(id: string): Promise<LayerRecord> {
    const l = await this.layer(id);
    if (l === undefined) throw new StoreError(`no such layer: ${id}`);
    return l;
  }

  /** Layer ids from `id` down to the base, top first. */
  async chain(id: string): Promise<LayerRecord[]> {
    const out: LayerRecord[] = [];
    for (let cur: string | null = id; cur !== null; ) {
      const l = await this.must(cur);
      out.push(l);
      cur = l.parent;
      if (out.length > 1000) throw new StoreError(`layer ${id}: parent chain loops`);
    }
    return out;
  }

  /** Directories to mount for `id`, top first. */
  async lowerDirs(id: string): Promise<string[]> {
    return (await this.chain(id)).map((l) => this.diffDir(l.id));
  }

  private checkId(id: string): void {
    if (!isLayerId(id)) throw new StoreError(`bad layer id ${JSON.stringify(id)}`);
  }

  private async checkNew(id: string, parent: string | null): Promise<void> {
    this.checkId(id);
    if (await this.exists(id)) throw new StoreError(`layer ${id} already exists`);
    if (parent !== null) await this.must(parent);
  }

  /** An empty read-only layer, to be filled by applyDiff. */
  async create(id: string, parent: string | null): Promise<void> {
    await this.checkNew(id, parent);
    await this.commitDir(id, (dir) => mkdirSync(join(dir, 'diff'), { mode: 0o755 }));
    await this.recordNew(id, [{ type: 'put', sublevel: this.meta.layers, key: id, value: { id, parent, rw: false, created: new Date().toISOString(), refs: 0 } }]);
  }

  /**
   * A writable layer over `parent`: a container's or a build step's upper. With `mount`, the
   * mount that owns it is recorded in the same batch, so the layer is never without its owner.
   */
  async createReadWrite(id: string, parent: string | null, mount?: MountRecord): Promise<void> {
    await this.checkNew(id, parent);
    await this.commitDir(id, (dir) => {
      mkdirSync(join(dir, 'diff'), { mode: 0o755 });
      mkdirSync(join(dir, 'work'), { mode: 0o700 });
    });
    const ops: Op[] = [{ type: 'put', sublevel: this.meta.layers, key: id, value: { id, parent, rw: true, created: new Date().toISOString(), refs: 0 } }];
    if (mount !== undefined) ops.push({ type: 'put', sublevel: this.meta.mounts, key: mount.mountpoint, value: mount });
    await this.recordNew(id, ops);
  }

  /**
   * Record a layer whose directory is already in layers/. If the record cannot be written (the
   * database's disk is full), the directory goes again: a failed command leaves no orphan for
   * check to report, and the space it took is free for what the user does next. Only when the
   * record is known to be absent, though: the write failed for want of room, or the database
   * reopened after the failure and the record does not show. Otherwise the directory stays, an
   * orphan that check reports and prune removes.
   */
  private async recordNew(id: string, ops: Op[]): Promise<void> {
    try {
      await this.meta.write(ops);
    } catch (err) {
      const absent =
        this.meta.lastFailureWasSpace || (!this.meta.unusable && (await this.layer(id).catch(() => null)) === undefined);
      if (!absent) throw err;
      try {
        this.discard(id);
      } catch {
        // Best effort: what stays is an orphan directory, which prune removes.
      }
      throw err;
    }
  }

  /** Build a layer directory in tmp/, flush it, and move it into layers/<id>. */
  private async commitDir(id: string, build: (dir: string) => void | Promise<void>): Promise<'new' | 'existed'> {
    const staging = this.tmpName();
    mkdirSync(staging, { mode: 0o700 });
    try {
      await build(staging);
      flush(staging);
      const target = this.layerDir(id);
      if (existsSync(target)) {
        rmSync(staging, { recursive: true, force: true });
        return 'existed';
      }
      renameSync(staging, target);
      flush(join(this.root, 'layers'));
      return 'new';
    } catch (err) {
      rmSync(staging, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Unpack a layer tar into the empty read-only layer `id` (made by create). Returns the bytes of
   * content unpacked. The layer's DiffID and ChainID are recorded.
   */
  async applyDiff(id: string, tar: Readable): Promise<number> {
    const l = await this.must(id);
    if (l.rw) throw new StoreError(`layer ${id} is writable; apply diffs to read-only layers`);
    if (l.diffId !== undefined) throw new StoreError(`layer ${id} already has content`);
    const parents = l.parent === null ? [] : await this.lowerDirs(l.parent);
    const parentChain = l.parent === null ? null : (await this.must(l.parent)).chainId ?? null;
    const staging = this.tmpName();
    mkdirSync(join(staging, 'diff'), { recursive: true, mode: 0o755 });
    let result: ApplyResult;
    try {
      result = await applyLayer(tar, join(staging, 'diff'), parents, join(staging, 'tar-split'));
      flush(staging);
      // The unpacked diff trades places with the empty one in one step (layers/<id> always has a
      // diff), then the split joins it; the record, written last, says the content is there.
      const swap = sys.renameAt2(sys.AT_FDCWD, join(staging, 'diff'), sys.AT_FDCWD, this.diffDir(id), sys.RENAME_EXCHANGE);
      if (swap < 0) throw new StoreError(`cannot move the layer into place (${errnoName(swap)})`);
      renameSync(join(staging, 'tar-split'), join(this.layerDir(id), 'tar-split'));
      flush(this.layerDir(id));
      rmSync(staging, { recursive: true, force: true });
    } catch (err) {
      rmSync(staging, { recursive: true, force: true });
      throw err;
    }
    const chain = parentChain === null && l.parent !== null ? null : chainId(parentChain, result.diffId);
    await this.meta.write([{ type: 'put', sublevel: this.meta.layers, key: id, value: {
      ...l,
      diffId: result.diffId,
      ...(chain !== null ? { chainId: chain } : {}),
      size: result.size,
      tarBytes: result.tarBytes,
    } }]);
    return result.size;
  }

  /**
   * Content-addressed import: unpack `tar` over `parent` into a layer named by its ChainID, or
   * find that layer already stored. Returns its record; a new layer's id is added to `created`.
   */
  async importLayer(tar: Readable, parent: string | null, created?: string[]): Promise<LayerRecord> {
    const parentRec = parent === null ? null : await this.must(parent);
    if (parentRec !== null && parentRec.chainId === undefined) throw new StoreError(`layer ${parent} has no content yet`);
    const parents = parent === null ? [] : await this.lowerDirs(parent);
    let result: ApplyResult | undefined;
    const staging = this.tmpName();
    mkdirSync(join(staging, 'diff'), { recursive: true, mode: 0o755 });
    let id: string;
    try {
      result = await applyLayer(tar, join(staging, 'diff'), parents, join(staging, 'tar-split'));
      const chain = chainId(parentRec?.chainId ?? null, result.diffId);
      id = hexOf(chain);
      const known = await this.layer(id);
      if (known !== undefined) {
        rmSync(staging, { recursive: true, force: true });
        return known;
      }
      flush(staging);
      const target = this.layerDir(id);
      // A directory with no record is a crashed import's: this one replaces it.
      if (existsSync(target)) rmSync(target, { recursive: true, force: true });
      renameSync(staging, target);
      flush(join(this.root, 'layers'));
    } catch (err) {
      rmSync(staging, { recursive: true, force: true });
      throw err;
    }
    const rec: LayerRecord = {
      id,
      parent,
      rw: false,
      created: new Date().toISOString(),
      diffId: result.diffId,
      chainId: chainId(parentRec?.chainId ?? null, result.diffId),
      size: result.size,
      tarBytes: result.tarBytes,
      refs: 0,
    };
    await this.recordNew(id, [{ type: 'put', sublevel: this.meta.layers, key: id, value: rec }]);
    created?.push(id);
    return rec;
  }

  /** The layer as a tar: a stored layer's exact bytes, or a writable layer's changes. */
  async diff(id: string, opts: { sourceDateEpoch?: number } = {}): Promise<Readable> {
    const l = await this.must(id);
    if (!l.rw) {
      if (l.diffId === undefined) return Readable.from([Buffer.alloc(1024)]);
      return replay(readSplit(join(this.layerDir(id), 'tar-split')), this.diffDir(id));
    }
    const parents = l.parent === null ? [] : await this.lowerDirs(l.parent);
    return diffUpper(this.diffDir(id), parents, opts);
  }

  /** Remove a layer: refused while an image, a child layer or a mount uses it. */
  async remove(id: string): Promise<void> {
    const l = await this.must(id);
    if (l.refs > 0) throw new StoreError(`layer ${id} is used by ${l.refs} image(s)`);
    for (const other of await this.meta.allLayers()) {
      if (other.parent === id) throw new StoreError(`layer ${id} is the parent of layer ${other.id}`);
    }
    for (const m of await this.meta.allMounts()) {
      if (m.layer === id || m.rwLayer === id) throw new StoreError(`layer ${id} is mounted at ${m.mountpoint}`);
    }
    await this.forget([{ type: 'del', sublevel: this.meta.layers, key: id }], id);
  }

  /**
   * Undo a load or pull that failed: of the layers it added (`created`, oldest first), those no
   * image took up go again, newest first (a child before its parent). Best effort: what cannot
   * go stays for prune.
   */
  async dropUnused(created: string[]): Promise<void> {
    for (const id of [...created].reverse()) {
      // A database that stopped taking writes (a full disk) cannot be read either: the caller's
      // own error is the one to report.
      const l = await this.layer(id).catch(() => undefined);
      if (l !== undefined && l.refs === 0) await this.remove(id).catch(() => undefined);
    }
  }

  /**
   * Records first (durably), then the directory: a crash in between leaves an orphan directory
   * that check reports and prune reclaims, never a record without its directory.
   */
  private async forget(ops: Op[], layerId: string | null): Promise<void> {
    await this.meta.write(ops);
    if (layerId !== null) this.discard(layerId);
  }

  /**
   * Take layers/<id> away: gone from layers/ at once, its files go on the threadpool while the
   * caller carries on (a build drops a writable layer per step). close() waits for them; tmp/ is
   * emptied at open anyway.
   */
  private discard(id: string): void {
    if (!existsSync(this.layerDir(id))) return;
    const doomed = this.tmpName();
    renameSync(this.layerDir(id), doomed);
    const removal = rm(doomed, { recursive: true, force: true }).finally(() => this.removals.delete(removal));
    this.removals.add(removal);
  }

  /** A new name in tmp/, where work in progress lives (emptied at every open). */
  private tmpName(): string {
    return join(this.root, 'tmp', randomBytes(8).toString('hex'));
  }

  /** Directory removals still running (see discard). */
  private readonly removals = new Set<Promise<void>>();

  async addMount(rec: MountRecord): Promise<void> {
    await this.meta.write([{ type: 'put', sublevel: this.meta.mounts, key: rec.mountpoint, value: rec }]);
  }

  /** Forget a mount, and drop the writable layer made for it. */
  async dropMount(mountpoint: string): Promise<MountRecord | undefined> {
    const rec = await this.meta.mounts.get(mountpoint);
    if (rec === undefined) return undefined;
    const ops: Op[] = [{ type: 'del', sublevel: this.meta.mounts, key: mountpoint }];
    const rw = rec.rwLayer !== null && (await this.exists(rec.rwLayer)) ? rec.rwLayer : null;
    if (rw !== null) ops.push({ type: 'del', sublevel: this.meta.layers, key: rw });
    // The mount and its writable layer go in one batch.
    await this.forget(ops, rw);
    // A mountpoint the store made for the mount goes with it.
    if (dirname(mountpoint) === join(this.root, 'mnt')) {
      try {
        rmdirSync(mountpoint);
      } catch {
        // Still busy or not empty: left for the user.
      }
    }
    return rec;
  }

  /** Mount records whose mountpoint has nothing mounted (the command or its driver died). */
  async staleMounts(): Promise<MountRecord[]> {
    const mounted = mountedPaths();
    return (await this.meta.allMounts()).filter((m) => !mounted.has(m.mountpoint));
  }

  /**
   * get: mount layer `id` (a read-only layer with the layers below it; a writable layer over its
   * parents) under the store and answer the path. Repeated gets share one mount; each is
   * balanced by a put().
   */
  async get(id: string): Promise<string> {
    const l = await this.must(id);
    const mountpoint = join(this.root, 'mnt', id);
    const rec = await this.meta.mounts.get(mountpoint);
    if (rec !== undefined && mountServed(mountpoint)) {
      await this.meta.write([{ type: 'put', sublevel: this.meta.mounts, key: mountpoint, value: { ...rec, refs: rec.refs + 1 } }]);
      return mountpoint;
    }
    // No mount, or a record whose driver died: mount afresh. A dead driver's mount is still in
    // the mount table (answering ENOTCONN) and is detached first.
    if (mountedPaths().has(mountpoint)) await stopMount(mountpoint, true);
    if (rec !== undefined) await this.meta.write([{ type: 'del', sublevel: this.meta.mounts, key: mountpoint }]);
    const parents = l.parent === null ? [] : await this.lowerDirs(l.parent);
    const lowers = l.rw ? (parents.length > 0 ? parents : [this.emptyDir()]) : [this.diffDir(id), ...parents];
    mkdirSync(mountpoint, { recursive: true, mode: 0o755 });
    const config: MountConfig = {
      mountpoint,
      lowers,
      upper: l.rw ? this.diffDir(id) : undefined,
      work: l.rw ? join(this.layerDir(id), 'work') : undefined,
      fuseOptions: l.rw ? [] : ['ro'],
      cacheTimeout: 1,
      attrTimeout: 1,
      cacheEntries: 500_000,
      debug: false,
      storeRoot: this.root,
    };
    await this.addMount({ mountpoint, image: null, rwLayer: null, refs: 1, layer: id });
    try {
      await startDriver(config);
    } catch (err) {
      await this.dropMount(mountpoint);
      throw new StoreError(`cannot mount layer ${id}: ${(err as Error).message}`);
    }
    return mountpoint;
  }

  /** put: release a get(); the last one unmounts. */
  async put(id: string): Promise<void> {
    const mountpoint = join(this.root, 'mnt', id);
    const rec = await this.meta.mounts.get(mountpoint);
    if (rec === undefined) throw new StoreError(`layer ${id} is not mounted`);
    if (rec.refs > 1) {
      await this.meta.write([{ type: 'put', sublevel: this.meta.mounts, key: mountpoint, value: { ...rec, refs: rec.refs - 1 } }]);
      return;
    }
    if (mountedPaths().has(mountpoint)) {
      // A mount whose driver died can only be detached.
      const r = await stopMount(mountpoint, !mountServed(mountpoint));
      if (r < 0) throw new StoreError(`cannot unmount layer ${id} at ${mountpoint} (${errnoName(r)}; still in use?)`);
    }
    await this.dropMount(mountpoint);
  }

  /** changes: what layer `id` adds, changes and deletes over its parent, as docker diff shows. */
  async changes(id: string): Promise<Change[]> {
    const l = await this.must(id);
    const parents = l.parent === null ? [] : await this.lowerDirs(l.parent);
    return changesUpper(this.diffDir(id), parents);
  }

  /** diffSize: the bytes diff() would give. */
  async diffSize(id: string): Promise<number> {
    const l = await this.must(id);
    if (!l.rw) return l.tarBytes ?? 1024;
    let n = 0;
    for await (const c of await this.diff(id)) n += (c as Buffer).length;
    return n;
  }

  /** A directory with nothing in it, the lower layer of an image without layers. */
  emptyDir(): string {
    const dir = join(this.root, 'empty');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    return dir;
  }

  /** Layer directories with no record (a crash between rename and batch). */
  orphanDirs(records: Set<string>): string[] {
    return readdirSync(join(this.root, 'layers')).filter((name) => !records.has(name));
  }
}

/** Flush everything written under `path` (one syncfs for the whole filesystem). */
function flush(path: string): void {
  const fd = sys.openAt(sys.AT_FDCWD, path, fsc.O_RDONLY | sys.O_DIRECTORY, 0);
  if (fd < 0) throw new StoreError(`cannot open ${path} to flush it`);
  try {
    const r = sys.syncfs(fd);
    if (r < 0) throw new StoreError(`cannot flush ${path} (${errnoName(r)})`);
  } finally {
    sys.close(fd);
  }
}
