# Sourced by the benchmarks.
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
