/**
 * The container tree a COPY writes into, behind one interface: a mounted rootfs (a strata mount),
 * or a writable layer's upper directory written directly, with the layers below read through the
 * driver's Union in this process. The second skips the FUSE round trips of every file, and gives
 * the same upper a mount would: directories of the layers below that a path goes through are
 * created in the upper with their metadata (as copy-up makes them), symlinks are followed inside
 * the tree, and new entries simply shadow what lies below.
 */
import { chmodSync, lchownSync, lstatSync, lutimesSync, mkdirSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { posix } from 'node:path';
import { closeLayerStack, openLayerStack, type LayerStack } from '../../driver/fs/layers.js';
import type { Node } from '../../driver/fs/node.js';
import { Union } from '../../driver/fs/union.js';
import { resolveComponents, resolveInRoot } from './in-root.js';

export interface Ownership {
  uid: number;
  gid: number;
}

export interface Root {
  /** Host path where the container path `path` lives or would be created (symlinks followed). */
  hostPath(path: string): string;
  /** The entry at `path` in the merged tree (symlinks followed), or undefined. */
  stat(path: string): Stats | undefined;
  /** Make directory `dir` and missing parents; answers its host path and whether anything was made. */
  mkdirp(dir: string, owner?: Ownership): { host: string; created: boolean };
  /** A file's text (for /etc/passwd and /etc/group), or undefined. */
  readText(path: string): string | undefined;
}

export class CopyTargetError extends Error {}

/** A mounted rootfs: plain paths through the mount. */
export class MountedRoot implements Root {
  constructor(readonly rootfs: string) {}

  hostPath(path: string): string {
    return resolveInRoot(this.rootfs, path);
  }

  stat(path: string): Stats | undefined {
    return lstatSync(this.hostPath(path), { throwIfNoEntry: false });
  }

  mkdirp(dir: string, owner: Ownership = { uid: 0, gid: 0 }): { host: string; created: boolean } {
    let cur = '/';
    let created = false;
    for (const part of dir.split('/').filter((p) => p !== '')) {
      cur = posix.join(cur, part);
      const host = this.hostPath(cur);
      const st = lstatSync(host, { throwIfNoEntry: false });
      if (st === undefined) {
        mkdirSync(host, { mode: 0o755 });
        chmodSync(host, 0o755);
        lchownSync(host, owner.uid, owner.gid);
        created = true;
      } else if (!st.isDirectory()) {
        throw new CopyTargetError(`${cur} exists and is not a directory`);
      }
    }
    return { host: this.hostPath(dir), created };
  }

  readText(path: string): string | undefined {
    try {
      return readFileSync(this.hostPath(path), 'utf8');
    } catch {
      return undefined;
    }
  }
}


/** A writable layer's upper directory over read-only layers (top first), without a mount. */
export class UpperRoot implements Root {
  private readonly stack: LayerStack | null;
  private readonly union: Union | null;

  constructor(
    readonly upper: string,
    lowers: string[],
  ) {
    this.stack = lowers.length > 0 ? openLayerStack({ lowers }) : null;
    this.union = this.stack === null ? null : new Union(this.stack, { maxCacheEntries: 100_000 });
  }

  close(): void {
    if (this.stack !== null) closeLayerStack(this.stack);
  }

  /** The lower layers' entry at the (resolved) components, if they show one. */
  private lower(parts: string[]): Node | undefined {
    if (this.union === null) return undefined;
    let node: Node | undefined = this.union.root;
    for (const p of parts) {
      if (node.kind !== 'dir') return undefined;
      node = this.union.child(node, p);
      if (node === undefined) return undefined;
    }
    return node;
  }

  private lowerHost(node: Node): string {
    const { layer, path } = this.union!.location(node);
    return posix.join(layer.root, path);
  }

  /** Host path of what the merged tree shows at the components: the upper's, else a lower's. */
  private visible(parts: string[]): string | undefined {
    const up = posix.join(this.upper, ...parts);
    if (lstatSync(up, { throwIfNoEntry: false }) !== undefined) return up;
    const node = this.lower(parts);
    return node === undefined ? undefined : this.lowerHost(node);
  }

  /** The components of `path` with every symlink followed inside the tree (the last one too). */
  private resolve(path: string): string[] {
    return resolveComponents(path, (parts) => {
      const host = this.visible(parts);
      return host !== undefined && lstatSync(host).isSymbolicLink() ? readlinkSync(host) : null;
    });
  }

  hostPath(path: string): string {
    return posix.join(this.upper, ...this.resolve(path));
  }

  stat(path: string): Stats | undefined {
    const host = this.visible(this.resolve(path));
    return host === undefined ? undefined : lstatSync(host);
  }

  mkdirp(dir: string, owner: Ownership = { uid: 0, gid: 0 }): { host: string; created: boolean } {
    const parts = this.resolve(dir);
    let created = false;
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i);
      const up = posix.join(this.upper, ...prefix);
      const inUpper = lstatSync(up, { throwIfNoEntry: false });
      if (inUpper !== undefined) {
        if (!inUpper.isDirectory()) throw new CopyTargetError(`/${prefix.join('/')} exists and is not a directory`);
        continue;
      }
      const below = this.lower(prefix);
      if (below !== undefined && below.kind !== 'dir') throw new CopyTargetError(`/${prefix.join('/')} exists and is not a directory`);
      mkdirSync(up);
      if (below !== undefined) {
        // As copy-up makes it: the directory of the layers below, with its metadata.
        const st = lstatSync(this.lowerHost(below));
        lchownSync(up, st.uid, st.gid);
        chmodSync(up, st.mode & 0o7777);
        lutimesSync(up, st.atime, st.mtime);
      } else {
        lchownSync(up, owner.uid, owner.gid);
        chmodSync(up, 0o755);
        created = true;
      }
    }
    return { host: posix.join(this.upper, ...parts), created };
  }

  readText(path: string): string | undefined {
    const host = this.visible(this.resolve(path));
    if (host === undefined) return undefined;
    try {
      return readFileSync(host, 'utf8');
    } catch {
      return undefined;
    }
  }
}
