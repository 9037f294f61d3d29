#!/usr/bin/env bash
# Everything strata needs on a fresh Debian 12 machine, idempotently: Debian packages, npm
# dependencies (with the install scripts package.json allows), fuse-native rebuilt with strata's
# patch against the system libfuse2, the syscall helper addon, then a check of the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash native-deps/apt.sh
if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ] || \
   { [ -f package-lock.json ] && [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi
bash native-deps/fuse-native/install.sh
bash native-deps/sys/build.sh
bash native-deps/check.sh
