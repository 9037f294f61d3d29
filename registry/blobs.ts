/**
 * Which registry blobs hold which layer: recorded on every pull and push, so that pushing a layer
 * again (or to another repository of the same registry) asks the registry about a blob it may
 * have, and mounts it across repositories, before compressing anything. Docker keeps the same
 * knowledge (its v2 metadata service).
 */
import type { DistributionRecord } from '../driver/store/metadata.js';
import type { LayerStore } from '../driver/store/store.js';

export const MEDIA = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  schema1: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** Blobs known to hold the layer `diffId`, of the given compression. */
export async function knownBlobs(store: LayerStore, diffId: string, gzip: boolean): Promise<DistributionRecord[]> {
  const out: DistributionRecord[] = [];
  for await (const [, v] of store.meta.distribution.iterator({ gte: `${diffId} `, lt: `${diffId}!` })) {
    if (/gzip/.test(v.mediaType) === gzip) out.push(v);
  }
  return out;
}

/** Remember that `repository` (registry/name) has `blob`, which holds the layer `diffId`. */
export async function rememberBlob(store: LayerStore, diffId: string, blob: { digest: string; size: number; mediaType: string }, repository: string): Promise<void> {
  const key = `${diffId} ${blob.digest}`;
  const known = await store.meta.distribution.get(key);
  const repositories = [...new Set([repository, ...(known?.repositories ?? [])])];
  await store.meta.write([{ type: 'put', sublevel: store.meta.distribution, key, value: { diffId, ...blob, repositories } }]);
}
