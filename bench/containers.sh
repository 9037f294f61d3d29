#!/usr/bin/env bash
# Container-side copy-on-write benchmark: the same container workloads on kernel overlayfs, strata
# and fuse-overlayfs, in one run, over the same image: a copy-up storm (append a byte to 1,000 of
# 100,000 small lower files), a package-manager-like step (untar 5,000 files, rename 1,000 of them
# over lower files as dpkg does with .dpkg-new, fsync) and the start-to-exit time of a `true`
# container (`strata run --rm` next to runc on a kernel overlayfs and on a fuse-overlayfs rootfs).
# Prints ms (median of $BENCH_ROUNDS), strata's ratio to each of the others (lower is better) and
# the peak RSS (VmHWM) of the strata driver and of fuse-overlayfs. `make bench`; needs root.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
B=${BENCH_DIR:-/var/tmp/strata-bench}/containers
ROUNDS=${BENCH_ROUNDS:-3}
FS_LIST=(kernel strata fuse-overlayfs)
LAYERS=4 DIRS=200 PER_DIR=500 # 100,000 files: directory d lives in layer d % LAYERS
IMG=$B/image
TRASH=$B/trash
START=$(date +%s)
declare -A MS RSS
RUNC_IDS=()

mkdir -p "$B"
if awk -v d="$B/" 'index($2, d) == 1 {found = 1} END {exit !found}' /proc/mounts; then
  echo "containers.sh: mounts left under $B (an interrupted run?); unmount them first" >&2
  exit 1
fi

# Unmount everything mounted under $B (this script's unions and whatever `strata run` left
# there), deepest first, each with its own tool; delete the runc containers this run created.
cleanup() {
  local id
  for id in "${RUNC_IDS[@]}"; do runc delete -f "$id" >/dev/null 2>&1 || true; done
  awk -v d="$B/" 'index($2, d) == 1 {print $3, $2}' /proc/mounts | sort -r -k2 | while read -r type m; do
    case $type in
      fuse.strata) strata umount "$m" || umount -l "$m" || true ;;
      fuse.fuse-overlayfs) fusermount3 -u "$m" || umount -l "$m" || true ;;
      *) umount "$m" || umount -l "$m" || true ;;
    esac
  done
  rm -rf "$TRASH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s%N; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
