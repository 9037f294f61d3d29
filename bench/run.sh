#!/usr/bin/env bash
# strata benchmarks: the same workloads on kernel overlayfs, strata and fuse-overlayfs, in one
# run, over the same lower layer; each workload gets a fresh mount and a fresh upper. Prints
# milliseconds per workload and each union's ratio to kernel overlayfs (lower is better), next to
# the target for strata. Not part of the tests: `make bench`. Needs root and ~4 GB in $BENCH_DIR.
set -euo pipefail
B=${BENCH_DIR:-/var/tmp/strata-bench}
SIZE_MB=${BENCH_FILE_MB:-1024}
FS_LIST=(kernel strata fuse-overlayfs)
declare -A MS

mounted() { grep -q " $1 " /proc/mounts; }
cleanup() {
  for fs in "${FS_LIST[@]}"; do
    m="$B/$fs/mnt"
    if mounted "$m"; then
      case $fs in strata) strata umount "$m" || umount -l "$m" ;; fuse-overlayfs) fusermount3 -u "$m" || umount -l "$m" ;; *) umount "$m" || umount -l "$m" ;; esac
    fi
  done
}
trap 'cleanup; rm -rf "$B/trash"' EXIT

now() { date +%s%N; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

prepare_lower() {
  local L=$B/lower
  [ -f "$L/.ready-$SIZE_MB" ] && return
  echo "preparing the lower layer in $L (once)..."
  rm -rf "$L" && mkdir -p "$L"/{tree,bigdir,victims}
  head -c $((SIZE_MB << 20)) /dev/urandom > "$L/big"
  head -c $((256 << 20)) /dev/urandom > "$L/copyup"
  for d in $(seq 200); do mkdir "$L/tree/d$d"; for f in $(seq 100); do echo "$d $f" > "$L/tree/d$d/f$f"; done; done
  (cd "$L/bigdir" && seq 10000 | xargs touch)
  (cd "$L/victims" && seq 5000 | xargs touch)
  tar -C /usr -cf "$B/src.tar" include
  touch "$L/.ready-$SIZE_MB"
}

# Old uppers are moved aside and deleted only at the end: ext4 without a journal (this VM's) makes
# every inode allocation scan past inodes deleted in the last seconds, so deleting one union's
# files right before the next one runs would slow that one's creates several times over.
TRASH=$B/trash
rm -rf "$TRASH" && mkdir -p "$TRASH"
discard() { [ ! -e "$1" ] || mv "$1" "$TRASH/$(date +%s%N)"; }

mount_fs() {
  local fs=$1 d=$B/$1
  discard "$d" && mkdir -p "$d"/{upper,work,mnt}
  case $fs in
    kernel) mount -t overlay overlay -o "lowerdir=$B/lower,upperdir=$d/upper,workdir=$d/work" "$d/mnt" ;;
    strata) strata mount --lower "$B/lower" --upper "$d/upper" --work "$d/work" "$d/mnt" ;;
    fuse-overlayfs) fuse-overlayfs -o "lowerdir=$B/lower,upperdir=$d/upper,workdir=$d/work" "$d/mnt" 2>/dev/null ;;
  esac
}

umount_fs() {
  local fs=$1 m=$B/$1/mnt
  case $fs in strata) strata umount "$m" ;; fuse-overlayfs) fusermount3 -u "$m" ;; *) umount "$m" ;; esac
  discard "$B/$fs"
}

# run NAME WARMUP-COMMAND MEASURED-COMMAND: for each union, a fresh mount, caches dropped, the
# warm-up (if any), then the measured command with the mountpoint as $M. Rounds interleave the
# unions (this VM's disk is noisy) and the median of $ROUNDS is kept.
ROUNDS=${BENCH_ROUNDS:-3}
run() {
  local name=$1 warm=$2 cmd=$3
  declare -A samples=()
  for r in $(seq "$ROUNDS"); do
    for fs in "${FS_LIST[@]}"; do
      mount_fs "$fs"
      export M=$B/$fs/mnt
      drop_caches
      [ -n "$warm" ] && bash -c "$warm" >/dev/null
      local t0; t0=$(now)
      bash -c "$cmd" >/dev/null
      samples[$fs]+="$(( ($(now) - t0) / 1000000 )) "
      umount_fs "$fs"
    done
  done
  for fs in "${FS_LIST[@]}"; do
    MS[$name,$fs]=$(tr ' ' '\n' <<<"${samples[$fs]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  done
  printf '%-34s %9s %9s %9s   (all: %s| %s| %s)\n' "$name" "${MS[$name,kernel]}" "${MS[$name,strata]}" "${MS[$name,fuse-overlayfs]}" \
    "${samples[kernel]}" "${samples[strata]}" "${samples[fuse-overlayfs]}" >&2
}

prepare_lower
echo "workload (median of $ROUNDS)           kernel ms strata ms  f-ovl ms" >&2
run "seq read ${SIZE_MB}M cold"   ""                        'cat $M/big > /dev/null'
run "seq read ${SIZE_MB}M warm"   'cat $M/big > /dev/null'  'cat $M/big > /dev/null'
run "random 4k reads (64 MiB)"    ""                        'fio --name=r --filename=$M/big --rw=randread --bs=4k --io_size=64M --ioengine=psync --randseed=1 --output=/dev/null'
run "find + stat 20k files cold"  ""                        'find $M/tree -type f -exec stat -c %s {} + > /dev/null'
run "readdir 10k entries"         ""                        'ls -f $M/bigdir > /dev/null'
run "create 5k files"             ""                        'mkdir $M/new && cd $M/new && seq 5000 | xargs touch'
run "delete 5k lower files"       ""                        'cd $M/victims && seq 5000 | xargs rm'
run "copy-up 256M (append 1 byte)" ""                       'printf x >> $M/copyup'
run "untar /usr/include"          ""                        'tar -C $M -xf '"$B"'/src.tar'
run "seq write 1G + fsync"        ""                        'dd if=/dev/zero of=$M/out bs=1M count=1024 conv=fsync status=none'

declare -A TARGET=(
  ["seq read ${SIZE_MB}M cold"]=2 ["seq read ${SIZE_MB}M warm"]=3 ["random 4k reads (64 MiB)"]=1.5
  ["find + stat 20k files cold"]=3 ["readdir 10k entries"]=3 ["create 5k files"]=2 ["delete 5k lower files"]=4
  ["copy-up 256M (append 1 byte)"]=1.0 ["untar /usr/include"]=3.5 ["seq write 1G + fsync"]=1.5
)
echo
echo "| workload | kernel ms | strata ms | fuse-overlayfs ms | strata / kernel | fuse-overlayfs / kernel | target |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for name in "seq read ${SIZE_MB}M cold" "seq read ${SIZE_MB}M warm" "random 4k reads (64 MiB)" "find + stat 20k files cold" \
  "readdir 10k entries" "create 5k files" "delete 5k lower files" "copy-up 256M (append 1 byte)" "untar /usr/include" "seq write 1G + fsync"; do
  k=${MS[$name,kernel]}; s=${MS[$name,strata]}; f=${MS[$name,fuse-overlayfs]}
  [ "$k" -gt 0 ] || k=1
  printf '| %s | %d | %d | %d | %.2f | %.2f | %s |\n' "$name" "$k" "$s" "$f" \
    "$(echo "scale=2; $s / $k" | bc)" "$(echo "scale=2; $f / $k" | bc)" "${TARGET[$name]}"
done
