#!/usr/bin/env node
/**
 * Bundles the compiled CLI and driver entry points into one file each (dist/bundle/). Every
 * `strata` command and every driver process starts a fresh Node; resolving and compiling a
 * hundred separate modules cost about a third of a cached `strata build`. Native addons stay
 * external: node-gyp-build finds them relative to their own packages.
 */
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { chmodSync } from 'node:fs';

const root = fileURLToPath(new URL('..', import.meta.url));
const entries = { strata: 'dist/cli/main.js', driver: 'dist/driver/main.js' };

for (const [name, entry] of Object.entries(entries)) {
  const outfile = `${root}dist/bundle/${name}.mjs`;
  await build({
    entryPoints: [`${root}${entry}`],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['fuse-native', 'classic-level'],
    // CommonJS dependencies (yargs' helpers, dockerignore) call require(); an ES module bundle
    // has none unless it makes one.
    banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  chmodSync(outfile, 0o755);
}
