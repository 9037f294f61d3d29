/**
 * The image and layer commands: import, images, layers, history, inspect, tag, rmi, prune, check.
 * Each opens the store (waiting, with a message, while another strata command holds it), does its
 * work through the driver's store API, and closes it.
 */
import { createReadStream, statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';
import { LayerFormatError } from '../../driver/store/apply.js';
import { Images, importConfig, parseTag, type ImageConfig } from '../../driver/store/images.js';
import { LayerStore, StoreError } from '../../driver/store/store.js';
import { isWriteRefusal } from '../../driver/store/errors.js';
import { UserError } from '../errors.js';

export function storeRoot(root: string | undefined): string {
  // Absolute: mountpoints, runc bundles and spawned supervisors must not depend on a cwd.
  return resolvePath(root ?? process.env['STRATA_ROOT'] ?? '/var/lib/strata');
}

/** Run `fn` with the store open; store and format errors become user errors. */
export async function withStore<T>(root: string | undefined, fn: (images: Images, store: LayerStore) => Promise<T>): Promise<T> {
  const dir = storeRoot(root);
  let store: LayerStore;
  try {
    store = await LayerStore.open(dir, {
      onWait: () => process.stderr.write(`strata: waiting for another strata command using ${dir}\n`),
    });
  } catch (err) {
    throw new UserError(openFailure(dir, err));
  }
  try {
    return await fn(new Images(store), store);
  } catch (err) {
    if (err instanceof StoreError || err instanceof LayerFormatError) throw new UserError(err.message);
    // The file system's refusal (a full disk, a read-only store) is the user's to fix, not a bug.
    const e = err as NodeJS.ErrnoException;
    if (isWriteRefusal(e) && typeof e.syscall === 'string') {
      // A failed write() names no file: say which disk is full (what a command writes, beyond an
      // output file that writeArchive reports itself, is the store's).
      const where = e.path === undefined ? `the store at ${dir}: ` : '';
      throw new UserError(where + e.message);
    }
    throw err;
  } finally {
    await store.close();
  }
}

/**
 * Why the store at `dir` did not open, in one line. LevelDB's own error only says "Database failed
 * to open"; the reason (a read-only or full file system) is its cause.
 */
export function openFailure(dir: string, err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  const why = cause instanceof Error ? cause.message : (err as Error).message;
  return `cannot open the store at ${dir}: ${why}`;
}

/** 12 hex digits, as docker shows ids; a suffix (a container's `-init` layer) is kept. */
function short(id: string): string {
  const m = /^(?:sha256:)?([0-9a-f]{12})[0-9a-f]*(-[a-z]+)?$/.exec(id);
  return m !== null ? m[1]! + (m[2] ?? '') : id.slice(0, 12);
}

function humanSize(bytes: number): string {
  if (bytes < 1000) return `${bytes}B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)}${units[i]}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]! + 3))).join('').trimEnd()).join('\n') + '\n';
}

/** A file argument, or standard input for "-". */
function input(file: string): Readable {
  if (file === '-') return process.stdin;
  try {
    if (!statSync(file).isFile()) throw new UserError(`${file} is not a file`);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  // Large reads: fewer trips through the event loop per megabyte.
  return createReadStream(file, { highWaterMark: 1 << 20 });
}

export async function importImage(a: { root?: string | undefined; file: string; ref?: string | undefined; message?: string | undefined }): Promise<void> {
  const tag = a.ref === undefined ? null : parseTagOrFail(a.ref);
  const { Progress, counted } = await import('../progress.js');
  const progress = new Progress('importing', a.file === '-' ? null : statSync(a.file, { throwIfNoEntry: false })?.size ?? null);
  const src = counted(input(a.file), progress);
  await withStore(a.root, async (images, store) => {
    const layer = await store.importLayer(src, null);
    progress.finish();
    const config = importConfig(layer.diffId!, a.message ?? `Imported from ${a.file}`);
    const img = await images.add(config, tag === null ? [] : [tag]);
    process.stdout.write(img.id + '\n');
  });
}

function parseTagOrFail(ref: string): string {
  try {
    return parseTag(ref);
  } catch (err) {
    throw new UserError((err as Error).message);
  }
}

export async function listImages(a: { root?: string | undefined; quiet: boolean }): Promise<void> {
  await withStore(a.root, async (images, store) => {
    const rows = [['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE']];
    const tags = await store.meta.allTags();
    const ids: string[] = [];
    for (const img of await store.meta.allImages()) {
      let size = 0;
      for (const lid of img.layers) size += (await store.layer(lid))?.size ?? 0;
      const mine = tags.filter(([, id]) => id === img.id).map(([t]) => t);
      for (const t of mine.length > 0 ? mine : ['<none>:<none>']) {
        const i = t.lastIndexOf(':');
        rows.push([t.slice(0, i), t.slice(i + 1), short(img.id), img.created, humanSize(size)]);
      }
      ids.push(img.id);
    }
    if (a.quiet) process.stdout.write(ids.map(short).join('\n') + (ids.length ? '\n' : ''));
    else process.stdout.write(table(rows));
    void images;
  });
}

export async function listLayers(a: { root?: string | undefined }): Promise<void> {
  await withStore(a.root, async (_images, store) => {
    const rows = [['LAYER ID', 'PARENT', 'KIND', 'DIFF ID', 'SIZE', 'IMAGES']];
    for (const l of await store.meta.allLayers()) {
      rows.push([short(l.id), l.parent === null ? '-' : short(l.parent), l.rw ? 'rw' : 'ro', l.diffId === undefined ? '-' : short(l.diffId), humanSize(l.size ?? 0), String(l.refs)]);
    }
    process.stdout.write(table(rows));
  });
}

export async function history(a: { root?: string | undefined; image: string }): Promise<void> {
  await withStore(a.root, async (images, store) => {
    const img = await images.resolve(a.image);
    const config = JSON.parse(img.config) as ImageConfig;
    const rows = [['CREATED', 'CREATED BY', 'SIZE', 'COMMENT']];
    let layerIndex = img.layers.length - 1;
    for (const h of [...config.history].reverse()) {
      let size = '0B';
      if (h.empty_layer !== true && layerIndex >= 0) size = humanSize((await store.layer(img.layers[layerIndex--]!))?.size ?? 0);
      rows.push([h.created ?? '', (h.created_by ?? '').slice(0, 60), size, h.comment ?? '']);
    }
    process.stdout.write(table(rows));
  });
}

export async function inspect(a: { root?: string | undefined; target: string }): Promise<void> {
  await withStore(a.root, async (images, store) => {
    let out: unknown;
    try {
      const img = await images.resolve(a.target);
      out = { Id: img.id, RepoTags: await images.tagsOf(img.id), Created: img.created, Layers: img.layers, Config: JSON.parse(img.config) as unknown };
    } catch (err) {
      const id = a.target.replace(/^sha256:/, '');
      const layer = (await store.layer(id)) ?? (await store.meta.allLayers()).find((l) => id.length >= 4 && l.id.startsWith(id));
      if (layer === undefined) throw err;
      out = { ...layer, Dir: store.diffDir(layer.id) };
    }
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  });
}

export async function tag(a: { root?: string | undefined; source: string; target: string }): Promise<void> {
  parseTagOrFail(a.target);
  await withStore(a.root, (images) => images.tag(a.source, a.target));
}

export async function rmi(a: { root?: string | undefined; images: string[]; force: boolean }): Promise<void> {
  await withStore(a.root, async (images) => {
    for (const ref of a.images) {
      const r = await images.remove(ref, a.force);
      for (const t of r.untagged) process.stdout.write(`Untagged: ${t}\n`);
      if (r.deleted !== null) process.stdout.write(`Deleted: ${r.deleted}\n`);
    }
  });
}

export async function prune(a: { root?: string | undefined }): Promise<void> {
  await withStore(a.root, async (images) => {
    const r = await images.prune();
    for (const l of r.layers) process.stdout.write(`deleted layer ${l}\n`);
    for (const o of r.orphans) process.stdout.write(`removed orphan directory layers/${o}\n`);
    for (const m of r.mounts) process.stdout.write(`forgot stale mount ${m}\n`);
    process.stdout.write(`${r.layers.length} layer(s) freed\n`);
  });
}

export async function check(a: { root?: string | undefined; quick: boolean }): Promise<void> {
  await withStore(a.root, async (images) => {
    const problems = await images.check({ digests: !a.quick });
    if (problems.length === 0) {
      process.stdout.write('store is consistent\n');
      return;
    }
    for (const p of problems) process.stdout.write(p + '\n');
    throw new UserError(`${problems.length} problem(s) found`);
  });
}

export async function exportImage(a: { root?: string | undefined; image: string; output?: string | undefined }): Promise<void> {
  const { exportMerged } = await import('../../driver/store/diff.js');
  await withStore(a.root, async (images, store) => {
    const img = await images.resolve(a.image);
    const top = img.layers[img.layers.length - 1];
    const layers = top === undefined ? [store.emptyDir()] : await store.lowerDirs(top);
    const { Progress, counted } = await import('../progress.js');
    let size = 0;
    for (const lid of img.layers) size += (await store.layer(lid))?.size ?? 0;
    const progress = new Progress('exporting', size > 0 ? size : null);
    await writeArchive(counted(exportMerged(layers), progress), a.output);
    progress.finish();
  });
}

export async function saveImages(a: { root?: string | undefined; images: string[]; output?: string | undefined; format: string }): Promise<void> {
  if (a.format !== 'docker' && a.format !== 'oci') throw new UserError(`unknown format ${a.format}: use docker or oci`);
  const format = a.format;
  const { save, saveSize } = await import('../../driver/store/archive.js');
  const { Progress } = await import('../progress.js');
  await withStore(a.root, async (images, store) => {
    const chosen = [];
    for (const ref of a.images) {
      const image = await images.resolve(ref);
      const byTag = (await images.tagsOf(image.id)).filter((t) => t === parseTagSafe(ref));
      chosen.push({ image, tags: byTag.length > 0 ? byTag : await images.tagsOf(image.id) });
    }
    const progress = new Progress('saving', await saveSize(store, chosen.map((c) => c.image)));
    await writeArchive(save(store, chosen, format, (n) => progress.add(n)), a.output);
    progress.finish();
  });
}

function parseTagSafe(ref: string): string | null {
  try {
    return parseTag(ref);
  } catch {
    return null;
  }
}

export async function loadImages(a: { root?: string | undefined; input?: string | undefined }): Promise<void> {
  const { load, isLayoutDir } = await import('../../driver/store/archive.js');
  const { Progress } = await import('../progress.js');
  let source: { stream: Readable } | { dir: string };
  let total: number | null = null;
  if (a.input === undefined || a.input === '-') {
    if (process.stdin.isTTY) throw new UserError('give an archive with -i FILE or on standard input');
    source = { stream: process.stdin };
  } else {
    let st;
    try {
      st = statSync(a.input);
    } catch (err) {
      throw new UserError(`cannot read ${a.input}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (st.isDirectory()) {
      if (!isLayoutDir(a.input)) throw new UserError(`${a.input} is a directory but not an OCI layout (no oci-layout file)`);
      source = { dir: a.input };
    } else {
      source = { stream: createReadStream(a.input, { highWaterMark: 1 << 20 }) };
      total = st.size;
    }
  }
  const progress = new Progress('loading', total);
  await withStore(a.root, async (_images, store) => {
    const loaded = await load(store, source, (n) => progress.add(n));
    progress.finish();
    for (const l of loaded) {
      process.stdout.write(l.tags.length > 0 ? l.tags.map((t) => `Loaded image: ${t}\n`).join('') : `Loaded image ID: ${l.id}\n`);
      for (const s of l.skipped) process.stderr.write(`strata: ${l.id.slice(7, 19)}: the archive names it ${JSON.stringify(s)}, not NAME:TAG; tag it with strata tag\n`);
    }
  });
}

