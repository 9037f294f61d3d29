#!/usr/bin/env bash
# dockerd's storage driver benchmark: the same Dockerfiles built and run by dockerd 20.10 on the
# strata GraphDriver plugin, on overlay2 and on fuse-overlayfs, in one run: cold build
# (--no-cache), cached rebuild, one-file-change rebuild, and `docker run --rm IMAGE true`.
# Median of $BENCH_ROUNDS. Target: strata within 2x of dockerd on fuse-overlayfs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
B=${BENCH_DIR:-/var/tmp/strata-bench}/docker-driver
ROUNDS=${BENCH_ROUNDS:-3}
DOCKER=/usr/bin/docker
NAME=strata-bench-$$
. "$HERE/bench/lib.sh"
fresh_dir "$B"

SERVER_PID=
cleanup() {
  for d in strata overlay2 fuse-overlayfs; do
    if [ -f "$B/$d/docker.pid" ]; then
      kill "$(cat "$B/$d/docker.pid")" 2>/dev/null || true
      for _ in $(seq 100); do [ -e "$B/$d/docker.pid" ] || break; sleep 0.2; done
    fi
  done
  [ -z "$SERVER_PID" ] || { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
  strata driver uninstall --name "$NAME" 2>/dev/null || true
  awk -v d="$B/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
trap cleanup EXIT

strata --root "$B/plugin/store" driver serve --socket "$B/plugin/plugin.sock" 2> "$B/plugin.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q 'serving GraphDriver' "$B/plugin.log" 2>/dev/null && break; sleep 0.1; done
strata driver install --name "$NAME" --socket "$B/plugin/plugin.sock" > /dev/null

bash "$HERE/native-deps/busybox-rootfs.sh" "$B/busybox.tar"
start() { # name driver-flags...
  local d=$1; shift
  mkdir -p "$B/$d"
  dockerd --data-root "$B/$d/data" --exec-root "$B/$d/exec" -H "unix://$B/$d/docker.sock" --pidfile "$B/$d/docker.pid" \
    --iptables=false --bridge=none "$@" > "$B/$d/dockerd.log" 2>&1 &
  for _ in $(seq 150); do "$DOCKER" -H "unix://$B/$d/docker.sock" info > /dev/null 2>&1 && break; sleep 0.2; done
  "$DOCKER" -H "unix://$B/$d/docker.sock" import "$B/busybox.tar" busybox:latest > /dev/null
}
start strata --experimental --storage-driver "$NAME"
start overlay2 --storage-driver overlay2
start fuse-overlayfs --storage-driver fuse-overlayfs

CTX=$B/ctx
cp -r "$HERE/examples/app" "$CTX"

measure() { # driver -> "cold cached changed run"
  local d=$1 cold=() same=() changed=() runs=()
  local docker=(env DOCKER_BUILDKIT=0 "$DOCKER" -H "unix://$B/$d/docker.sock")
  for r in $(seq "$ROUNDS"); do
    echo "version=$r-$RANDOM" > "$CTX/conf/app.conf"
    cold+=("$(ms "${docker[@]}" build --network none --no-cache -t bench:1 "$CTX")")
    same+=("$(ms "${docker[@]}" build --network none -t bench:1 "$CTX")")
    echo "changed=$r-$RANDOM" >> "$CTX/conf/app.conf"
    changed+=("$(ms "${docker[@]}" build --network none -t bench:1 "$CTX")")
    runs+=("$(ms "${docker[@]}" run --rm --network none bench:1 true)")
  done
  echo "$(printf '%s\n' "${cold[@]}" | median) $(printf '%s\n' "${same[@]}" | median) $(printf '%s\n' "${changed[@]}" | median) $(printf '%s\n' "${runs[@]}" | median)"
}

read -r sc ss sx sr < <(measure strata)
read -r oc os ox or < <(measure overlay2)
read -r fc fs fx fr < <(measure fuse-overlayfs)
quotient() { echo "scale=2; $1 / $2" | bc; }
echo "| step (examples/app, classic builder) | strata plugin ms | overlay2 ms | fuse-overlayfs ms | strata / fuse-overlayfs | strata / overlay2 |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
echo "| cold build | $sc | $oc | $fc | $(quotient "$sc" "$fc") | $(quotient "$sc" "$oc") |"
echo "| cached rebuild | $ss | $os | $fs | $(quotient "$ss" "$fs") | $(quotient "$ss" "$os") |"
echo "| one file changed | $sx | $ox | $fx | $(quotient "$sx" "$fx") | $(quotient "$sx" "$ox") |"
echo "| docker run --rm IMAGE true | $sr | $or | $fr | $(quotient "$sr" "$fr") | $(quotient "$sr" "$or") |"
