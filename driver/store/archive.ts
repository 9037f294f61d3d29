/**
 * Image archives in and out: docker-archive (what `docker save` and `skopeo copy docker-archive:`
 * write) and the OCI image layout (as a directory or a tar of one).
 *
 * Saving streams every layer's tar from the store (the exact bytes of its DiffID) into the
 * archive. Loading unpacks the outer archive into the store's staging area (regular files only;
 * the symlinks skopeo writes are resolved inside the archive, never on disk), checks every digest
 * the archive claims, and imports the layers bottom-up; nothing is recorded until a whole image
 * has arrived.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, createReadStream, existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { extract as tarExtract, pack as tarPack, type Header, type Pack } from 'tar-stream';
import { cleanName, LayerFormatError } from './apply.js';
import { decompressed } from './compression.js';
import { hexOf, isDigest, sha256, type Digest } from './digest.js';
import { Images, parseTag, type ImageConfig } from './images.js';
import { MEDIA } from './media-types.js';
import type { ImageRecord } from './metadata.js';
import { StoreError, type LayerStore } from './store.js';

export type ArchiveFormat = 'docker' | 'oci';


// ---- save --------------------------------------------------------------------------------------

interface Saved {
  image: ImageRecord;
  tags: string[];
}

function entry(pack: Pack, name: string, body: Buffer | string, mtime: Date): Promise<void> {
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  return new Promise((resolve, reject) => {
    pack.entry({ name, size: buf.length, mode: 0o100644, mtime, type: 'file' }, buf, (err) => (err ? reject(err) : resolve()));
  });
}

function dir(pack: Pack, name: string, mtime: Date): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, mode: 0o040755, mtime, type: 'directory' }, (err) => (err ? reject(err) : resolve()));
  });
}

/** A layer's tar into the archive under `name`; it must be exactly `size` bytes. */
async function layerEntry(pack: Pack, store: LayerStore, layerId: string, name: string, mtime: Date, onBytes: (n: number) => void): Promise<void> {
  const rec = await store.layer(layerId);
  if (rec?.tarBytes === undefined) throw new StoreError(`layer ${layerId} has no stored tar`);
  const size = rec.tarBytes;
  const src = await store.diff(layerId);
  // Checked while it streams: an archive never carries a layer that is not its DiffID.
  const hash = createHash('sha256');
  // Settled either way, the layer's stream stops: its replay holds descriptors and reads ahead.
  const settled = () => src.destroy();
  await new Promise<void>((resolve, reject) => {
    const sink = pack.entry({ name, size, mode: 0o100644, mtime, type: 'file' }, (err) => (err ? reject(err) : resolve()));
    let seen = 0;
    src.on('data', (c: Buffer) => {
      seen += c.length;
      hash.update(c);
      onBytes(c.length);
      if (!sink.write(c)) src.pause();
    });
    sink.on('drain', () => src.resume());
    // The entry fails with the archive: someone must listen, or its error would crash the process.
    sink.on('error', reject);
    src.on('error', reject);
    src.on('end', () => {
      if (seen !== size) reject(new StoreError(`layer ${layerId}: its tar is ${seen} bytes, ${size} recorded`));
      else if (`sha256:${hash.digest('hex')}` !== rec.diffId) reject(new StoreError(`layer ${layerId} does not give back its DiffID ${rec.diffId}; run strata check`));
      // streamx's end() takes an optional last chunk; its types make it required.
      else (sink as unknown as { end(): void }).end();
    });
  }).finally(settled);
}

/** The images' total layer bytes, for progress. */
export async function saveSize(store: LayerStore, images: ImageRecord[]): Promise<number> {
  let total = 0;
  for (const img of images) for (const l of new Set(img.layers)) total += (await store.layer(l))?.tarBytes ?? 0;
  return total;
}

/**
 * The images as one archive stream. docker: manifest.json, repositories, <id>.json configs and
 * <diffid>/layer.tar; oci: oci-layout, index.json and blobs/sha256/*, layers uncompressed.
 */
