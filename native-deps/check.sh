#!/usr/bin/env bash
# Check that the native side works: /dev/fuse, the patched fuse-native binding and its low-level
# session, the syscall helper, kernel overlayfs (the test oracle). Prints one line per problem; exit 1 if any.
set -uo pipefail
cd "$(dirname "$0")/.."
bad=0
problem() { echo "native-deps: $*" >&2; bad=1; }
[ -c /dev/fuse ] || problem "/dev/fuse is missing (modprobe fuse, or give the container --device /dev/fuse)"
# (read the whole list first: grep -q closing the pipe early would fail the check under pipefail)
libs=$(ldconfig -p)
grep -q 'libfuse.so.2 ' <<<"$libs" || problem "libfuse.so.2 is missing (apt-get install libfuse2)"
node -e "const F=require('fuse-native'); if (!F.STRATA_PATCHED) process.exit(3)" 2>/dev/null \
  || problem "fuse-native is not the patched build (bash native-deps/fuse-native/install.sh)"
grep -q 'libfuse3.so.3 ' <<<"$libs" || problem "libfuse3.so.3 is missing (apt-get install libfuse3-3)"
node -e "const L=require('fuse-native/lowlevel'); if (L.strata_lowlevel !== 1) process.exit(3)" 2>/dev/null \
  || problem "fuse-native's low-level session is not built (bash native-deps/fuse-native/install.sh)"
node -e "require('./native-deps/sys/build/Release/strata_sys.node')" 2>/dev/null \
  || problem "the syscall helper does not load (bash native-deps/sys/build.sh)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || problem "kernel overlayfs is not available (tests use it as the oracle)"
exit $bad
