/**
 * Which registry blobs hold which layer: recorded on every pull and push, so that pushing a layer
 * again (or to another repository of the same registry) asks the registry about a blob it may
 * have, and mounts it across repositories, before compressing anything. Docker keeps the same
 * knowledge (its v2 metadata service).
 */
import type { DistributionRecord } from '../driver/store/metadata.js';
import type { LayerStore } from '../driver/store/store.js';

export { MEDIA } from '../driver/store/media-types.js';


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
