/**
 * Content digests of context files, remembered between builds by the file's identity (device,
 * inode, size, mtime and ctime in nanoseconds), as git's index does: an unchanged file is not read
 * again. The cache key of a step still holds the content digest; host times only decide whether
 * it must be recomputed. Kept in the store's LevelDB, loaded per build for the context's paths.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { LayerStore } from '../driver/store/store.js';
import type { FileInfo } from './fs/file-info.js';

interface Known {
  id: string;
  digest: string;
}

export class FileDigests {
  private readonly known = new Map<string, Known>();
  private readonly fresh = new Map<string, Known>();

  private constructor(private readonly store: LayerStore | null) {}

  /** The remembered digests of files under `dir` (none without a store). */
  static async load(store: LayerStore | null, dir: string): Promise<FileDigests> {
    const d = new FileDigests(store);
    if (store === null) return d;
    const prefix = dir.endsWith('/') ? dir : dir + '/';
    for await (const [path, value] of store.meta.fileDigests.iterator({ gte: prefix, lt: prefix + '\uffff' })) d.known.set(path, value);
    return d;
  }

  /** The sha256 hex of the file at `path` (whose lstat is `st`), read only if it changed since last time. */
  async digest(path: string, st: FileInfo): Promise<string> {
    const id = st.identity;
    const k = this.known.get(path) ?? this.fresh.get(path);
    if (k !== undefined && k.id === id) return k.digest;
    const h = createHash('sha256');
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
    const digest = h.digest('hex');
    this.fresh.set(path, { id, digest });
    return digest;
  }

  /** Remember what was computed in this build (one batch). */
  async save(): Promise<void> {
    if (this.store === null || this.fresh.size === 0) return;
    const meta = this.store.meta;
    await meta.write([...this.fresh].map(([key, value]) => ({ type: 'put' as const, sublevel: meta.fileDigests, key, value })));
    this.fresh.clear();
  }
}