export function save(store: LayerStore, images: Saved[], format: ArchiveFormat, onBytes: (n: number) => void = () => undefined): Readable {
  const pack = tarPack();
  const mtime = new Date(0);
  const run = async () => {
    const written = new Set<string>();
    if (format === 'docker') {
      const manifest: Array<{ Config: string; RepoTags: string[]; Layers: string[] }> = [];
      const repositories: Record<string, Record<string, string>> = {};
      for (const { image, tags } of images) {
        const config = JSON.parse(image.config) as ImageConfig;
        const layerPaths: string[] = [];
        for (let i = 0; i < image.layers.length; i++) {
          const diffId = config.rootfs.diff_ids[i]!;
          const d = hexOf(diffId);
          layerPaths.push(`${d}/layer.tar`);
          if (written.has(d)) continue;
          written.add(d);
          await dir(pack, `${d}/`, mtime);
          await entry(pack, `${d}/VERSION`, '1.0', mtime);
          await entry(pack, `${d}/json`, JSON.stringify({ id: d, ...(i > 0 ? { parent: hexOf(config.rootfs.diff_ids[i - 1]!) } : {}) }), mtime);
          await layerEntry(pack, store, image.layers[i]!, `${d}/layer.tar`, mtime, onBytes);
        }
        const configName = `${hexOf(image.id)}.json`;
        if (!written.has(configName)) {
          written.add(configName);
          await entry(pack, configName, image.config, mtime);
        }
        manifest.push({ Config: configName, RepoTags: tags, Layers: layerPaths });
        const top = layerPaths.length > 0 ? layerPaths[layerPaths.length - 1]!.split('/')[0]! : '';
        for (const t of tags) {
          const i = t.lastIndexOf(':');
          (repositories[t.slice(0, i)] ??= {})[t.slice(i + 1)] = top;
        }
      }
      await entry(pack, 'manifest.json', JSON.stringify(manifest), mtime);
      await entry(pack, 'repositories', JSON.stringify(repositories), mtime);
    } else {
      await entry(pack, 'oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' }), mtime);
      await dir(pack, 'blobs/', mtime);
      await dir(pack, 'blobs/sha256/', mtime);
      const manifests: unknown[] = [];
      for (const { image, tags } of images) {
        const config = JSON.parse(image.config) as ImageConfig;
        const layers: unknown[] = [];
        for (let i = 0; i < image.layers.length; i++) {
          const diffId = config.rootfs.diff_ids[i]!;
          const rec = await store.layer(image.layers[i]!);
          layers.push({ mediaType: MEDIA.ociLayer, digest: diffId, size: rec?.tarBytes ?? 0 });
          if (written.has(diffId)) continue;
          written.add(diffId);
          await layerEntry(pack, store, image.layers[i]!, `blobs/sha256/${hexOf(diffId)}`, mtime, onBytes);
        }
        if (!written.has(image.id)) {
          written.add(image.id);
          await entry(pack, `blobs/sha256/${hexOf(image.id)}`, image.config, mtime);
        }
        const manifest = JSON.stringify({
          schemaVersion: 2,
          mediaType: MEDIA.ociManifest,
          config: { mediaType: MEDIA.ociConfig, digest: image.id, size: Buffer.byteLength(image.config) },
          layers,
        });
        const mDigest = sha256(manifest);
        if (!written.has(mDigest)) {
          written.add(mDigest);
          await entry(pack, `blobs/sha256/${hexOf(mDigest)}`, manifest, mtime);
        }
        const desc = { mediaType: MEDIA.ociManifest, digest: mDigest, size: Buffer.byteLength(manifest) };
        if (tags.length === 0) manifests.push(desc);
        for (const t of tags) manifests.push({ ...desc, annotations: { 'org.opencontainers.image.ref.name': t } });
      }
      await entry(pack, 'index.json', JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests }), mtime);
    }
    pack.finalize();
  };
  run().catch((err: unknown) => pack.destroy(err as Error));
  return Readable.from(pack);
}

// ---- load --------------------------------------------------------------------------------------

/** What an unpacked archive holds: regular files (on disk) and symlinks (resolved in here). */
class ArchiveTree {
  readonly files = new Map<string, string>();
  readonly links = new Map<string, string>();

  constructor(readonly root: string) {}

  /** The on-disk path of archive member `name`, following the archive's own symlinks. */
  resolve(name: string, hops = 0): string {
    const rel = cleanName(name);
    const file = this.files.get(rel);
    if (file !== undefined) return file;
    const target = this.links.get(rel);
    if (target !== undefined && hops < 16) {
      const base = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/') + 1) : '';
      const joined = target.startsWith('/') ? target.slice(1) : base + target;
      // Normalise `a/../b` inside the archive; going above its root is refused.
      const parts: string[] = [];
      for (const p of joined.split('/')) {
        if (p === '' || p === '.') continue;
        if (p === '..') {
          if (parts.length === 0) throw new LayerFormatError(`archive link ${name} points outside the archive`);
          parts.pop();
        } else parts.push(p);
      }
      return this.resolve(parts.join('/'), hops + 1);
    }
    throw new LayerFormatError(`the archive has no ${name}`);
  }

  has(name: string): boolean {
    try {
      this.resolve(name);
      return true;
    } catch {
      return false;
    }
  }

  json<T>(name: string): T {
    try {
      return JSON.parse(readFileSync(this.resolve(name), 'utf8')) as T;
    } catch (err) {
      if (err instanceof LayerFormatError) throw err;
      throw new LayerFormatError(`${name} in the archive is not valid JSON`);
    }
  }

