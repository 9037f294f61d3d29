#!/usr/bin/env bash
# A tiny real base rootfs as a tar, for `strata import` (the demo's and the tests' base image):
# Debian's static busybox with a link per applet, /etc/passwd and /etc/group with root, a user
# and nobody, and the usual top-level directories. Offline and reproducible (fixed mtimes).
#   native-deps/busybox-rootfs.sh OUT.tar
set -euo pipefail
out=${1:?usage: busybox-rootfs.sh OUT.tar}
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-rootfs.sh: $bb missing (Debian package busybox-static)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r=$tmp/rootfs
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,root,home/user,tmp,var/tmp,proc,sys,dev}
chmod 1777 "$r/tmp" "$r/var/tmp"
chmod 700 "$r/root"
cp "$bb" "$r/bin/busybox"
# Every applet at the path busybox itself reports (bin, sbin, usr/bin, usr/sbin).
"$bb" --list-full | while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  ln -sf /bin/busybox "$r/$applet"
done
cat > "$r/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$r/etc/group" <<'G'
root:x:0:
user:x:1000:
users:x:100:user
nogroup:x:65534:
G
chown 1000:1000 "$r/home/user"
echo strata > "$r/etc/hostname"
echo "strata busybox base" > "$r/etc/issue"
find "$r" -exec touch -h -d @1700000000 {} +
tar --sort=name --numeric-owner -C "$r" -cf "$out" .
