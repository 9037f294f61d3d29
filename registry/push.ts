/**
 * strata push: an image of the store to a registry. For each layer, a blob the registry may
 * already have (one this store pulled or pushed before) is asked about first (HEAD), then mounted
 * from another repository of the same registry if one has it; only then is the layer's tar
 * compressed and streamed up (POST, then one PATCH with the stream, then PUT with the digest
 * computed on the way). The config follows (monolithic: POST, PUT with the body), then the
 * manifest, in Docker's v2 media types, or OCI's if the registry refuses those. DiffIDs stay the
 * uncompressed digests, in the config as it is stored.
 */
import type { IncomingMessage } from 'node:http';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parallelGzip } from './parallel-gzip.js';
import { BackgroundDigest, sha256, type Digest } from '../driver/store/digest.js';
import type { ImageConfig } from '../driver/store/images.js';
import type { ImageRecord } from '../driver/store/metadata.js';
import type { LayerStore } from '../driver/store/store.js';
import { knownBlobs, MEDIA, rememberBlob } from './blobs.js';
import { RegistryClient, RegistryError } from './client.js';

export interface PushOptions {
  compress: 'gzip' | 'none';
  log: (line: string) => void;
}

interface Blob {
  digest: string;
  size: number;
  mediaType: string;
}

/** Counts what a push sent, for its summary and the tests' "a second push uploads nothing". */
export interface PushResult {
  digest: Digest;
  size: number;
  uploaded: number;
  mounted: number;
  existing: number;
}

async function exists(client: RegistryClient, digest: string): Promise<boolean> {
  const res = await client.call('HEAD', `/v2/${client.repository}/blobs/${digest}`, { scopes: [client.pushScope()] });
  res.resume();
  if (res.statusCode === 200) return true;
  if (res.statusCode === 404) return false;
  throw new RegistryError(`HEAD blob ${digest.slice(7, 19)}: ${client.registry} answered ${res.statusCode}`, res.statusCode);
}

function location(client: RegistryClient, res: IncomingMessage, what: string): URL {
  const loc = res.headers.location;
  if (loc === undefined) throw new RegistryError(`${what}: ${client.registry} gave no upload location`);
  return new URL(loc, client.url('/'));
}

/** Ask the registry to mount `digest` from `from` (a repository of the same registry); whether it did. */
async function mount(client: RegistryClient, digest: string, from: string): Promise<boolean> {
  const path = `/v2/${client.repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`;
  const res = await client.call('POST', path, { scopes: [client.pushScope(), client.pullScope(from)] });
  res.resume();
  if (res.statusCode === 201) return true;
  // 202: no mount, an upload session instead, which is not wanted.
  if (res.statusCode === 202 && res.headers.location !== undefined) {
    const cancel = await client.call('DELETE', location(client, res, 'mount'), { scopes: [client.pushScope()] }).catch(() => undefined);
    cancel?.resume();
  }
  return false;
}

async function startUpload(client: RegistryClient, what: string): Promise<URL> {
  const res = await client.call('POST', `/v2/${client.repository}/blobs/uploads/`, { scopes: [client.pushScope()] });
  if (res.statusCode !== 202) throw await client.failure(res, `start the upload of ${what}`);
  res.resume();
  return location(client, res, what);
}

async function finishUpload(client: RegistryClient, at: URL, digest: string, body: Buffer | undefined, what: string): Promise<void> {
  const url = new URL(at);
  url.searchParams.set('digest', digest);
  const res = await client.call('PUT', url, { scopes: [client.pushScope()], headers: { 'content-type': 'application/octet-stream' }, body: body ?? Buffer.alloc(0) });
  if (res.statusCode !== 201) throw await client.failure(res, `finish the upload of ${what}`);
  res.resume();
}

/** Upload a small blob in one PUT. */
async function uploadWhole(client: RegistryClient, data: Buffer, digest: string, what: string): Promise<void> {
  await finishUpload(client, await startUpload(client, what), digest, data, what);
}

