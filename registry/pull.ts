/**
 * strata pull: an image from a registry into the store. The manifest (an index or a manifest
 * list resolved to this platform) names a config and the layer blobs; layers whose ChainID the
 * store has are skipped; the others download in parallel into the store's staging directory,
 * each blob's digest and size checked as it streams, and are applied in order, each one's DiffID
 * checked against the config. A layer is recorded only once it is complete and flushed, and the
 * image only once all its layers are: a pull killed at any point leaves nothing half-applied in
 * the store (staging is emptied at the next open).
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline as streamPipeline, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackgroundDigest, chainIds, hexOf, isDigest, sha256, type Digest } from '../driver/store/digest.js';
import { goArch, Images, parseTag, type ImageConfig } from '../driver/store/images.js';
import type { ImageRecord } from '../driver/store/metadata.js';
import type { LayerStore } from '../driver/store/store.js';
import { readBody } from '../net/http.js';
import { MEDIA, rememberBlob } from './blobs.js';
import { RegistryClient, RegistryError } from './client.js';
import { formatReference, type Reference } from './reference.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export function parsePlatform(text: string | undefined): Platform {
  if (text === undefined) return { os: 'linux', architecture: goArch() };
  const [os, architecture, variant] = text.split('/');
  if (os === undefined || os === '' || architecture === undefined || architecture === '') throw new RegistryError(`--platform ${text}: expected OS/ARCH[/VARIANT]`);
  return { os, architecture, ...(variant !== undefined ? { variant } : {}) };
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

interface Manifest {
  schemaVersion?: number;
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

const ACCEPT = [MEDIA.ociIndex, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.dockerManifest].join(', ');
/** Manifests and configs are small; anything bigger is not one. */
const MAX_DOCUMENT = 4 << 20;
/** Layers downloaded ahead of the one being applied. */
const PREFETCH = 2;

export type LayerState = 'waiting' | 'exists' | 'downloading' | 'downloaded' | 'applying' | 'complete';

/** What a pull tells as it goes: lines for the record, and each layer's state and bytes. */
export interface PullProgress {
  line(text: string): void;
  /** `done` of `total` bytes of the layer's blob (while downloading or applying, as they arrive). */
  layer(id: string, state: LayerState, done: number, total: number): void;
}

export interface PullOptions {
  insecure: boolean;
  platform: Platform;
  /** The local name; the reference itself by default. */
  name?: string;
  progress: PullProgress;
}

/** Fetch a manifest by tag or digest: its bytes checked against the digest the registry or the reference names. */
async function fetchManifest(client: RegistryClient, reference: string): Promise<{ manifest: Manifest; digest: Digest; raw: Buffer }> {
  const res = await client.call('GET', `/v2/${client.repository}/manifests/${reference}`, { headers: { accept: ACCEPT } });
  if (res.statusCode === 404) {
    res.resume();
    throw new RegistryError(`${client.registry}/${client.repository}: no manifest ${reference} (unknown tag or digest)`, 404);
  }
  if (res.statusCode !== 200) throw await client.failure(res, `manifest ${reference}`);
  const raw = await readBody(res, MAX_DOCUMENT);
  const digest = sha256(raw);
  const named = isDigest(reference) ? reference : res.headers['docker-content-digest'];
  if (typeof named === 'string' && named !== '' && named !== digest) throw new RegistryError(`manifest ${reference}: its digest is ${digest}, not ${named}`);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(raw.toString('utf8')) as Manifest;
  } catch {
    throw new RegistryError(`manifest ${reference} is not JSON`);
  }
  const type = manifest.mediaType ?? String(res.headers['content-type'] ?? '');
  if (type.startsWith(MEDIA.schema1) || manifest.schemaVersion === 1) throw new RegistryError(`manifest ${reference} is Docker's schema 1, which strata does not read`);
  manifest.mediaType = type;
  return { manifest, digest, raw };
}