mounted() { grep -q " $1 " /proc/mounts; }
median() { tr ' ' '\n' | awk NF | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
max() { tr ' ' '\n' | awk NF | sort -n | awk 'END {if (NR) print $1}'; }

# The image, once: $LAYERS lower layers holding $DIRS directories of $PER_DIR files of 64 B-4 KB
# under usr/share (merged across all layers), and the package tar: 4,000 new files in new
# directories plus 1,000 .dpkg-new files next to lower files (no entries for the lower
# directories, so tar does not change their metadata).
prepare_image() {
  local marker=$IMG/.ready-$LAYERS-$DIRS-$PER_DIR
  [ -f "$marker" ] && [ -f "$B/pkg.tar" ] && return
  echo "preparing a $((DIRS * PER_DIR))-file image in $IMG (once)..." >&2
  rm -rf "$IMG" "$B/pkg.tar" "$B/pkg-stage" && mkdir -p "$IMG" "$B/pkg-stage"
  python3 - "$IMG" "$B/pkg-stage" "$LAYERS" "$DIRS" "$PER_DIR" <<'PY'
import os, random, sys
img, stage = sys.argv[1], sys.argv[2]
layers, dirs, per_dir = map(int, sys.argv[3:6])
random.seed(3)
pool = os.urandom(8 << 20)
def write(path):
    n = random.randint(64, 4096)
    o = random.randint(0, len(pool) - n)
    with open(path, 'wb') as fh:
        fh.write(pool[o:o + n])
for d in range(dirs):
    dd = os.path.join(img, f'l{d % layers}', 'usr', 'share', f'd{d:03}')
    os.makedirs(dd)
    for f in range(per_dir):
        write(os.path.join(dd, f'f{f:03}'))
names = []
for p in range(40):
    pd = os.path.join('opt', 'pkg', f'p{p:02}')
    os.makedirs(os.path.join(stage, pd))
    names += ['opt', 'opt/pkg'] if p == 0 else []
    names.append(pd)
    for g in range(100):
        write(os.path.join(stage, pd, f'g{g:03}'))
        names.append(os.path.join(pd, f'g{g:03}'))
for d in range(dirs):
    for f in range(50, per_dir, 100):
        rel = os.path.join('usr', 'share', f'd{d:03}', f'f{f:03}.dpkg-new')
        os.makedirs(os.path.dirname(os.path.join(stage, rel)), exist_ok=True)
        write(os.path.join(stage, rel))
        names.append(rel)
open(os.path.join(stage, '..', 'pkg.list'), 'w').write('\n'.join(names) + '\n')
PY
  tar -C "$B/pkg-stage" --no-recursion -cf "$B/pkg.tar" -T "$B/pkg.list"
  rm -rf "$B/pkg-stage" "$B/pkg.list"
  touch "$marker"
}
LOWERS=$(for l in $(seq $((LAYERS - 1)) -1 0); do printf '%s:' "$IMG/l$l"; done | sed 's/:$//')

# The workloads' own processes (never the one serving the mount); the mountpoint is argv[1].
cat > "$B/storm.py" <<PY
import os, sys
m = sys.argv[1]
for d in range($DIRS):
    for f in range(0, $PER_DIR, 100):
        with open(os.path.join(m, 'usr', 'share', f'd{d:03}', f'f{f:03}'), 'ab') as fh:
            fh.write(b'x')
PY
cat > "$B/pkg-finish.py" <<PY
import os, sys
m = sys.argv[1]
done = []
for d in range($DIRS):
    for f in range(50, $PER_DIR, 100):
        p = os.path.join(m, 'usr', 'share', f'd{d:03}', f'f{f:03}')
        os.rename(p + '.dpkg-new', p)
        done.append(p)
for p in range(40):
    for g in range(100):
        done.append(os.path.join(m, 'opt', 'pkg', f'p{p:02}', f'g{g:03}'))
for p in done:
    fd = os.open(p, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
PY

# Old uppers are moved aside and deleted only at the end (see run.sh: on this VM's journal-less
# ext4, creating files right after deleting many is several times slower).
rm -rf "$TRASH" && mkdir -p "$TRASH"
discard() { [ ! -e "$1" ] || mv "$1" "$TRASH/$(date +%s%N)"; }

# fresh FS: an empty upper and work directory and a mountpoint; mount_fs FS LOWERS mounts them.
fresh() { discard "$B/$1" && mkdir -p "$B/$1"/{upper,work,mnt}; }
mount_fs() {
  local fs=$1 lowers=$2 d=$B/$1
  local o="lowerdir=$lowers,upperdir=$d/upper,workdir=$d/work"
  case $fs in
    kernel) mount -t overlay overlay -o "$o" "$d/mnt" ;;
    strata) strata mount -o "$o" "$d/mnt" ;;
    fuse-overlayfs) fuse-overlayfs -o "$o" "$d/mnt" 2>/dev/null ;;
  esac
  mounted "$d/mnt" || { echo "containers.sh: $fs did not mount $d/mnt" >&2; exit 1; }
}
umount_fs() {
  local fs=$1 m=$B/$1/mnt
  case $fs in strata) strata umount "$m" ;; fuse-overlayfs) fusermount3 -u "$m" ;; *) umount "$m" ;; esac
}

# daemon_pid FS: the process serving $B/FS/mnt (its command line holds the mountpoint); none for
# the kernel. hwm PID: sets HWM to its VmHWM in kB, without forking (it is read inside a timing).
daemon_pid() {
  [ "$1" = kernel ] && return
  ps -eo pid=,comm=,args= | awk -v m="$B/$1/mnt" '
    $2 !~ /^(ps|awk|mawk|gawk|grep|bash|sh)$/ && index($0, m) {print $1; exit}'
}
hwm() {
  HWM=
  [ -n "$1" ] || return 0
  local k v _
  while read -r k v _; do [ "$k" = VmHWM: ] && HWM=$v; done < "/proc/$1/status" || true
}