/** Stream a layer up (one PATCH), compressed or not, its digest and size computed on the way. */
async function uploadLayer(client: RegistryClient, tar: Readable, gzip: boolean, what: string): Promise<{ digest: string; size: number }> {
  const at = await startUpload(client, what);
  // On the threadpool: the JS thread reads the layer and feeds the upload.
  const hash = new BackgroundDigest();
  let size = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
    flush(done) {
      hash.drained(() => done());
    },
  });
  const body = new PassThrough({ highWaterMark: 1 << 20 });
  const produced = gzip ? pipeline(tar, parallelGzip(), count, body) : pipeline(tar, count, body);
  produced.catch(() => undefined);
  const res = await client.call('PATCH', at, { scopes: [client.pushScope()], headers: { 'content-type': 'application/octet-stream' }, body });
  if (res.statusCode !== 202) {
    // Refused before the end (413, an unknown upload, a lapsed token): stop making the layer.
    body.destroy();
    throw await client.failure(res, `upload ${what}`);
  }
  await produced;
  res.resume();
  const digest = hash.digest();
  await finishUpload(client, location(client, res, what), digest, undefined, what);
  return { digest, size };
}

export async function push(store: LayerStore, image: ImageRecord, client: RegistryClient, tag: string, opts: PushOptions): Promise<PushResult> {
  const config = JSON.parse(image.config) as ImageConfig;
  const diffIds = config.rootfs.diff_ids;
  const gzip = opts.compress === 'gzip';
  const repository = `${client.registry}/${client.repository}`;
  const result = { uploaded: 0, mounted: 0, existing: 0 };
  const blobs: Blob[] = [];
  for (let i = 0; i < image.layers.length; i++) {
    const diffId = diffIds[i]!;
    const short = diffId.slice(7, 19);
    let blob: Blob | undefined;
    const known = await knownBlobs(store, diffId, gzip);
    for (const k of known) {
      if (await exists(client, k.digest)) {
        blob = k;
        result.existing++;
        opts.log(`${short}: layer already exists`);
        break;
      }
    }
    for (const k of blob === undefined ? known : []) {
      const from = k.repositories.find((r) => r.startsWith(`${client.registry}/`) && r !== repository);
      if (from !== undefined && (await mount(client, k.digest, from.slice(client.registry.length + 1)))) {
        blob = k;
        result.mounted++;
        opts.log(`${short}: mounted from ${from.slice(client.registry.length + 1)}`);
        break;
      }
    }
    if (blob === undefined) {
      opts.log(`${short}: pushing`);
      const up = await uploadLayer(client, await store.diff(image.layers[i]!), gzip, `layer ${short}`);
      blob = { ...up, mediaType: gzip ? MEDIA.dockerLayerGzip : MEDIA.dockerLayer };
      result.uploaded++;
      opts.log(`${short}: pushed`);
    }
    await rememberBlob(store, diffId, blob, repository);
    blobs.push(blob);
  }
  const configBytes = Buffer.from(image.config, 'utf8');
  if (!(await exists(client, image.id))) await uploadWhole(client, configBytes, image.id, 'the config');

  const docker = {
    schemaVersion: 2,
    mediaType: MEDIA.dockerManifest,
    config: { mediaType: MEDIA.dockerConfig, size: configBytes.length, digest: image.id },
    layers: blobs.map((b) => ({ mediaType: b.mediaType, size: b.size, digest: b.digest })),
  };
  const ociLayer = (t: string) => (t === MEDIA.dockerLayerGzip ? MEDIA.ociLayerGzip : t === MEDIA.dockerLayer ? MEDIA.ociLayer : t);
  const oci = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, size: configBytes.length, digest: image.id },
    layers: blobs.map((b) => ({ mediaType: ociLayer(b.mediaType), size: b.size, digest: b.digest })),
  };
  let lastFailure: RegistryError | undefined;
  for (const manifest of [docker, oci]) {
    const body = Buffer.from(JSON.stringify(manifest));
    const res = await client.call('PUT', `/v2/${client.repository}/manifests/${tag}`, {
      scopes: [client.pushScope()],
      headers: { 'content-type': manifest.mediaType },
      body,
    });
    if (res.statusCode === 201) {
      res.resume();
      const digest = sha256(body);
      opts.log(`${tag}: digest: ${digest} size: ${body.length}`);
      return { digest, size: body.length, ...result };
    }
    lastFailure = await client.failure(res, `push the manifest ${tag}`);
    // A registry that refuses Docker's media types (400 MANIFEST_INVALID, 415) may take OCI's.
    if (res.statusCode !== 400 && res.statusCode !== 415) break;
  }
  throw lastFailure!;
}
