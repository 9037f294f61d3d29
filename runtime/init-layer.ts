/**
 * Docker's init layer: between an image's layers and a container's writable layer, the mount
 * points a runtime mounts over or binds (/proc, /sys, /dev and its subdirectories, and the files
 * of etc-files.ts). runc would otherwise make them in the writable layer, where they would show
 * up in every diff and commit.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { LayerStore } from '../driver/store/store.js';

const INIT_DIRS = ['proc', 'sys', 'dev', 'dev/pts', 'dev/shm', 'dev/mqueue'];

/** Create the writable layer `id` over `parent` holding the mount points, for `files` too. */
export async function makeInitLayer(store: LayerStore, id: string, parent: string | null, files: string[]): Promise<void> {
  await store.createReadWrite(id, parent);
  const upper = store.diffDir(id);
  try {
    for (const d of INIT_DIRS) mkdirSync(join(upper, d), { recursive: true, mode: 0o755 });
    for (const f of files) {
      mkdirSync(join(upper, f, '..'), { recursive: true, mode: 0o755 });
      closeSync(openSync(join(upper, f), 'a', 0o644));
    }
  } catch (err) {
    // Out of inodes or space: the layer goes again here, as callers only undo what was returned
    // to them; a writable layer left without an owner would fail `strata check`.
    await store.remove(id).catch(() => undefined);
    throw err;
  }
}
