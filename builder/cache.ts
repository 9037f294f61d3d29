/**
 * The build cache, in the store's LevelDB: a step's key is the digest of the state before it (the
 * image config, which names every layer by DiffID and every earlier step in its history) and of
 * what the step depends on (the instruction after expansion, the build args it sees, the content
 * of its sources). A hit is used only while all its layers are still in the store; prune may free
 * them, as `docker builder prune` would.
 */
import { createHash } from 'node:crypto';
import type { BuildCacheRecord } from '../driver/store/metadata.js';
import type { LayerStore } from '../driver/store/store.js';

export type StepResult = BuildCacheRecord;

export class BuildCache {
  constructor(private readonly layers: LayerStore) {}

  key(stateBefore: string, step: string): string {
    return createHash('sha256').update(stateBefore).update('\0').update(step).digest('hex');
  }

  async lookup(key: string): Promise<StepResult | undefined> {
    const rec = await this.layers.meta.buildCache.get(key);
    if (rec === undefined) return undefined;
    for (const id of rec.layers) {
      const l = await this.layers.layer(id);
      if (l === undefined || l.rw || l.diffId === undefined) return undefined;
    }
    return rec;
  }

  async save(key: string, result: StepResult): Promise<void> {
    await this.layers.meta.write([{ type: 'put', sublevel: this.layers.meta.buildCache, key, value: result }]);
  }
}
