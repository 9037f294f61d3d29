/**
 * What the build cache remembers of COPY and ADD sources between builds, so that an unchanged
 * rebuild reads no file:
 * - content digests of context files, by the file's identity (device, inode, size, mtime and
 *   ctime in nanoseconds), as git's index does: an unchanged file is not read again;
 * - whole descriptions of a step's sources: for the context, valid while the digest of every
 *   entry's lstat (the same identity, plus path, mode and owner) is the same, which spares the
 *   per-file look-ups; for another stage's or an image's files, by their layers alone, since
 *   layers never change, which spares mounting them.
 * The cache key of a step still holds content digests; host times only decide whether they must
 * be recomputed. Kept in the store's LevelDB; the per-file digests are loaded only when a
 * description is missing.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { LayerStore } from '../driver/store/store.js';
import type { SourceDescriptionRecord } from '../driver/store/metadata.js';
import type { FileInfo } from './fs/file-info.js';

interface Known {
  id: string;
  digest: string;
}

export type SourceDescription = Omit<SourceDescriptionRecord, 'summary'>;

export class FileDigests {
  private known: Map<string, Known> | undefined;
  private loading: Promise<Map<string, Known>> | undefined;
  private readonly fresh = new Map<string, Known>();
  private readonly freshDescriptions = new Map<string, SourceDescriptionRecord>();

  /** Digests of files under `contextDir`, remembered in `store` (nothing is, without one). */
  constructor(
    private readonly store: LayerStore | null,
    private readonly contextDir: string,
  ) {}

  /** The sha256 hex of the file at `path` (whose lstat is `st`), read only if it changed since last time. */
  async digest(path: string, st: FileInfo): Promise<string> {
    const id = st.identity;
    const k = this.fresh.get(path) ?? (this.known ?? (await this.load())).get(path);
    if (k !== undefined && k.id === id) return k.digest;
    const h = createHash('sha256');
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
    const digest = h.digest('hex');
    this.fresh.set(path, { id, digest });
    return digest;
  }

  /** The description remembered under `key`, if it was made when the sources' summary was `summary`. */
  async described(key: string, summary: string | null): Promise<SourceDescription | undefined> {
    const rec = this.freshDescriptions.get(key) ?? (this.store === null ? undefined : await this.store.meta.sourceDescriptions.get(key));
    if (rec === undefined || rec.summary !== summary) return undefined;
    return { digest: rec.digest, dirs: rec.dirs, count: rec.count };
  }

  remember(key: string, summary: string | null, d: SourceDescription): void {
    this.freshDescriptions.set(key, { summary, ...d });
  }

  /** Remember what was computed in this build (one batch). */
  async save(): Promise<void> {
    if (this.store === null || this.fresh.size + this.freshDescriptions.size === 0) return;
    const meta = this.store.meta;
    await meta.write([
      ...[...this.fresh].map(([key, value]) => ({ type: 'put' as const, sublevel: meta.fileDigests, key, value })),
      ...[...this.freshDescriptions].map(([key, value]) => ({ type: 'put' as const, sublevel: meta.sourceDescriptions, key, value })),
    ]);
    this.fresh.clear();
    this.freshDescriptions.clear();
  }

  private load(): Promise<Map<string, Known>> {
    this.loading ??= (async () => {
      const known = new Map<string, Known>();
      if (this.store !== null) {
        const prefix = this.contextDir.endsWith('/') ? this.contextDir : this.contextDir + '/';
        for await (const [path, value] of this.store.meta.fileDigests.iterator({ gte: prefix, lt: prefix + '\uffff' })) known.set(path, value);
      }
      return (this.known = known);
    })();
    return this.loading;
  }
}