/**
 * A tar to `output` (standard output for none or "-", never a terminal), under a temporary name
 * until complete: a failed export or save leaves nothing that looks finished.
 */
export async function writeArchive(tar: Readable, output: string | undefined): Promise<void> {
  const { pipeline } = await import('node:stream/promises');
  if (output === undefined || output === '-') {
    if (process.stdout.isTTY) throw new UserError('refusing to write a tar to a terminal; give -o FILE or redirect');
    try {
      await pipeline(tar, process.stdout);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // The reader went away (`strata save IMG | head`): as for any command whose output is cut.
      if (e.code === 'EPIPE') throw new UserError('', 128 + 13);
      // Standard output redirected to a full or read-only disk: the user's to fix, not a bug.
      if (e.syscall === 'write' && typeof e.code === 'string') throw new UserError(`cannot write to standard output: ${e.message}`);
      throw err;
    }
    return;
  }
  const { renameSync, rmSync } = await import('node:fs');
  const { fileSink } = await import('../file-sink.js');
  const tmp = `${output}.strata-tmp-${process.pid}`;
  try {
    await pipeline(tar, fileSink(tmp));
    renameSync(tmp, output);
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = err as NodeJS.ErrnoException;
    // The file system's refusal (ENOSPC, EACCES, EROFS...) is the user's to fix, not a bug.
    if (typeof e.code === 'string' && typeof e.errno === 'number') throw new UserError(`cannot write ${output}: ${e.message.replace(/,.*$/, '')}`);
    throw err;
  }
}

/** `strata diff MNT`: what the writable layer of an image mount changed, as docker diff prints it. */
export async function diffMount(a: { root?: string | undefined; mountpoint: string }): Promise<void> {
  const mountpoint = resolvePath(a.mountpoint);
  await withStore(a.root, async (_images, store) => {
    const rec = await store.meta.mounts.get(mountpoint);
    if (rec === undefined) throw new UserError(`${mountpoint} is not an image mount of this store (see strata mount IMAGE --rw)`);
    if (rec.rwLayer === null) throw new UserError(`${mountpoint} is read-only: it has no changes (mount with --rw)`);
    for (const c of await store.changes(rec.rwLayer)) process.stdout.write(`${c.kind} ${c.path}\n`);
  });
}
