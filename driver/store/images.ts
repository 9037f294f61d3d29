/**
 * Images over the layer store: a config (whose digest is the image id), the list of its layers
 * and the tags naming it. Each change is one LevelDB batch, which also keeps every layer's
 * `refs` (how many images list it) exact; `prune` frees layers no image, child or mount uses.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { chainIds, isDigest, sha256, type Digest } from './digest.js';
import type { ImageRecord, LayerRecord, Op } from './metadata.js';
import { LayerStore, StoreError } from './store.js';
import { replay } from './diff.js';
import { readSplit } from './tar-split.js';

export interface ImageConfig {
  architecture: string;
  os: string;
  created: string;
  config: Record<string, unknown>;
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history: Array<{ created: string; created_by?: string; author?: string; comment?: string; empty_layer?: boolean }>;
  [key: string]: unknown;
}

const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const HOST_NAME = /^[a-zA-Z0-9.-]+(?::[0-9]+)?\/.+$/;
const TAG = /^[\w][\w.-]{0,127}$/;

/** NAME[:TAG] in Docker's grammar, with `latest` as the default tag. */
export function parseTag(ref: string): string {
  let name = ref;
  let tag = 'latest';
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) {
    name = ref.slice(0, colon);
    tag = ref.slice(colon + 1);
  }
  // Docker's familiar form: docker.io/library/x is x, docker.io/u/x is u/x.
  if (name.startsWith('docker.io/library/')) name = name.slice('docker.io/library/'.length);
  else if (name.startsWith('docker.io/')) name = name.slice('docker.io/'.length);
  const bare = HOST_NAME.test(name) && name.split('/')[0]!.match(/[.:]|^localhost$/) ? name.slice(name.indexOf('/') + 1) : name;
  if (!NAME.test(bare) || name.length > 255) throw new StoreError(`invalid image name ${JSON.stringify(ref)}: use lowercase letters, digits and . _ - /`);
  if (!TAG.test(tag)) throw new StoreError(`invalid tag in ${JSON.stringify(ref)}`);
  return `${name}:${tag}`;
}

export function goArch(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch === 'ia32' ? '386' : process.arch;
}

export class Images {
  constructor(readonly store: LayerStore) {}

  private get meta() {
    return this.store.meta;
  }

  /** An image by tag (NAME[:TAG]), full id, or unique id prefix of at least 4 hex digits. */
  async resolve(ref: string): Promise<ImageRecord> {
    const byTag = await this.tagged(ref);
    if (byTag !== undefined) return byTag;
    const hex = ref.startsWith('sha256:') ? ref.slice(7) : ref;
    if (/^[0-9a-f]{4,64}$/.test(hex)) {
      const matches = (await this.meta.allImages()).filter((i) => i.id.slice(7).startsWith(hex));
      if (matches.length === 1) return matches[0]!;
      if (matches.length > 1) throw new StoreError(`image id prefix ${hex} is ambiguous`);
    }
    throw new StoreError(`no such image: ${ref}`);
  }

  private async tagged(ref: string): Promise<ImageRecord | undefined> {
    let tag: string;
    try {
      tag = parseTag(ref);
    } catch {
      return undefined;
    }
    const id = await this.meta.tags.get(tag);
    return id === undefined ? undefined : this.meta.images.get(id);
  }

  async tagsOf(id: string): Promise<string[]> {
    return (await this.meta.allTags()).filter(([, v]) => v === id).map(([k]) => k);
  }

  /** Layer ids of a config's DiffIDs, which must all be stored (bottom first). */
  async layersFor(diffIds: Digest[]): Promise<string[]> {
    const ids = chainIds(diffIds).map((c) => c.slice(7));
    for (const id of ids) if (!(await this.store.exists(id))) throw new StoreError(`layer ${id.slice(0, 12)} is not in the store`);
    return ids;
  }

  /**
   * Record an image (config bytes as given) over stored layers, and point `tags` at it, in one
   * batch. Adding an image that exists only moves the tags.
   */
  async add(configText: string, tags: string[]): Promise<ImageRecord> {
    const config = JSON.parse(configText) as ImageConfig;
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (!Array.isArray(diffIds) || !diffIds.every((d) => typeof d === 'string' && isDigest(d))) {
      throw new StoreError('image config has no valid rootfs.diff_ids');
    }
    const layers = await this.layersFor(diffIds);
    const id = sha256(configText);
    const existing = await this.meta.images.get(id);
    const ops: Op[] = [];
    const record: ImageRecord = existing ?? { id, config: configText, layers, created: config.created ?? new Date().toISOString() };
    if (existing === undefined) {
      ops.push({ type: 'put', sublevel: this.meta.images, key: id, value: record });
      for (const lid of new Set(layers)) {
        const l = (await this.store.layer(lid))!;
        ops.push({ type: 'put', sublevel: this.meta.layers, key: lid, value: { ...l, refs: l.refs + 1 } });
      }
    }
    for (const t of tags) {
      ops.push({ type: 'put', sublevel: this.meta.tags, key: t, value: id });
    }
    await this.batch(ops);
    return record;
  }

