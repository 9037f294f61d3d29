#!/usr/bin/env bash
# Applies strata.patch to node_modules/fuse-native and rebuilds it from source against Debian's
# libfuse2 (pkg-config fuse). Idempotent: does nothing when the installed package already carries
# this exact patch and its build. Run from anywhere: bash native-deps/fuse-native/install.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PKG="$ROOT/node_modules/fuse-native"
PATCH="$HERE/strata.patch"
MARKER="$PKG/.strata-patch-sha256"
ORIG="$PKG/.strata-orig"            # pristine copies of the files the patch touches
FILES=(binding.gyp fuse-native.c index.js)
VERSION=2.2.6

die () { echo "fuse-native install: $*" >&2; exit 1; }
log () { echo "fuse-native install: $*"; }

[ -d "$PKG" ] || die "$PKG is missing: run npm install first"
[ -f "$PATCH" ] || die "$PATCH is missing"
installed="$(PKG="$PKG" node -p "require(process.env.PKG + '/package.json').version")"
[ "$installed" = "$VERSION" ] || die "strata.patch is for fuse-native $VERSION, found $installed"

# Types for the patched API (TypeScript finds index.d.ts beside index.js).
cmp -s "$HERE/index.d.ts" "$PKG/index.d.ts" || cp "$HERE/index.d.ts" "$PKG/index.d.ts"

# The low-level session (lowlevel/): sources the patched binding.gyp builds, its loader and types.
sum="$(cat "$PATCH" "$HERE"/lowlevel/* | sha256sum | cut -d' ' -f1)"
if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$sum" ] && [ -f "$PKG/build/Release/fuse.node" ] && [ -f "$PKG/build/Release/fuse_ll.node" ]; then
  log "up to date (patch $sum)"
  exit 0
fi

command -v patch >/dev/null || die "'patch' not found (apt-get install patch)"
command -v pkg-config >/dev/null || die "'pkg-config' not found (apt-get install pkg-config)"
pkg-config --exists fuse || die "libfuse2 headers not found (apt-get install libfuse-dev)"
pkg-config --exists fuse3 || die "libfuse3 headers not found (apt-get install libfuse3-dev)"

rm -f "$MARKER"
cd "$PKG"

# 1. Back to pristine sources: from our backup, else check they are pristine, else re-fetch them.
if [ -d "$ORIG" ]; then
  for f in "${FILES[@]}"; do cp "$ORIG/$f" "$f"; done
elif patch -p1 --forward --dry-run --silent < "$PATCH" >/dev/null 2>&1; then
  mkdir -p "$ORIG.tmp"
  for f in "${FILES[@]}"; do cp "$f" "$ORIG.tmp/$f"; done
  mv "$ORIG.tmp" "$ORIG"
else
  log "sources are not pristine; fetching fuse-native@$VERSION"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "fuse-native@$VERSION" >/dev/null && tar xzf "fuse-native-$VERSION.tgz") \
    || die "npm pack fuse-native@$VERSION failed"
  mkdir -p "$ORIG"
  for f in "${FILES[@]}"; do cp "$tmp/package/$f" "$ORIG/$f"; cp "$tmp/package/$f" "$f"; done
fi

# 2. Patch, and add the low-level session.
patch -p1 --forward --no-backup-if-mismatch < "$PATCH" || die "strata.patch does not apply"
rm -rf lowlevel && cp -r "$HERE/lowlevel" lowlevel

# 3. Build against system libfuse2. Node's own headers (no download: the machine may be offline).
gyp="$ROOT/node_modules/.bin/node-gyp"
if [ ! -x "$gyp" ]; then
  gyp="$(npm prefix -g)/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
  [ -f "$gyp" ] || die "node-gyp not found (npm install --include=dev)"
  gyp="node $gyp"
fi
gypargs=()
nodedir="$(cd "$(dirname "$(readlink -f "$(command -v node)")")/.." && pwd)"
if [ -f "$nodedir/include/node/node_api.h" ]; then gypargs+=("--nodedir=$nodedir"); fi
$gyp rebuild "${gypargs[@]}" > build.log 2>&1 || { tail -40 build.log >&2; die "node-gyp rebuild failed (full log: $PKG/build.log)"; }

# 4. Check what Node will actually load: node-gyp-build prefers build/Release over prebuilds/.
PKG="$PKG" node -e "
  const path = require('path')
  const pkg = process.env.PKG
  const load = require(require.resolve('node-gyp-build', { paths: [pkg] }))
  const file = load.path(pkg)
  if (file !== path.join(pkg, 'build/Release/fuse.node')) throw new Error('would load ' + file)
  if (load(pkg).strata_patched !== 1) throw new Error(file + ' lacks the strata_patched marker')
  require(pkg) // index.js checks the marker too
" || die "the rebuilt binding is not the one that loads"
linked="$(ldd build/Release/fuse.node | sed -n 's/.*libfuse\.so\.2 => \([^ ]*\).*/\1/p')"
system="$(pkg-config --variable=libdir fuse)/libfuse.so.2"
[ -n "$linked" ] && [ "$(readlink -f "$linked")" = "$(readlink -f "$system")" ] \
  || die "build/Release/fuse.node does not link the system libfuse2 ($system): ${linked:-not linked}"

PKG="$PKG" node -e "
  const ll = require(process.env.PKG + '/lowlevel')
  if (ll.strata_lowlevel !== 1 || typeof ll.mount !== 'function') throw new Error('fuse_ll.node lacks the low-level API')
" || die "the low-level binding does not load"
linked3="$(ldd build/Release/fuse_ll.node | sed -n 's/.*libfuse3\.so\.3 => \([^ ]*\).*/\1/p')"
[ -n "$linked3" ] || die "build/Release/fuse_ll.node does not link libfuse3"

echo "$sum" > "$MARKER"
log "patched and rebuilt (patch $sum)"
