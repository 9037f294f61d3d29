/**
 * Docker's GraphDriver calls, each on the layer store's operation of the same name: the store is
 * the only code that touches layers, for dockerd as for the CLI. dockerd names layers itself
 * (64 hex digits, a container's init layer with `-init`), and Get/Put pairs are counted by the
 * store's mount records, so a restarted server still knows what dockerd holds.
 */
import type { Readable } from 'node:stream';
import { mountServed } from '../launch.js';
import { askDriverStats, parseDriverStats } from '../driver-stats.js';
import { LayerStore, StoreError } from '../store/store.js';
import { KeyedLock } from './keyed-lock.js';

/** A change as dockerd's Changes reply gives it: Kind 0 modified, 1 added, 2 deleted. */
export interface DockerChange {
  Path: string;
  Kind: 0 | 1 | 2;
}

const KIND = { C: 0, A: 1, D: 2 } as const;

/** How long Status waits for the mounts' drivers to write their counters. */
const STATUS_WAIT_MS = 1000;

export class GraphDriver {
  private readonly locks = new KeyedLock();

  constructor(readonly store: LayerStore) {}

  /**
   * A dockerd (re)starting: the mounts a previous dockerd left are its Gets that no Put will
   * balance, since dockerd forgets them when it stops. They are unmounted; one still busy stays
   * (and a later Put or Remove reports it).
   */
  async init(): Promise<void> {
    for (const m of await this.store.meta.allMounts()) {
      if (m.layer === null) continue;
      const id = m.layer;
      await this.locks.run(id, async () => {
        for (let refs = m.refs; refs > 0; refs--) await this.store.put(id);
      }).catch(() => undefined);
    }
  }

  create(id: string, parent: string): Promise<void> {
    return this.locks.run(id, () => this.store.create(id, parent === '' ? null : parent));
  }

  createReadWrite(id: string, parent: string): Promise<void> {
    return this.locks.run(id, () => this.store.createReadWrite(id, parent === '' ? null : parent));
  }

  /** Removing a layer that is already gone succeeds, as overlay2's does: dockerd retries removals. */
  remove(id: string): Promise<void> {
    return this.locks.run(id, async () => {
      if (await this.store.exists(id)) await this.store.remove(id);
    });
  }

  get(id: string): Promise<string> {
    return this.locks.run(id, () => this.store.get(id));
  }

  put(id: string): Promise<void> {
    return this.locks.run(id, () => this.store.put(id));
  }

  exists(id: string): Promise<boolean> {
    return this.store.exists(id);
  }

  /** The layer's tar against its parent (dockerd only asks for the layer's own parent). */
  async diff(id: string, parent: string): Promise<Readable> {
    await this.checkParent(id, parent);
    return this.store.diff(id);
  }

  /**
   * The store's changes, plus every directory above one as modified: dockerd's answer with its
   * own union drivers, whose Changes compare the two mounted trees (Docker's naive diff, used for
   * fuse-overlayfs, and for overlay2 on kernels with redirect_dir, Debian's among them).
   */
  async changes(id: string, parent: string): Promise<DockerChange[]> {
    await this.checkParent(id, parent);
    const changes = await this.store.changes(id);
    const listed = new Set(changes.map((c) => c.path));
    const out: DockerChange[] = changes.map((c) => ({ Path: c.path, Kind: KIND[c.kind] }));
    for (const c of changes) {
      for (let dir = c.path.slice(0, c.path.lastIndexOf('/')); dir !== ''; dir = dir.slice(0, dir.lastIndexOf('/'))) {
        if (listed.has(dir)) break;
        listed.add(dir);
        out.push({ Path: dir, Kind: KIND.C });
      }
    }
    return out.sort((a, b) => (a.Path < b.Path ? -1 : a.Path > b.Path ? 1 : 0));
  }

  applyDiff(id: string, parent: string, tar: Readable): Promise<number> {
    return this.locks.run(id, async () => {
      await this.checkParent(id, parent);
      return this.store.applyDiff(id, tar);
    });
  }

  async diffSize(id: string, parent: string): Promise<number> {
    await this.checkParent(id, parent);
    return this.store.diffSize(id);
  }

  /** What `docker info` shows under Storage Driver. */
  async status(): Promise<Array<[string, string]>> {
    const layers = await this.store.meta.allLayers();
    const mounts = (await this.store.meta.allMounts()).filter((m) => m.layer !== null);
    // A driver that died leaves its state behind; its pid may be another process's by now.
    const served = mounts.map((m) => m.mountpoint).filter((mp) => mountServed(mp));
    const stats = [...(await askDriverStats(served, STATUS_WAIT_MS)).values()].map(parseDriverStats);
    const lookups = stats.reduce((n, s) => n + s.cache.lookups, 0);
    const hits = stats.reduce((n, s) => n + s.cache.hits, 0);
    return [
      ['Root Dir', this.store.root],
      ['Layers', String(layers.length)],
      ['Active Mounts', String(mounts.length)],
      ['Dentry Cache Hit Rate', lookups === 0 ? 'n/a' : `${((100 * hits) / lookups).toFixed(1)}% of ${lookups} lookups`],
      ['Copy-ups', String(stats.reduce((n, s) => n + s.copyUps, 0))],
      ['Bytes Copied Up', String(stats.reduce((n, s) => n + s.bytesCopiedUp, 0))],
    ];
  }

  /** What `docker inspect` shows as GraphDriver.Data. */
  async metadata(id: string): Promise<Record<string, string>> {
    const l = await this.store.layer(id);
    if (l === undefined) throw new StoreError(`no layer ${id}`);
    const lowers = l.parent === null ? [] : await this.store.lowerDirs(l.parent);
    return {
      ...(l.rw ? { UpperDir: this.store.diffDir(id) } : { LayerDir: this.store.diffDir(id) }),
      ...(lowers.length > 0 ? { LowerDir: lowers.join(':') } : {}),
      MergedDir: `${this.store.root}/mnt/${id}`,
    };
  }

  private async checkParent(id: string, parent: string): Promise<void> {
    const l = await this.store.layer(id);
    if (l === undefined) throw new StoreError(`no layer ${id}`);
    if (parent !== '' && parent !== l.parent) throw new StoreError(`layer ${id} has parent ${l.parent ?? 'none'}, not ${parent}`);
  }
}