  text(name: string): string {
    return readFileSync(this.resolve(name), 'utf8');
  }
}

/** Unpack an archive's regular files into `dir` (flat, numbered), remembering names and links. */
async function unpackArchive(input: Readable, dir: string, onBytes: (n: number) => void): Promise<ArchiveTree> {
  const tree = new ArchiveTree(dir);
  const { stream } = await decompressed(input);
  const x = tarExtract();
  stream.on('data', (c: Buffer) => onBytes(c.length));
  const feeding = new Promise<void>((resolve, reject) => {
    stream.on('error', reject);
    (x as unknown as NodeJS.EventEmitter).on('error', reject);
    stream.pipe(x as unknown as NodeJS.WritableStream);
    (x as unknown as NodeJS.EventEmitter).on('finish', resolve);
  });
  let n = 0;
  try {
    for await (const e of x) {
      const h = e.header as Header;
      const name = cleanName(h.name);
      if (h.type === 'symlink') tree.links.set(name, h.linkname ?? '');
      if (h.type === 'file' || h.type === 'contiguous-file') {
        const path = join(dir, String(n++));
        const fd = staging(() => openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600));
        try {
          for await (const c of e as unknown as AsyncIterable<Buffer>) for (let off = 0; off < c.length; ) off += staging(() => writeSync(fd, c, off));
        } finally {
          closeSync(fd);
        }
        tree.files.set(name, path);
        continue;
      }
      for await (const _ of e as unknown as AsyncIterable<Buffer>) {
        // no data
      }
    }
    await feeding;
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    if (err instanceof LayerFormatError || err instanceof StoreError) throw err;
    throw new LayerFormatError(`not a readable image archive (${msg})`);
  }
  return tree;
}

/**
 * A write of the archive's files into the store's staging area: its failure (a full disk) is the
 * store's, not a sign of a bad archive.
 */
function staging<T>(write: () => T): T {
  try {
    return write();
  } catch (err) {
    throw new StoreError(`cannot unpack the archive into the store: ${(err as Error).message}`);
  }
}

/** A directory holding an OCI layout, read in place. */
function directoryTree(root: string): ArchiveTree {
  const tree = new ArchiveTree(root);
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel))) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = statSync(join(root, r), { throwIfNoEntry: false });
      if (st === undefined) continue;
      if (st.isDirectory()) walk(r);
      else if (st.isFile()) tree.files.set(r, join(root, r));
    }
  };
  walk('');
  return tree;
}

/** sha256 of a file, streamed. */
async function fileDigest(path: string): Promise<Digest> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

interface ToLoad {
  config: string;
  layers: Array<{ path: string; digest?: Digest }>;
  tags: string[];
  where: string;
}

function dockerImages(tree: ArchiveTree): ToLoad[] {
  const manifest = tree.json<Array<{ Config?: string; RepoTags?: string[] | null; Layers?: string[] }>>('manifest.json');
  if (!Array.isArray(manifest)) throw new LayerFormatError('manifest.json is not a list');
  return manifest.map((m, i) => {
    if (typeof m.Config !== 'string' || !Array.isArray(m.Layers)) throw new LayerFormatError(`manifest.json entry ${i} lacks Config or Layers`);
    const config = tree.text(m.Config);
    const want = m.Config.replace(/\.json$/, '').replace(/^.*\//, '');
    if (/^[0-9a-f]{64}$/.test(want) && sha256(config) !== `sha256:${want}`) {
      throw new LayerFormatError(`${m.Config}: its content does not match its name's digest`);
    }
    return { config, layers: m.Layers.map((p) => ({ path: tree.resolve(p) })), tags: m.RepoTags ?? [], where: `manifest.json entry ${i}` };
  });
}

interface Descriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
  annotations?: Record<string, string>;
}

function blob(tree: ArchiveTree, d: Descriptor, what: string): string {
  if (typeof d.digest !== 'string' || !isDigest(d.digest)) throw new LayerFormatError(`${what}: bad digest ${JSON.stringify(d.digest)}`);
  return tree.resolve(`blobs/sha256/${hexOf(d.digest)}`);
}

async function verified(path: string, d: Descriptor, what: string): Promise<void> {
  const got = await fileDigest(path);
  if (got !== d.digest) throw new LayerFormatError(`${what}: blob ${d.digest} has digest ${got}`);
  if (typeof d.size === 'number' && statSync(path).size !== d.size) throw new LayerFormatError(`${what}: blob ${d.digest} has the wrong size`);
}

