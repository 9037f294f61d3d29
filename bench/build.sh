#!/usr/bin/env bash
# Build benchmark: the same Dockerfiles built by strata and by a private dockerd 20.10 on overlay2,
# with the classic builder and with BuildKit, in one run on one busybox base: a cold build (no
# cache), an unchanged rebuild, and a rebuild after changing one file. Prints ms (median of
# $BENCH_ROUNDS) and strata's ratio to BuildKit. Targets: unchanged rebuild under 300 ms; cold and
# one-file-change builds within 2x of BuildKit. `make bench` runs it; not part of the tests.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
B=${BENCH_DIR:-/var/tmp/strata-bench}/build
ROUNDS=${BENCH_ROUNDS:-3}
DOCKER=/usr/bin/docker
. "$HERE/bench/lib.sh"
fresh_dir "$B"
SOCK=$B/docker.sock

cleanup() {
  if [ -f "$B/docker.pid" ]; then
    kill "$(cat "$B/docker.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [ -e "$B/docker.pid" ] || break; sleep 0.2; done
  fi
  # dockerd leaves its mounts behind: unmount everything under the bench dir, deepest first.
  awk -v d="$B/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
trap cleanup EXIT

dockerd --data-root "$B/docker" --exec-root "$B/exec" -H "unix://$SOCK" --pidfile "$B/docker.pid" \
  --iptables=false --bridge=none > "$B/dockerd.log" 2>&1 &
for _ in $(seq 100); do "$DOCKER" -H "unix://$SOCK" info > /dev/null 2>&1 && break; sleep 0.2; done
d() { "$DOCKER" -H "unix://$SOCK" "$@"; }

bash "$HERE/native-deps/busybox-rootfs.sh" "$B/busybox.tar"
d import "$B/busybox.tar" busybox:latest > /dev/null
STORE=$B/strata
strata --root "$STORE" import "$B/busybox.tar" busybox:latest > /dev/null

# A realistic context: 5,000 files of 1-8 KB in 50 directories, several RUN and COPY steps.
GEN=$B/ctx-5k
mkdir -p "$GEN"
python3 - "$GEN" <<'PY'
import os, random, sys
root = sys.argv[1]
random.seed(7)
for d in range(50):
    os.makedirs(os.path.join(root, 'src', f'pkg{d:02}'))
    for f in range(100):
        with open(os.path.join(root, 'src', f'pkg{d:02}', f'mod{f:03}.txt'), 'wb') as fh:
            fh.write(os.urandom(random.randint(1024, 8192)))
open(os.path.join(root, 'config.txt'), 'w').write('version=1\n')
PY
cat > "$GEN/Dockerfile" <<'DF'
FROM busybox
RUN mkdir -p /opt/app && echo base > /opt/app/base.txt
COPY src/ /opt/app/src/
RUN find /opt/app/src -type f | wc -l > /opt/app/count && du -s /opt/app/src > /opt/app/size
COPY config.txt /opt/app/config.txt
RUN cat /opt/app/config.txt > /opt/app/config.copy && ls -R /opt/app > /opt/app/listing
WORKDIR /opt/app
ENV MODE=bench
CMD ["cat", "/opt/app/count"]
DF
EXAMPLE=$B/ctx-example
cp -r "$HERE/examples/app" "$EXAMPLE"


# One round of BUILDER on CONTEXT: a cold build, an unchanged rebuild and a rebuild after a change
# to CHANGE_FILE, each appended to SAMPLES[NAME/BUILDER/step].
declare -A SAMPLES
round() {
  local who=$1 ctx=$2 file=$3 name=$4 cmd
  case $who in
    strata) cmd=(strata --root "$STORE" build -t "bench:$who" "$ctx") ;;
    classic) cmd=(env DOCKER_BUILDKIT=0 "$DOCKER" -H "unix://$SOCK" build --network none -t "bench:$who" "$ctx") ;;
    buildkit) cmd=(env DOCKER_BUILDKIT=1 "$DOCKER" -H "unix://$SOCK" build --network none -t "bench:$who" "$ctx") ;;
  esac
  echo "version=$RANDOM-$RANDOM" > "$ctx/$file"
  SAMPLES[$name/$who/cold]+="$(ms "${cmd[@]}" --no-cache) "
  SAMPLES[$name/$who/same]+="$(ms "${cmd[@]}") "
  echo "changed=$RANDOM" >> "$ctx/$file"
  SAMPLES[$name/$who/changed]+="$(ms "${cmd[@]}") "
}
med() { printf '%s\n' ${SAMPLES[$1]} | median; }

echo "| Dockerfile | step | strata ms | classic builder ms | BuildKit ms | strata / BuildKit | target |"
echo "| --- | --- | ---: | ---: | ---: | ---: | --- |"
# Each builder's rounds in a row, each builder starting after a pause (see lib.sh): none
# meets the inodes another one just freed.
for pair in "example:$EXAMPLE:conf/app.conf" "5k files:$GEN:config.txt"; do
  IFS=: read -r name ctx file <<< "$pair"
  for who in strata classic buildkit; do
    settle
    for _ in $(seq "$ROUNDS"); do round "$who" "$ctx" "$file" "$name"; done
  done
  sc=$(med "$name/strata/cold"); ss=$(med "$name/strata/same"); sx=$(med "$name/strata/changed")
  cc=$(med "$name/classic/cold"); cs=$(med "$name/classic/same"); cx=$(med "$name/classic/changed")
  kc=$(med "$name/buildkit/cold"); ks=$(med "$name/buildkit/same"); kx=$(med "$name/buildkit/changed")
  quotient() { echo "scale=2; $1 / $2" | bc; }
  echo "| $name | cold | $sc | $cc | $kc | $(quotient "$sc" "$kc") | 2 |"
  echo "| $name | unchanged rebuild | $ss | $cs | $ks | $(quotient "$ss" "$ks") | < 300 ms |"
  echo "| $name | one file changed | $sx | $cx | $kx | $(quotient "$sx" "$kx") | 2 |"
done
