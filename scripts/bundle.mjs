#!/usr/bin/env node
/**
 * Bundles the compiled CLI and driver entry points into one file each (dist/bundle/). Every
 * `strata` command and every driver process starts a fresh Node; resolving and compiling a
 * hundred separate modules cost about a third of a cached `strata build`. Native addons stay
 * external: node-gyp-build finds them relative to their own packages. `strata` itself is
 * dist/bundle/strata.cjs (scripts/strata-cli.cjs), which runs the CLI bundle with a code cache.
 */
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { chmodSync, copyFileSync, rmSync } from 'node:fs';

const root = fileURLToPath(new URL('..', import.meta.url));
// Only what this run makes: a bundle from an older layout must not linger.
rmSync(`${root}dist/bundle`, { recursive: true, force: true });
/**
 * classic-level's JavaScript goes into the bundle (loading it module by module cost ~30 ms a
 * command); its native binding is still found by node-gyp-build, in the installed package.
 */
const classicLevelBinding = {
  name: 'classic-level-binding',
  setup(b) {
    b.onLoad({ filter: /[\\/]classic-level[\\/]binding\.js$/ }, () => ({
      contents: "module.exports = require('node-gyp-build')(require('node:path').dirname(require.resolve('classic-level/package.json')));",
      loader: 'js',
    }));
  },
};

/**
 * string-width (yargs' and cliui's) builds an Intl.Segmenter and compiles Unicode-property regexps
 * when it is loaded, and yargs lays out the help text at every command it runs (to have it ready
 * should the command fail): ~50 ms of ICU start-up in every strata command. Each import of it gets
 * a stand-in instead: printable ASCII is one column per character, as string-width counts it; any
 * other text loads the real module (a require(), which esbuild evaluates lazily) and asks it.
 */
const lazyStringWidth = {
  name: 'lazy-string-width',
  setup(b) {
    b.onResolve({ filter: /^string-width$/ }, async (args) => {
      // The stand-in is an ES module's default export: only `import` statements get it.
      if (args.pluginData?.real === true || args.kind !== 'import-statement') return undefined;
      const real = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: { real: true } });
      if (real.errors.length > 0) return { errors: real.errors };
      return { path: real.path, namespace: 'lazy-string-width' };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-string-width' }, (args) => ({
      contents: `let real; export default function stringWidth(text, options) { if (typeof text === 'string' && /^[\\x20-\\x7e]*$/.test(text)) return text.length; real ??= require(${JSON.stringify(args.path)}).default; return real(text, options); }`,
      loader: 'js',
      resolveDir: root,
    }));
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  external: ['fuse-native', 'node-gyp-build', 'classic-level/package.json'],
  plugins: [classicLevelBinding, lazyStringWidth],
  logLevel: 'warning',
};

// The CLI: CommonJS, so that scripts/strata-cli.cjs can run it through V8's code cache (vm.Script
// takes cached data; ES modules cannot in Node 20).
await build({
  ...common,
  entryPoints: [`${root}dist/cli/main.js`],
  outfile: `${root}dist/bundle/strata-main.cjs`,
  format: 'cjs',
  // import() of what stays outside the bundle (node: builtins) as require(): a vm.Script has no
  // loader for dynamic imports.
  supported: { 'dynamic-import': false },
  define: { 'import.meta.url': 'import_meta_url' },
  inject: [`${root}scripts/import-meta-url.js`],
});
copyFileSync(`${root}scripts/strata-cli.cjs`, `${root}dist/bundle/strata.cjs`);
chmodSync(`${root}dist/bundle/strata.cjs`, 0o755);


// The driver: an ES module; CommonJS dependencies get a require().
await build({
  ...common,
  entryPoints: [`${root}dist/driver/main.js`],
  outfile: `${root}dist/bundle/driver.mjs`,
  format: 'esm',
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
});
chmodSync(`${root}dist/bundle/driver.mjs`, 0o755);