function checkDescriptor(d: Descriptor | undefined, what: string): Descriptor {
  if (d === undefined || typeof d.digest !== 'string' || !isDigest(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new RegistryError(`the manifest's ${what} is not a valid descriptor`);
  }
  return d;
}

/** The image manifest for `platform`, through an index or a manifest list if that is what the reference names. */
async function resolveManifest(client: RegistryClient, reference: string, platform: Platform): Promise<{ manifest: Manifest; digest: Digest }> {
  const first = await fetchManifest(client, reference);
  const type = first.manifest.mediaType ?? '';
  if (type !== MEDIA.ociIndex && type !== MEDIA.dockerList && first.manifest.manifests === undefined) return first;
  const match = (first.manifest.manifests ?? []).find(
    (m) => m.platform?.os === platform.os && m.platform?.architecture === platform.architecture && (platform.variant === undefined || m.platform?.variant === platform.variant),
  );
  if (match === undefined) {
    const offered = (first.manifest.manifests ?? []).map((m) => [m.platform?.os, m.platform?.architecture, m.platform?.variant].filter(Boolean).join('/')).join(', ');
    throw new RegistryError(`${reference}: no image for ${platform.os}/${platform.architecture}${platform.variant ? '/' + platform.variant : ''} (offered: ${offered || 'none'})`);
  }
  return fetchManifest(client, checkDescriptor(match, 'platform entry').digest);
}

/**
 * A blob's content as a stream that fails (with a RegistryError) unless exactly `blob.size`
 * bytes with `blob.digest` arrive: whoever consumes it sees the error before its end.
 */
export async function openBlob(client: RegistryClient, blob: Descriptor, onBytes: (n: number) => void): Promise<Readable> {
  const short = blob.digest.slice(7, 19);
  const res = await client.call('GET', `/v2/${client.repository}/blobs/${blob.digest}`, { follow: true });
  if (res.statusCode !== 200) throw await client.failure(res, `blob ${short}`);
  // On the threadpool: the JS thread is the pull's busiest (it parses the tar).
  const hash = new BackgroundDigest();
  let size = 0;
  const check = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > blob.size) return done(new RegistryError(`blob ${short}: more than the ${blob.size} bytes the manifest gives`));
      hash.update(chunk);
      onBytes(chunk.length);
      done(null, chunk);
    },
    flush(done) {
      if (size !== blob.size) return done(new RegistryError(`blob ${short}: the connection closed after ${size} of ${blob.size} bytes`));
      hash.drained(() => {
        let got: string;
        try {
          got = hash.digest();
        } catch (err) {
          return done(err as Error);
        }
        if (got !== blob.digest) return done(new RegistryError(`blob ${short}: its content has digest ${got}, not ${blob.digest}`));
        done();
      });
    },
  });
  res.on('error', (err: NodeJS.ErrnoException) => {
    // The response ending early surfaces as 'aborted' (or a reset): say what arrived.
    const cut = err.message === 'aborted' || err.code === 'ECONNRESET';
    check.destroy(new RegistryError(cut ? `blob ${short}: the connection closed after ${size} of ${blob.size} bytes` : `blob ${short}: ${err.message}`));
  });
  res.pipe(check);
  return check;
}

/** Download a blob into `path`, checked as it streams. */
async function downloadBlob(client: RegistryClient, blob: Descriptor, path: string, onBytes: (n: number) => void): Promise<void> {
  await pipeline(await openBlob(client, blob, onBytes), createWriteStream(path, { mode: 0o600 }));
}

