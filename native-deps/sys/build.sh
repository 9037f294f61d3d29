#!/usr/bin/env bash
# Build the strata_sys N-API addon (build/Release/strata_sys.node), but only
# when it is missing or older than its sources. Safe to run repeatedly.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"

out=build/Release/strata_sys.node
fresh=true
for src in *.c *.h binding.gyp; do
  [[ -f $out && $out -nt $src ]] || fresh=false
done
if $fresh; then
  exit 0
fi

gyp=../../node_modules/.bin/node-gyp
if [[ ! -x $gyp ]]; then
  echo "native-deps/sys/build.sh: $gyp not found; run 'npm install' in the project root first" >&2
  exit 1
fi

# node-gyp downloads Node's headers unless told where they are, and this
# build must work offline. When the running node ships its headers (a distro
# package puts them in <prefix>/include/node), point node-gyp at them. An
# explicit npm_config_nodedir wins.
args=()
if [[ -z ${npm_config_nodedir:-} ]] && node_bin=$(command -v node); then
  prefix=$(dirname "$(dirname "$(readlink -f "$node_bin")")")
  if [[ -f $prefix/include/node/node_api.h && -f $prefix/include/node/common.gypi ]]; then
    args+=("--nodedir=$prefix")
  fi
fi

if ! "$gyp" rebuild "${args[@]}"; then
  echo "native-deps/sys/build.sh: node-gyp rebuild failed (see output above)" >&2
  exit 1
fi
if [[ ! -f $out ]]; then
  echo "native-deps/sys/build.sh: node-gyp succeeded but $out is missing" >&2
  exit 1
fi
