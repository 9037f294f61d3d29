#!/usr/bin/env bash
# Layer store benchmark: import, save and export of a ~200 MB tree of 20k files, next to tar -x and
# tar -c of the same tree and skopeo copy of the same image, in one run. Prints ms, MB/s and peak
# RSS per step (median of $BENCH_ROUNDS by time), and strata's throughput as a fraction of tar's.
# Target: at least half of tar's throughput, memory flat. `make bench` runs it after the mounts.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
. "$HERE/bench/lib.sh"
B=${BENCH_DIR:-/var/tmp/strata-bench}/store
ROUNDS=${BENCH_ROUNDS:-5}
mkdir -p "$B"
TREE=$B/tree
if [ ! -f "$B/.ready" ]; then
  echo "preparing a 20k-file, ~200 MB tree in $TREE (once)..." >&2
  rm -rf "$TREE" && mkdir -p "$TREE"
  # Sizes from 1 to ~20 KB, from one random pool (fast to write, not compressible).
  head -c $((32 << 20)) /dev/urandom > "$B/pool"
  python3 - "$TREE" "$B/pool" <<'PY'
import os, random, sys
root, pool = sys.argv[1], open(sys.argv[2], 'rb').read()
random.seed(1)
for d in range(200):
    dd = os.path.join(root, f'd{d:03}')
    os.mkdir(dd)
    for f in range(100):
        n = random.randint(1, 20000)
        o = random.randint(0, len(pool) - n)
        with open(os.path.join(dd, f'f{f:03}'), 'wb') as fh:
            fh.write(pool[o:o + n])
PY
  tar -C "$TREE" -cf "$B/tree.tar" .
  touch "$B/.ready"
fi
SIZE=$(stat -c %s "$B/tree.tar")
R=$B/root
# A previous run's leftovers go first, and their inodes are given time to become allocatable.
if [ -e "$R" ] || [ -e "$B/out" ]; then rm -rf "$R" "$B/out"; settle; fi
mkdir -p "$B/out" "$R"
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# One sample of each step per round, the steps interleaved (tar -x, import, tar -c, save, export,
# skopeo), so that tar and strata meet the same state of this noisy VM; the ratios are taken per
# round and their median reported. Page cache dropped before each step. Outputs get names new to
# each round and are deleted only at the end, because on this VM's journal-less ext4, creating
# files soon after deleting many scans the recently freed inodes (ialloc's recently_deleted),
# which made whichever step followed a deletion up to 3x slower.
declare -A SAMPLES
one() { # name cmd [prep]: appends "ms rss_kb" to SAMPLES[name]
  local name=$1 cmd=$2 prep=${3:-true}
  bash -c "$prep" >/dev/null 2>&1
  drop_caches
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$B/rss" bash -c "$cmd" >/dev/null 2>&1 || { echo "failed: $cmd" >&2; exit 1; }
  t1=$(date +%s%N)
  SAMPLES[$name]+="$(( (t1 - t0) / 1000000 )) $(tail -1 "$B/rss")"$'\n'
}
for r in $(seq "$ROUNDS"); do
  one tar-x "tar -C $B/out/tx$r -xf $B/tree.tar" "mkdir $B/out/tx$r"
  # strata import is durable (flushed before it is recorded); this is tar with the same promise.
  one tar-x-sync "tar -C $B/out/ty$r -xf $B/tree.tar && sync -f $B/out/ty$r" "mkdir $B/out/ty$r"
  one import "strata --root $R/import$r import $B/tree.tar bench:1"
  one tar-c "tar -C $TREE -cf $B/out/c$r.tar ."
  one save "strata --root $R/import1 save bench:1 -o $B/out/s$r.tar"
  one export "strata --root $R/import1 export bench:1 -o $B/out/e$r.tar"
  one skopeo "skopeo copy -q docker-archive:$B/out/s1.tar oci:$B/out/sk$r:bench"
done

row() { # name "ms rss"
  local ms rss
  read -r ms rss <<< "$2"
  printf '| %s | %d | %.0f | %d |\n' "$1" "$ms" "$(echo "scale=1; $SIZE / 1000000 / ($ms / 1000)" | bc)" "$(( rss / 1024 ))"
}

echo "| step | ms | MB/s | peak RSS MB |"
echo "| --- | ---: | ---: | ---: |"
row "tar -x (reference for import)" "$(pick tar-x)"
row "tar -x, then sync -f (durable, as strata import is)" "$(pick tar-x-sync)"
row "strata import" "$(pick import)"
row "tar -c (reference for save and export)" "$(pick tar-c)"
row "strata save (docker-archive)" "$(pick save)"
row "strata export" "$(pick export)"
row "skopeo copy docker-archive -> oci (peer)" "$(pick skopeo)"
echo
echo "throughput vs tar, median of $ROUNDS interleaved rounds: import $(ratio tar-x import), save $(ratio tar-c save), export $(ratio tar-c export) (target >= 0.5); import vs durable tar -x $(ratio tar-x-sync import)"
rm -rf "$B/root" "$B/out"
