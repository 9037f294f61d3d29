#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS STRATA_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node
/*
 * The `strata` command: runs the bundled CLI (strata-main.cjs, next to this file) through V8's
 * code cache. Every command starts a fresh Node; compiling the 700 KB bundle and the functions a
 * command runs was ~60 ms of a cached `strata build`.
 *
 * The first line starts Node without NODE_EXTRA_CA_CERTS: with it, Node parses all its root
 * certificates and the file's at every start (~85 ms on the benchmark machine, which sets it),
 * and strata starts Node for each command and each mount. The value is passed on as
 * STRATA_EXTRA_CA_CERTS, which net/http.ts trusts when a download needs it.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

const file = path.join(__dirname, 'strata-main.cjs');
const cacheFile = file + '.v8cache';
let cachedData;
try {
  cachedData = fs.readFileSync(cacheFile);
} catch {
  // First run: no cache yet.
}
const script = new vm.Script(Module.wrap(fs.readFileSync(file, 'utf8').replace(/^#!/, '//')), { filename: file, cachedData });
// After a command, the cache holds the functions it compiled as well as those it was given. It
// is written when there was none (or V8 refused it: the bundle changed), and after the first run
// of each other command, so it grows to cover the commands used; making it costs ~10 ms, so the
// commands already in it (listed beside it) skip that.
const verb = process.argv.slice(2).find((a, i, all) => !a.startsWith('-') && all[i - 1] !== '--root') ?? '';
const listFile = cacheFile + '.commands';
let listed = [];
try {
  listed = fs.readFileSync(listFile, 'utf8').split('\n');
} catch {
  // No list yet.
}
const fresh = cachedData === undefined || script.cachedDataRejected;
if (fresh || !listed.includes(verb)) {
  process.once('exit', () => {
    try {
      const data = script.createCachedData();
      const tmp = `${cacheFile}.${process.pid}`;
      fs.writeFileSync(tmp, data);
      fs.renameSync(tmp, cacheFile);
      fs.writeFileSync(tmp, [...(fresh ? [] : listed), verb].filter((v) => v !== '').join('\n'));
      fs.renameSync(tmp, listFile);
    } catch {
      // A read-only install runs without the cache.
    }
  });
}
const mod = new Module(file, module);
mod.filename = file;
mod.paths = Module._nodeModulePaths(__dirname);
const requireFromBundle = (id) => mod.require(id);
requireFromBundle.resolve = (request, options) => Module._resolveFilename(request, mod, false, options);
script.runInThisContext().call(mod.exports, mod.exports, requireFromBundle, mod, file, __dirname);
