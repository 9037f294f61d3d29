/**
 * Content identifiers of images and layers, as Docker and the OCI image spec define them:
 * DiffID (digest of the uncompressed layer tar), ChainID (the layer and everything under it) and
 * the image ID (digest of the config's exact bytes).
 */
import { createHash } from 'node:crypto';

export type Digest = `sha256:${string}`;

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function sha256(data: string | Buffer): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function isDigest(s: string): s is Digest {
  return DIGEST.test(s);
}

export function hexOf(d: Digest): string {
  return d.slice('sha256:'.length);
}

/** chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i]). */
export function chainId(parentChain: Digest | null, diffId: Digest): Digest {
  return parentChain === null ? diffId : sha256(`${parentChain} ${diffId}`);
}

export function chainIds(diffIds: Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) out.push(chainId(out.length === 0 ? null : out[out.length - 1]!, d));
  return out;
}

/** The DiffID of the empty layer: a tar of exactly two zero blocks. */
export const EMPTY_LAYER_DIFF_ID: Digest = sha256(Buffer.alloc(1024));