# run NAME CMD: for each round and each union (interleaved; this VM's disk is noisy), a fresh
# mount of the image, caches dropped, then CMD timed with the mountpoint as $M; the daemon's
# VmHWM is read right before unmounting. Keeps the median time and the largest VmHWM.
run() {
  local name=$1 cmd=$2 r fs pid t0 t1
  declare -A samples=() rss=()
  for r in $(seq "$ROUNDS"); do
    for fs in "${FS_LIST[@]}"; do
      fresh "$fs" && mount_fs "$fs" "$LOWERS"
      export M=$B/$fs/mnt
      pid=$(daemon_pid "$fs")
      drop_caches
      t0=$(now)
      bash -c "$cmd" >/dev/null
      t1=$(now)
      hwm "$pid"
      samples[$fs]+="$(( (t1 - t0) / 1000000 )) " rss[$fs]+="$HWM "
      umount_fs "$fs"
    done
  done
  record "$name" samples rss
}

# record NAME SAMPLES RSS (names of associative arrays keyed by union).
record() {
  local name=$1 fs
  local -n s=$2 m=$3
  for fs in "${FS_LIST[@]}"; do
    MS[$name,$fs]=$(median <<<"${s[$fs]:-}")
    RSS[$name,$fs]=$(max <<<"${m[$fs]:-}")
  done
  printf '%-44s %9s %9s %9s   (all: %s| %s| %s)\n' "$name" "${MS[$name,kernel]:-n/a}" "${MS[$name,strata]:-n/a}" \
    "${MS[$name,fuse-overlayfs]:-n/a}" "${s[kernel]:-}" "${s[strata]:-}" "${s[fuse-overlayfs]:-}" >&2
}

# Start-to-exit of a `true` container on a busybox rootfs. runc's time includes mounting the
# union (a fresh upper) and unmounting it, as `strata run --rm` has to. Measured warm (one
# untimed round first, no cache drop): otherwise it measures loading node and runc from disk.
prepare_busybox() {
  rm -rf "$B/busybox" "$B/store" && mkdir -p "$B/busybox"
  bash "$HERE/native-deps/busybox-rootfs.sh" "$B/busybox.tar"
  tar -C "$B/busybox" -xf "$B/busybox.tar"
  for fs in "${FS_LIST[@]}"; do
    local bundle=$B/bundle-$fs
    rm -rf "$bundle" && mkdir -p "$bundle"
    runc spec --bundle "$bundle"
    python3 - "$bundle/config.json" "$B/$fs/mnt" <<'PY'
import json, sys
path, root = sys.argv[1:3]
c = json.load(open(path))
c['process']['args'] = ['true']
c['process']['terminal'] = False
c['root'] = {'path': root, 'readonly': False}
json.dump(c, open(path, 'w'), indent=2)
PY
  done
}
runc_once() { # FS ROUND: sets RUNC_MS (RUNC_MOUNT_MS + RUNC_REST_MS: run and unmount), HWM (kB)
  local fs=$1 id="strata-bench-$1-$2-$$" t0 t1 t2 t3 pid
  fresh "$fs"
  RUNC_IDS+=("$id")
  t0=$(now)
  mount_fs "$fs" "$B/busybox"
  t1=$(now)
  pid=$(daemon_pid "$fs")
  t2=$(now)
  runc run --bundle "$B/bundle-$fs" "$id" </dev/null >/dev/null
  hwm "$pid"
  umount_fs "$fs"
  t3=$(now)
  RUNC_MOUNT_MS=$(( (t1 - t0) / 1000000 )) RUNC_REST_MS=$(( (t3 - t2) / 1000000 ))
  RUNC_MS=$(( RUNC_MOUNT_MS + RUNC_REST_MS ))
}
run_runc() {
  local name=$1 r fs
  declare -A samples=() rss=() mnt=() rest=()
  for fs in "${FS_LIST[@]}"; do runc_once "$fs" warm; done
  for r in $(seq "$ROUNDS"); do
    for fs in "${FS_LIST[@]}"; do
      runc_once "$fs" "$r"
      samples[$fs]+="$RUNC_MS " rss[$fs]+="$HWM " mnt[$fs]+="$RUNC_MOUNT_MS " rest[$fs]+="$RUNC_REST_MS "
    done
  done
  record "$name" samples rss
  for fs in "${FS_LIST[@]}"; do
    printf '%44s %s: mount %s ms, runc run + unmount %s ms (medians)\n' "" "$fs" "$(median <<<"${mnt[$fs]}")" "$(median <<<"${rest[$fs]}")" >&2
  done
}
# `strata --root STORE run --rm IMAGE CMD` (Docker's interface: exits with CMD's status). If it
# fails (or the import does), the row says n/a rather than stopping the benchmark.
STRATA_RUN_MS=
run_strata() {
  local image=bench-busybox:latest store=$B/store log=$B/strata-run.log r t0 t1 samples=""
  if ! strata --root "$store" import "$B/busybox.tar" "$image" >/dev/null 2>"$log" \
    || ! strata --root "$store" run --rm "$image" true </dev/null >/dev/null 2>>"$log"; then
    echo "strata run --rm $image true: failed, reported as n/a: $(head -c 300 "$log")" >&2
    return
  fi
  for r in $(seq "$ROUNDS"); do
    t0=$(now)
    strata --root "$store" run --rm "$image" true </dev/null >/dev/null 2>>"$log" \
      || { echo "strata run failed in round $r, reported as n/a: $(tail -c 300 "$log")" >&2; return; }
    t1=$(now)
    samples+="$(( (t1 - t0) / 1000000 )) "
  done
  STRATA_RUN_MS=$(median <<<"$samples")
  printf '%-44s %9s %9s %9s   (all: %s)\n' "strata run --rm" "" "$STRATA_RUN_MS" "" "$samples" >&2
}