export async function pull(store: LayerStore, ref: Reference, client: RegistryClient, opts: PullOptions): Promise<ImageRecord> {
  // A bad local name is refused before anything is downloaded.
  const tags = opts.name !== undefined ? [parseTag(opts.name)] : ref.tag !== undefined || ref.digest === undefined ? [parseTag(formatReference(ref))] : [];
  const reference = ref.digest ?? ref.tag ?? 'latest';
  const { manifest, digest } = await resolveManifest(client, reference, opts.platform);
  const configDesc = checkDescriptor(manifest.config, 'config');
  const layers = (manifest.layers ?? []).map((l, i) => checkDescriptor(l, `layer ${i + 1}`));
  opts.progress.line(`${formatReference(ref)}: manifest ${digest}`);

  const res = await client.call('GET', `/v2/${client.repository}/blobs/${configDesc.digest}`, { follow: true });
  if (res.statusCode !== 200) throw await client.failure(res, 'the image config');
  const configRaw = await readBody(res, MAX_DOCUMENT);
  if (sha256(configRaw) !== configDesc.digest) throw new RegistryError(`the image config's digest is ${sha256(configRaw)}, not ${configDesc.digest}`);
  const configText = configRaw.toString('utf8');
  let config: ImageConfig;
  try {
    config = JSON.parse(configText) as ImageConfig;
  } catch {
    throw new RegistryError('the image config is not JSON');
  }
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (!Array.isArray(diffIds) || diffIds.length !== layers.length || !diffIds.every((d) => typeof d === 'string' && isDigest(d))) {
    throw new RegistryError(`the config lists ${Array.isArray(diffIds) ? diffIds.length : 0} DiffIDs for ${layers.length} layers`);
  }
  const chain = chainIds(diffIds);
  const present = await Promise.all(chain.map((c) => store.exists(hexOf(c))));
  const staging = join(store.root, 'tmp', `pull-${randomBytes(6).toString('hex')}`);
  mkdirSync(staging, { mode: 0o700 });
  const created: string[] = [];
  const repository = `${client.registry}/${client.repository}`;
  try {
    const shortOf = (blob: Descriptor) => blob.digest.slice(7, 19);
    const counter = (blob: Descriptor, state: LayerState) => {
      let got = 0;
      return (n: number) => opts.progress.layer(shortOf(blob), state, (got += n), blob.size);
    };
    layers.forEach((blob, i) => opts.progress.layer(shortOf(blob), present[i] ? 'exists' : 'waiting', 0, blob.size));
    const fileOf = (i: number) => join(staging, `layer-${i}`);
    // The layer whose turn it is streams straight into the store; up to PREFETCH missing layers
    // after it download into staging meanwhile, and are applied from there in their turn.
    const ahead = new Map<number, Promise<void>>();
    const prefetch = (from: number) => {
      let queued = [...ahead.keys()].filter((k) => k >= from).length;
      for (let j = from; j < layers.length && queued < PREFETCH; j++) {
        if (present[j] || ahead.has(j)) continue;
        const blob = layers[j]!;
        const job = downloadBlob(client, blob, fileOf(j), counter(blob, 'downloading')).then(() => opts.progress.layer(shortOf(blob), 'downloaded', blob.size, blob.size));
        // Reported when its turn comes; never left unobserved meanwhile.
        job.catch(() => undefined);
        ahead.set(j, job);
        queued++;
      }
    };
    let parent: string | null = null;
    for (let i = 0; i < layers.length; i++) {
      const blob = layers[i]!;
      const short = shortOf(blob);
      if (!present[i]) {
        const fetched = ahead.get(i);
        let source: Readable;
        if (fetched !== undefined) {
          prefetch(i + 1);
          await fetched;
          const count = counter(blob, 'applying');
          const counting = new Transform({
            transform(chunk: Buffer, _enc, done) {
              count(chunk.length);
              done(null, chunk);
            },
          });
          source = streamPipeline(createReadStream(fileOf(i), { highWaterMark: 1 << 20 }), counting, () => undefined);
        } else {
          source = await openBlob(client, blob, counter(blob, 'applying'));
          prefetch(i + 1);
        }
        // A blob that fails its check makes the unpacking fail too; its own error says why.
        let blobError: unknown;
        source.once('error', (err) => (blobError = err));
        const rec = await store.importLayer(source, parent, created).catch((err: unknown) => {
          throw blobError instanceof RegistryError ? blobError : err;
        });
        rmSync(fileOf(i), { force: true });
        if (rec.diffId !== diffIds[i]) throw new RegistryError(`layer ${i + 1} (${short}) has DiffID ${rec.diffId}, the config says ${diffIds[i]}`);
        opts.progress.layer(short, 'complete', blob.size, blob.size);
      }
      await rememberBlob(store, diffIds[i]!, { digest: blob.digest, size: blob.size, mediaType: blob.mediaType ?? MEDIA.dockerLayerGzip }, repository);
      parent = hexOf(chain[i]!);
    }
    const image = await new Images(store).add(configText, tags);
    opts.progress.line(`Digest: ${digest}`);
    return image;
  } catch (err) {
    await store.dropUnused(created);
    throw err;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