async function ociImages(tree: ArchiveTree): Promise<ToLoad[]> {
  const layout = tree.json<{ imageLayoutVersion?: string }>('oci-layout');
  if (layout.imageLayoutVersion === undefined) throw new LayerFormatError('oci-layout has no imageLayoutVersion');
  const index = tree.json<{ manifests?: Descriptor[] }>('index.json');
  const out: ToLoad[] = [];
  const byManifest = new Map<string, ToLoad>();
  const visit = async (d: Descriptor, ref: string | undefined, depth: number): Promise<void> => {
    const path = blob(tree, d, 'index.json');
    await verified(path, d, 'manifest');
    const m = JSON.parse(readFileSync(path, 'utf8')) as { mediaType?: string; manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
    if (m.manifests !== undefined) {
      if (depth > 4) throw new LayerFormatError('image indexes nest too deep');
      const pick = m.manifests.find((x) => (x as { platform?: { os?: string; architecture?: string } }).platform?.architecture === 'amd64') ?? m.manifests[0];
      if (pick !== undefined) await visit(pick, ref, depth + 1);
      return;
    }
    if (m.config === undefined || !Array.isArray(m.layers)) throw new LayerFormatError(`manifest ${d.digest} lacks config or layers`);
    const known = byManifest.get(d.digest!);
    if (known !== undefined) {
      if (ref !== undefined) known.tags.push(ref);
      return;
    }
    const configPath = blob(tree, m.config, 'manifest');
    await verified(configPath, m.config, 'config');
    const layers: ToLoad['layers'] = [];
    for (const l of m.layers) {
      if (l.mediaType !== undefined && /zstd|nondistributable/.test(l.mediaType) && !/tar/.test(l.mediaType)) {
        throw new LayerFormatError(`layer media type ${l.mediaType} is not supported`);
      }
      const p = blob(tree, l, 'manifest');
      await verified(p, l, 'layer');
      layers.push({ path: p, digest: l.digest as Digest });
    }
    const item: ToLoad = { config: readFileSync(configPath, 'utf8'), layers, tags: ref === undefined ? [] : [ref], where: `manifest ${d.digest}` };
    byManifest.set(d.digest!, item);
    out.push(item);
  };
  for (const d of index.manifests ?? []) await visit(d, d.annotations?.['org.opencontainers.image.ref.name'], 0);
  return out;
}

export interface Loaded {
  id: Digest;
  tags: string[];
  /** Refs the archive gave that are no image name (an OCI layout's bare "v1"). */
  skipped: string[];
}

/** Load every image of a docker-archive or OCI layout (a tar, compressed or not, or a directory). */
export async function load(store: LayerStore, source: { stream: Readable } | { dir: string }, onBytes: (n: number) => void = () => undefined): Promise<Loaded[]> {
  const staging = join(store.root, 'tmp', `load-${randomBytes(6).toString('hex')}`);
  mkdirSync(staging, { mode: 0o700 });
  try {
    const tree = 'dir' in source ? directoryTree(source.dir) : await unpackArchive(source.stream, staging, onBytes);
    let todo: ToLoad[];
    if (tree.has('manifest.json')) todo = dockerImages(tree);
    else if (tree.has('oci-layout')) todo = await ociImages(tree);
    else throw new LayerFormatError('neither a docker-archive (manifest.json) nor an OCI layout (oci-layout)');
    const images = new Images(store);
    const out: Loaded[] = [];
    const created: string[] = [];
    try {
      await loadAll(store, images, todo, out, created);
    } catch (err) {
      await store.dropUnused(created);
      throw err;
    }
    return out;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

async function loadAll(store: LayerStore, images: Images, todo: ToLoad[], out: Loaded[], created: string[]): Promise<void> {
  for (const item of todo) {
    let config: ImageConfig;
    try {
      config = JSON.parse(item.config) as ImageConfig;
    } catch {
      throw new LayerFormatError(`${item.where}: the config is not JSON`);
    }
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== item.layers.length) throw new LayerFormatError(`${item.where}: ${item.layers.length} layers but the config lists ${diffIds.length} DiffIDs`);
    let parent: string | null = null;
    for (let i = 0; i < item.layers.length; i++) {
      const rec = await store.importLayer(createReadStream(item.layers[i]!.path, { highWaterMark: 1 << 20 }), parent, created);
      if (rec.diffId !== diffIds[i]) {
        throw new LayerFormatError(`${item.where}: layer ${i + 1} has DiffID ${rec.diffId}, the config says ${diffIds[i]}`);
      }
      parent = rec.id;
    }
    const tags: string[] = [];
    const skipped: string[] = [];
    for (const t of item.tags) {
      try {
        if (!t.includes(':') && !t.includes('/')) throw new Error('bare');
        tags.push(parseTag(t));
      } catch {
        skipped.push(t);
      }
    }
    const rec = await images.add(item.config, tags);
    out.push({ id: rec.id, tags, skipped });
  }
}

export function isLayoutDir(path: string): boolean {
  return existsSync(join(path, 'oci-layout'));
}
