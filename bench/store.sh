#!/usr/bin/env bash
# Layer store benchmark: import, save and export of a ~200 MB tree of 20k files, next to tar -x and
# tar -c of the same tree and skopeo copy of the same image, in one run. Prints ms, MB/s and peak
# RSS per step (median of $BENCH_ROUNDS by time), and strata's throughput as a fraction of tar's.
# Target: at least half of tar's throughput, memory flat. `make bench` runs it after the mounts.
set -euo pipefail
B=${BENCH_DIR:-/var/tmp/strata-bench}/store
ROUNDS=${BENCH_ROUNDS:-3}
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
rm -rf "$R" "$B/out" && mkdir -p "$B/out" "$R"
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# measure NAME CMD: prints "ms rss_kb" of the median round (by time). "@R@" in CMD and PREP
# becomes a name new to each round: outputs are deleted only at the end, because on this VM's
# journal-less ext4, creating files soon after deleting many scans the recently freed inodes
# (ialloc's recently_deleted), which made whichever step followed a deletion up to 3x slower.
measure() {
  local name=$1 cmd=$2 samples=()
  for r in $(seq "$ROUNDS"); do
    local c=${cmd//@R@/$name$r} p=${PREP:-true}
    bash -c "${p//@R@/$name$r}" >/dev/null 2>&1
    drop_caches
    local t0 t1 rss
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$B/rss" bash -c "$c" >/dev/null 2>&1
    rss=$(tail -1 "$B/rss")
    t1=$(date +%s%N)
    samples+=("$(( (t1 - t0) / 1000000 )) $rss")
  done
  printf '%s\n' "${samples[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p"
}

row() { # name ms rss
  printf '| %s | %d | %.0f | %d |\n' "$1" "$2" "$(echo "scale=1; $SIZE / 1000000 / ($2 / 1000)" | bc)" "$(( $3 / 1024 ))"
}

echo "| step | ms | MB/s | peak RSS MB |"
echo "| --- | ---: | ---: | ---: |"
read -r tx_ms tx_rss < <(PREP="mkdir $B/out/@R@" measure tar-x "tar -C $B/out/@R@ -xf $B/tree.tar")
row "tar -x (reference for import)" "$tx_ms" "$tx_rss"
read -r im_ms im_rss < <(measure import "strata --root $R/@R@ import $B/tree.tar bench:1")
R=$R/import1 # a store the import made
row "strata import" "$im_ms" "$im_rss"
read -r tc_ms tc_rss < <(PREP="rm -f $B/out/c.tar" measure tar-c "tar -C $TREE -cf $B/out/c.tar .")
row "tar -c (reference for save and export)" "$tc_ms" "$tc_rss"
read -r sv_ms sv_rss < <(PREP="rm -f $B/out/s.tar" measure save "strata --root $R save bench:1 -o $B/out/s.tar")
row "strata save (docker-archive)" "$sv_ms" "$sv_rss"
read -r ex_ms ex_rss < <(PREP="rm -f $B/out/e.tar" measure export "strata --root $R export bench:1 -o $B/out/e.tar")
row "strata export" "$ex_ms" "$ex_rss"
strata --root "$R" save bench:1 -o "$B/out/s.tar"
read -r sk_ms sk_rss < <(PREP="rm -rf $B/out/sk" measure skopeo "skopeo copy -q docker-archive:$B/out/s.tar oci:$B/out/sk:bench")
row "skopeo copy docker-archive -> oci (peer)" "$sk_ms" "$sk_rss"
echo
printf 'throughput vs tar: import %.2f, save %.2f, export %.2f (target >= 0.5)\n' \
  "$(echo "scale=2; $tx_ms / $im_ms" | bc)" "$(echo "scale=2; $tc_ms / $sv_ms" | bc)" "$(echo "scale=2; $tc_ms / $ex_ms" | bc)"
rm -rf "$B/root" "$B/out"
