/**
 * The build's use of the layer store: a writable layer over the current chain, mounted through
 * the strata driver (a process of its own, so this one may use the mount freely), then committed
 * as a read-only layer through the store's diff and applyDiff, the way Docker commits a build
 * container. Nothing is left behind on failure: the mount is released and the writable layers
 * removed.
 */
import { randomBytes } from 'node:crypto';
import type { LayerRecord } from '../driver/store/metadata.js';
import type { LayerStore } from '../driver/store/store.js';
import { UpperRoot } from './fs/root.js';
import { makeInitLayer } from '../runtime/init-layer.js';

export interface Workspace {
  /** The merged rootfs, writable. */
  rootfs: string;
  /** The writable layer's id. */
  id: string;
}

function newId(): string {
  return randomBytes(32).toString('hex');
}

export class BuildLayers {
  constructor(
    private readonly store: LayerStore,
    private readonly sourceDateEpoch: number | undefined,
  ) {}

  /**
   * Run `work` on a writable rootfs over `parent` (the top layer, or null for scratch), then commit
   * what it changed as a new layer over `parent`. With `init`, the rootfs also shows the mount
   * points a runtime needs (Docker's init layer), kept out of the commit. `work` answers false to
   * discard the changes (the step failed); the commit is then skipped and null returned.
   */
  async withWorkspace(
    parent: string | null,
    opts: { init: boolean; files?: string[] },
    work: (ws: Workspace) => Promise<boolean>,
  ): Promise<LayerRecord | null> {
    const made: string[] = [];
    let mounted: string | null = null;
    try {
      let below = parent;
      if (opts.init) {
        const initId = newId();
        await makeInitLayer(this.store, initId, parent, opts.files ?? []);
        made.push(initId);
        below = initId;
      }
      const id = newId();
      await this.store.createReadWrite(id, below);
      made.push(id);
      const rootfs = await this.store.get(id);
      mounted = id;
      const keep = await work({ rootfs, id });
      await this.store.put(id);
      mounted = null;
      if (!keep) return null;
      const tar = await this.store.diff(id, this.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: this.sourceDateEpoch });
      return await this.store.importLayer(tar, parent);
    } finally {
      if (mounted !== null) await this.store.put(mounted).catch(() => undefined);
      for (const id of made.reverse()) await this.store.remove(id).catch(() => undefined);
    }
  }

  /**
   * Like withWorkspace, without a mount: `work` writes the new layer's upper directory directly,
   * reading the layers below in this process (see fs/root.ts). For steps that only add files.
   */
  async withUpper(parent: string | null, work: (root: UpperRoot) => Promise<boolean>): Promise<LayerRecord | null> {
    const id = newId();
    await this.store.createReadWrite(id, parent);
    try {
      const lowers = parent === null ? [] : await this.store.lowerDirs(parent);
      const root = new UpperRoot(this.store.diffDir(id), lowers);
      let keep: boolean;
      try {
        keep = await work(root);
      } finally {
        root.close();
      }
      if (!keep) return null;
      const tar = await this.store.diff(id, this.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: this.sourceDateEpoch });
      return await this.store.importLayer(tar, parent);
    } finally {
      await this.store.remove(id).catch(() => undefined);
    }
  }

  /** Run `fn` with the read-only rootfs of the chain topped by `top` (an empty dir for none). */
  async withRootfs<T>(top: string | null, fn: (rootfs: string) => Promise<T>): Promise<T> {
    if (top === null) return fn(this.store.emptyDir());
    const rootfs = await this.store.get(top);
    try {
      return await fn(rootfs);
    } finally {
      await this.store.put(top);
    }
  }
}