  private async batch(ops: Op[]): Promise<void> {
    await this.meta.write(ops);
  }

  async tag(ref: string, target: string): Promise<void> {
    const img = await this.resolve(ref);
    await this.batch([{ type: 'put', sublevel: this.meta.tags, key: parseTag(target), value: img.id }]);
  }

  /**
   * rmi: a tag is untagged, and the image deleted when no tag is left; an id deletes the image
   * and its tags. An image a mount uses is kept unless `force`.
   */
  async remove(ref: string, force = false): Promise<{ untagged: string[]; deleted: Digest | null }> {
    const img = await this.resolve(ref);
    const tags = await this.tagsOf(img.id);
    const byTag = await this.tagged(ref);
    const untag = byTag !== undefined ? [parseTag(ref)] : tags;
    const left = tags.filter((t) => !untag.includes(t));
    const ops: Op[] = untag.map((t) => ({ type: 'del', sublevel: this.meta.tags, key: t }));
    let deleted: Digest | null = null;
    if (left.length === 0) {
      const users = (await this.meta.allMounts()).filter((m) => m.image === img.id);
      if (users.length > 0 && !force) throw new StoreError(`image ${img.id.slice(7, 19)} is mounted at ${users[0]!.mountpoint}; unmount it or use --force`);
      // Forced, the image goes and its layers stay, below the container's (docker's dangling image).
      const containers = (await this.meta.allContainers()).filter((c) => c.image === img.id);
      if (containers.length > 0 && !force) {
        throw new StoreError(`conflict: unable to remove image ${img.id.slice(7, 19)} (must force): container ${containers[0]!.id.slice(0, 12)} (${containers[0]!.name}) is using it`);
      }
      ops.push({ type: 'del', sublevel: this.meta.images, key: img.id });
      for (const lid of new Set(img.layers)) {
        const l = await this.store.layer(lid);
        if (l !== undefined) ops.push({ type: 'put', sublevel: this.meta.layers, key: lid, value: { ...l, refs: Math.max(0, l.refs - 1) } });
      }
      deleted = img.id;
    }
    await this.batch(ops);
    return { untagged: untag, deleted };
  }

  /** Free read-only layers nothing uses (top first, so parents free up), and orphan directories. */
  async prune(): Promise<{ layers: string[]; orphans: string[]; mounts: string[] }> {
    const freed: string[] = [];
    const stale = await this.store.staleMounts();
    for (const m of stale) await this.store.dropMount(m.mountpoint);
    for (;;) {
      const layers = await this.meta.allLayers();
      const parents = new Set(layers.map((l) => l.parent).filter((p): p is string => p !== null));
      const used = await this.mountedLayers();
      // Writable layers no mount owns are a crashed command's: they go too.
      const victims = layers.filter((l) => !parents.has(l.id) && !used.has(l.id) && (l.rw || l.refs === 0));
      if (victims.length === 0) break;
      for (const v of victims) {
        await this.store.remove(v.id);
        freed.push(v.id);
      }
    }
    const known = new Set((await this.meta.allLayers()).map((l) => l.id));
    const orphans = this.store.orphanDirs(known);
    for (const o of orphans) rmSync(join(this.store.root, 'layers', o), { recursive: true, force: true });
    // A container directory without its record: a create or rm that was killed halfway.
    for (const c of await this.orphanContainerDirs()) {
      rmSync(join(this.store.root, 'containers', c), { recursive: true, force: true });
      orphans.push(`containers/${c}`);
    }
    return { layers: freed, orphans, mounts: stale.map((m) => m.mountpoint) };
  }

  private async orphanContainerDirs(): Promise<string[]> {
    const dir = join(this.store.root, 'containers');
    if (!existsSync(dir)) return [];
    const known = new Set((await this.meta.allContainers()).map((c) => c.id));
    return readdirSync(dir).filter((name) => !known.has(name));
  }

