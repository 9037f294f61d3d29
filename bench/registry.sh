#!/usr/bin/env bash
# Registry benchmark: push and pull of a ~200 MB image (the store benchmark's tree of 20k files as
# one layer) with strata and with skopeo against the same local registry (Docker Distribution),
# in one run, median of $BENCH_ROUNDS. Peak RSS per step. Target: strata within 1.5x of skopeo,
# memory flat.
# A pull is measured against skopeo doing the same job: copying into containers-storage (the
# overlay driver, in a root of the benchmark's own), which is how podman and buildah pull: the
# blobs checked, decompressed and unpacked into layer directories. Two more rows give context:
# skopeo copying to an OCI layout only stores the blobs (the lower bound any pull can approach),
# and skopeo then umoci unpack (and a sync) gives a rootfs with the usual tools.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
B=$(realpath -m "${BENCH_DIR:-/var/tmp/strata-bench}/registry")
ROUNDS=${BENCH_ROUNDS:-3}
TREE_TAR=${BENCH_DIR:-/var/tmp/strata-bench}/store/tree.tar
# containers-storage's overlay driver bind-mounts its home onto itself; released after each pull
# (and here, should an earlier run have been cut short).
# Deepest first (the reverse of /proc/mounts' order); one that will not go is detached.
release_cs() { awk -v b="$B/" 'index($2, b) == 1 {print $2}' /proc/mounts | tac | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done; }
release_cs
. "$HERE/bench/lib.sh"
fresh_dir "$B"
if [ ! -f "$TREE_TAR" ]; then
  echo "the store benchmark's tree is missing: run bash bench/store.sh first" >&2
  exit 1
fi
# A fresh registry for each round, so that no round finds the blobs of another; skopeo's own
# record of which registry has which blob is removed before each of its pushes for the same reason.
REG_PID=
start_registry() { # round
  local port
  [ -z "$REG_PID" ] || { kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  REG=127.0.0.1:$port
  cat > "$B/registry$1.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $B/data$1
  delete:
    enabled: true
http:
  addr: $REG
YML
  docker-registry serve "$B/registry$1.yml" > "$B/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 50); do curl -sf "http://$REG/v2/" > /dev/null && break; sleep 0.1; done
}
trap '[ -z "$REG_PID" ] || kill $REG_PID 2>/dev/null || true; release_cs' EXIT
SKOPEO_CACHE=/var/lib/containers/cache/blob-info-cache-v1.boltdb

S=$B/store
strata --root "$S" import "$TREE_TAR" bench:1 > /dev/null
strata --root "$S" save bench:1 -o "$B/bench.tar"
SIZE=$(stat -c %s "$TREE_TAR")

declare -A SAMPLES
one() { # name cmd
  local t0 t1
  sync; echo 3 > /proc/sys/vm/drop_caches
  t0=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$B/rss" bash -c "$2" > /dev/null 2>&1 || { echo "failed: $2" >&2; tail -5 "$B/registry.log" >&2; exit 1; }
  t1=$(date +%s%N)
  SAMPLES[$1]+="$(( (t1 - t0) / 1000000 )) $(tail -1 "$B/rss")"$'\n'
}

for r in $(seq "$ROUNDS"); do
  start_registry "$r"
  # A copy of the store that has never pushed: strata's record of registry blobs is empty.
  rm -rf "$S.r$r" && cp -a "$S" "$S.r$r"
  rm -f "$SKOPEO_CACHE"
  one strata-push "strata --root $S.r$r push bench:1 $REG/strata$r/bench:1"
  one skopeo-push "skopeo copy -q --dest-tls-verify=false docker-archive:$B/bench.tar docker://$REG/skopeo$r/bench:1"
  one strata-pull "strata --root $B/pull$r pull $REG/skopeo$r/bench:1"
  one skopeo-cs "skopeo copy -q --src-tls-verify=false docker://$REG/skopeo$r/bench:1 'containers-storage:[overlay@$B/cs$r+$B/csrun$r]localhost/bench:1'"
  release_cs
  one skopeo-pull "skopeo copy -q --src-tls-verify=false docker://$REG/strata$r/bench:1 oci:$B/oci$r:bench"
  # What a strata pull gives (a rootfs on disk), with the usual tools: skopeo, then umoci.
  one skopeo-umoci "skopeo copy -q --src-tls-verify=false docker://$REG/skopeo$r/bench:1 oci:$B/ou$r:bench && umoci unpack --image $B/ou$r:bench $B/unpacked$r && sync -f $B/unpacked$r"
done
row() { local ms rss; read -r ms rss <<< "$(pick "$2")"; printf '| %s | %d | %.0f | %d |\n' "$1" "$ms" "$(echo "scale=1; $SIZE / 1000000 / ($ms / 1000)" | bc)" "$(( rss / 1024 ))"; }
echo "| step (215 MB layer, 20k files) | ms | MB/s (of the tar) | peak RSS MB |"
echo "| --- | ---: | ---: | ---: |"
row "strata push (gzip)" strata-push
row "skopeo copy docker-archive -> docker://" skopeo-push
row "strata pull (into the store, unpacked)" strata-pull
row "skopeo copy docker:// -> containers-storage: (unpacked, as podman pull)" skopeo-cs
row "skopeo copy docker:// -> oci: (blobs only)" skopeo-pull
row "skopeo copy, then umoci unpack and sync (a rootfs, as strata pull gives)" skopeo-umoci
echo
echo "strata / skopeo, median of $ROUNDS rounds (target <= 1.5): push $(ratio strata-push skopeo-push), pull $(ratio strata-pull skopeo-cs)"
echo "pull / skopeo blobs only $(ratio strata-pull skopeo-pull); pull / (skopeo + umoci unpack) $(ratio strata-pull skopeo-umoci)"
