/**
 * Paths inside a container's root, resolved the way the container would see them: every symlink
 * on the way is followed relative to that root (an absolute target restarts at the root, `..`
 * stops at it), so a link in an image can never lead a build's write or read outside the rootfs.
 * Missing components are kept as written (the caller may create them).
 */
import { lstatSync, readlinkSync } from 'node:fs';
import { posix } from 'node:path';

export class PathError extends Error {}

const MAX_LINKS = 255;

/**
 * The components of `path` with symlinks followed inside the tree: `linkAt(parts)` answers the
 * target of the symlink at those components, or null when there is none. With `followLast` false
 * a final symlink is kept as it is.
 */
export function resolveComponents(path: string, linkAt: (parts: string[]) => string | null, followLast = true): string[] {
  const done: string[] = [];
  const todo = splitPath(path);
  let links = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === '..') {
      done.pop();
      continue;
    }
    const target = followLast || todo.length > 0 ? linkAt([...done, part]) : null;
    if (target !== null) {
      if (++links > MAX_LINKS) throw new PathError(`too many levels of symbolic links in ${path}`);
      if (target.startsWith('/')) done.length = 0;
      todo.unshift(...splitPath(target));
      continue;
    }
    done.push(part);
  }
  return done;
}

/**
 * The host path of `path` (absolute, in the container's view) under `root`. With `followLast`
 * false a final symlink is returned itself rather than followed.
 */
export function resolveInRoot(root: string, path: string, followLast = true): string {
  const linkAt = (parts: string[]): string | null => {
    const host = posix.join(root, ...parts);
    return lstatSync(host, { throwIfNoEntry: false })?.isSymbolicLink() ? readlinkSync(host) : null;
  };
  return posix.join(root, ...resolveComponents(path, linkAt, followLast));
}

function splitPath(p: string): string[] {
  return p.split('/').filter((x) => x !== '' && x !== '.');
}

/** `path` made absolute against the container directory `cwd`, normalized. */
export function containerPath(cwd: string, path: string): string {
  return posix.resolve('/', cwd, path);
}