  /** Every layer a live mount or a container reads or writes: the chains below each. */
  private async mountedLayers(): Promise<Set<string>> {
    const used = new Set<string>();
    const tops = [
      ...(await this.meta.allMounts()).flatMap((m) => [m.layer, m.rwLayer]),
      ...(await this.meta.allContainers()).map((c) => c.layer),
    ];
    for (const top of tops) {
      if (top === null) continue;
      for (let id: string | null = top; id !== null && !used.has(id); ) {
        used.add(id);
        id = (await this.store.layer(id))?.parent ?? null;
      }
    }
    return used;
  }

  /** Everything `check` finds wrong; empty when the store is consistent. */
  async check(opts: { digests: boolean }): Promise<string[]> {
    const problems: string[] = [];
    const layers = new Map((await this.meta.allLayers()).map((l) => [l.id, l] as const));
    const images = await this.meta.allImages();
    const refs = new Map<string, number>();
    for (const img of images) {
      if (sha256(img.config) !== img.id) problems.push(`image ${img.id}: config does not match its digest`);
      let config: ImageConfig | null = null;
      try {
        config = JSON.parse(img.config) as ImageConfig;
      } catch {
        problems.push(`image ${img.id}: config is not JSON`);
      }
      if (config !== null) {
        const want = chainIds(config.rootfs.diff_ids).map((c) => c.slice(7));
        if (want.join() !== img.layers.join()) problems.push(`image ${img.id}: layer list does not match its config`);
      }
      for (const lid of new Set(img.layers)) {
        if (!layers.has(lid)) problems.push(`image ${img.id}: layer ${lid} is missing`);
        refs.set(lid, (refs.get(lid) ?? 0) + 1);
      }
    }
    for (const [tag, id] of await this.meta.allTags()) {
      if (!images.some((i) => i.id === id)) problems.push(`tag ${tag}: image ${id} is missing`);
    }
    const owned = new Set<string | null>((await this.meta.allMounts()).map((m) => m.rwLayer));
    for (const c of await this.meta.allContainers()) {
      owned.add(c.layer);
      owned.add(c.initLayer);
      for (const l of [c.layer, c.initLayer]) if (!layers.has(l)) problems.push(`container ${c.name}: layer ${l} is missing`);
    }
    for (const l of layers.values()) {
      if (l.rw && !owned.has(l.id)) problems.push(`layer ${l.id}: a writable layer no mount or container owns (a crashed command's; prune removes it)`);
      if ((refs.get(l.id) ?? 0) !== l.refs) problems.push(`layer ${l.id}: refcount ${l.refs}, but ${refs.get(l.id) ?? 0} image(s) use it`);
      if (l.parent !== null && !layers.has(l.parent)) problems.push(`layer ${l.id}: parent ${l.parent} is missing`);
      const dir = this.store.diffDir(l.id);
      if (!existsSync(dir)) {
        problems.push(`layer ${l.id}: directory ${dir} is missing`);
        continue;
      }
      if (!l.rw && l.diffId !== undefined && opts.digests) {
        const problem = await this.verifyLayer(l);
        if (problem !== null) problems.push(problem);
      }
    }
    for (const m of await this.store.staleMounts()) problems.push(`mount ${m.mountpoint}: recorded, but nothing is mounted there (its command or driver died; prune forgets it)`);
    for (const o of this.store.orphanDirs(new Set(layers.keys()))) problems.push(`layers/${o}: a directory with no record (an interrupted import; prune removes it)`);
    for (const c of await this.orphanContainerDirs()) problems.push(`containers/${c}: a directory with no container (an interrupted create or rm; prune removes it)`);
    return problems;
  }

  /** Replay a layer's tar and compare its digest with the recorded DiffID. */
  private async verifyLayer(l: LayerRecord): Promise<string | null> {
    try {
      const splitPath = join(this.store.layerDir(l.id), 'tar-split');
      const h = createHash('sha256');
      for await (const chunk of replay(readSplit(splitPath), this.store.diffDir(l.id))) h.update(chunk as Buffer);
      const got = `sha256:${h.digest('hex')}`;
      return got === l.diffId ? null : `layer ${l.id}: content gives ${got}, recorded DiffID is ${l.diffId}`;
    } catch (err) {
      return `layer ${l.id}: ${(err as Error).message}`;
    }
  }
}

/** The config of a new one-layer image, as `docker import` makes it. */
export function importConfig(diffId: Digest, comment: string, created = new Date().toISOString()): string {
  const config: ImageConfig = {
    architecture: goArch(),
    os: 'linux',
    created,
    config: {},
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created, created_by: 'strata import', comment }],
  };
  return JSON.stringify(config);
}