prepare_image
prepare_busybox
echo "workload (median of $ROUNDS)                    kernel ms strata ms  f-ovl ms" >&2
STORM="copy-up storm: append 1 B to 1,000 of 100k"
PKG="untar 5k + rename 1k over lower + fsync"
RUNC="start-to-exit true: runc, rootfs on union"
run "$STORM" 'python3 '"$B"'/storm.py $M'
run "$PKG" 'tar -C $M -xf '"$B"'/pkg.tar && python3 '"$B"'/pkg-finish.py $M'
run_runc "$RUNC"
run_strata

ratio() { if [ -z "$1" ] || [ -z "$2" ]; then echo n/a; else printf '%.2f' "$(echo "scale=2; $1 / ($2 + ($2 == 0))" | bc)"; fi; }
mb() { if [ -z "$1" ]; then echo n/a; else echo "$(( ($1 + 512) / 1024 ))"; fi; }
row() { # NAME KERNEL_MS STRATA_MS FOVL_MS STRATA_RSS_KB FOVL_RSS_KB
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "${2:-n/a}" "${3:-n/a}" "${4:-n/a}" \
    "$(ratio "$3" "$2")" "$(ratio "$3" "$4")" "$(mb "$5")" "$(mb "$6")"
}
echo
echo "| workload | kernel overlayfs ms | strata ms | fuse-overlayfs ms | strata / kernel | strata / fuse-overlayfs | strata driver peak RSS MB | fuse-overlayfs peak RSS MB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for name in "$STORM" "$PKG" "$RUNC"; do
  row "$name" "${MS[$name,kernel]}" "${MS[$name,strata]}" "${MS[$name,fuse-overlayfs]}" "${RSS[$name,strata]}" "${RSS[$name,fuse-overlayfs]}"
done
row "start-to-exit true: strata run --rm vs runc" "${MS[$RUNC,kernel]}" "$STRATA_RUN_MS" "${MS[$RUNC,fuse-overlayfs]}" "" "${RSS[$RUNC,fuse-overlayfs]}"
echo
echo "Peak RSS: VmHWM of the process serving the mount, read just before unmounting, largest of $ROUNDS rounds."
echo "runc rows: mount of a fresh upper + runc run + unmount; strata run --rm: the whole command. Ran $(( $(date +%s) - START )) s."
