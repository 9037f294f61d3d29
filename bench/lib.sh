# Sourced by the benchmarks: what they share.
#
# ext4 without a journal (as on the benchmark VM) skips inodes freed within the last
# dirty_expire interval when it allocates new ones, reading and passing over each of them. Right
# after a tool deletes many files (a previous run's trees, dockerd removing a build's intermediate
# containers), whatever creates files next runs slower: strata's 5k-file cold build took 3.4 s
# after a pause, 5.1-5.6 s right after the previous run was deleted, and 9.1 s right after
# dockerd's builds. settle waits that interval out; fresh_dir empties a directory, then settles.
settle() { sleep $(( $(cat /proc/sys/vm/dirty_expire_centisecs) / 100 + 10 )); }

# fresh_dir DIR: DIR empty (made if missing) for a run.
fresh_dir() {
  if [ -e "$1" ]; then
    rm -rf "$1"
    settle
  fi
  mkdir -p "$1"
}

# ms CMD...: CMD's wall time in ms (its output dropped); the benchmark stops if CMD fails.
ms() { local s e; s=$(date +%s%N); "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }

# The median of the numbers on standard input, one per line, of $ROUNDS samples.
median() { sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p"; }

# Samples recorded as "ms [rss_kb]" lines in SAMPLES[step] (an associative array of the caller's).
# pick STEP: the median sample by time; times STEP: its times, in round order;
# ratio A B: the median over rounds of A's time / B's time.
pick() { printf '%s' "${SAMPLES[$1]}" | awk 'NF' | median; }
times() { printf '%s' "${SAMPLES[$1]}" | awk 'NF {print $1}'; }
ratio() { paste <(times "$1") <(times "$2") | awk '{printf "%.2f\n", $1 / $2}' | median; }
