/**
 * Typed loader for strata's syscall helper addon (native-deps/sys): the Linux calls Node's fs
 * lacks (the *at() family, xattrs, mknod, renameat2, utimensat with nanoseconds, hole-preserving
 * copy). Every call but copyData is synchronous and answers a negative errno instead of throwing,
 * because the FUSE request path is hot and single-threaded: an exception per ENOENT would cost more
 * than the syscall.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type * as SysModule from '../../native-deps/sys/index.js';

/** The addon's API, declared once in native-deps/sys/index.d.ts. */
export type StrataSys = typeof SysModule;

/** The project root is found by walking up to native-deps/, so src and dist layouts both work. */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'native-deps')) && existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('strata: cannot find the project root (native-deps/) above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

function load(): StrataSys {
  const addon = join(projectRoot(), 'native-deps', 'sys', 'build', 'Release', 'strata_sys.node');
  if (!existsSync(addon)) {
    throw new Error(`strata: the syscall helper is not built (${addon}); run 'make setup'`);
  }
  return createRequire(import.meta.url)(addon) as StrataSys;
}

export const sys: StrataSys = load();
