#!/usr/bin/env bash
# The strata demo. First the layer level: two read-only layers (a busybox base and an "app" layer)
# and a writable upper mounted as one tree (lookup through the layers, copy-up on first write,
# whiteouts on delete), then kernel overlayfs mounting the same upper. Then images: a busybox base
# imported, examples/app/Dockerfile built with strata build (and rebuilt from the cache), the image
# run as containers, one container's changes shown with strata diff and committed, and the image
# saved for skopeo.
set -euo pipefail
D=${STRATA_DEMO_DIR:-/tmp/strata-demo}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
  strata umount "$D/mnt" 2>/dev/null || true
  umount "$D/kmnt" 2>/dev/null || true
  strata --root "$D/store" rm -f demo >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
rm -rf "$D" && mkdir -p "$D"/{base,app,upper,work,mnt,kwork,kmnt}

say "Layer 1 (bottom): a busybox rootfs"
mkdir -p "$D"/base/{bin,etc,tmp,proc,dev}
cp /bin/busybox "$D/base/bin/busybox"
for c in sh ls cat echo rm mkdir uname id; do ln -s busybox "$D/base/bin/$c"; done
echo "base-host" > "$D/base/etc/hostname"
echo "Welcome to the base layer" > "$D/base/etc/motd"
echo "base issue" > "$D/base/etc/issue"
ls -l "$D/base/etc"

say "Layer 2: an app layer that overrides /etc/motd and deletes /etc/issue (a whiteout)"
mkdir -p "$D"/app/{etc,app}
echo "Welcome to the app layer" > "$D/app/etc/motd"
printf '#!/bin/sh\necho "hello from $(uname -s) as $(id -u)"\n' > "$D/app/app/hello.sh"
chmod +x "$D/app/app/hello.sh"
mknod "$D/app/etc/issue" c 0 0
ls -l "$D/app/etc"

say "strata mount --lower app:base --upper upper --work work mnt"
strata mount --lower "$D/app:$D/base" --upper "$D/upper" --work "$D/work" "$D/mnt"
findmnt "$D/mnt"
echo "merged /etc: $(ls "$D/mnt/etc" | tr '\n' ' ')   (issue is whited out)"
echo "motd comes from the top layer: $(cat "$D/mnt/etc/motd")"

say "Run a command chrooted in the mount: write, append, delete"
chroot "$D/mnt" /bin/sh -c '/app/hello.sh; echo "changed-host" > /etc/hostname; echo "log line" > /tmp/new.log; rm /etc/motd'

say "The upper layer now holds only the changes, in kernel overlayfs format"
(cd "$D/upper" && find . -mindepth 1 -printf '%y %M %p\n' | sort)
echo "(type c with mode c--------- is a whiteout: a 0:0 character device)"
echo "lower layers untouched: base hostname is still '$(cat "$D/base/etc/hostname")'"

say "Driver counters (dentry cache, copy-ups)"
strata status "$D/mnt"

say "strata umount, then kernel overlayfs mounts the same layers and upper"
strata umount "$D/mnt"
mount -t overlay overlay -o "lowerdir=$D/app:$D/base,upperdir=$D/upper,workdir=$D/kwork" "$D/kmnt"
echo "kernel sees /etc: $(ls "$D/kmnt/etc" | tr '\n' ' ')"
echo "kernel sees hostname: $(cat "$D/kmnt/etc/hostname")"
umount "$D/kmnt"
say "The layer store: a busybox base image, then strata build of examples/app/Dockerfile"
bash "$(dirname "$0")/../native-deps/busybox-rootfs.sh" "$D/busybox.tar"
strata --root "$D/store" import "$D/busybox.tar" busybox:latest
cat "$(dirname "$0")/app/Dockerfile"
strata --root "$D/store" build -t demo/app:1 "$(dirname "$0")/app"

say "Build it again: every step comes from the build cache, nothing runs"
strata --root "$D/store" build -t demo/app:1 "$(dirname "$0")/app" | grep -E 'Step|cache|Successfully'
strata --root "$D/store" images
strata --root "$D/store" history demo/app:1

say "Run the image as a container (runc, the image's CMD, USER and ENV), then a second one that changes files"
strata --root "$D/store" run --rm demo/app:1
strata --root "$D/store" run --name demo -u root demo/app:1 sh -c 'echo "run log" > /app/run.log; rm /app/built.txt; echo "color=red" > /etc/app/app.conf; echo changed'
strata --root "$D/store" ps -a
echo "strata diff demo (as docker diff: A added, C changed, D deleted):"
strata --root "$D/store" diff demo
strata --root "$D/store" commit demo demo/app:changed
strata --root "$D/store" run --rm demo/app:changed cat /etc/app/app.conf
strata --root "$D/store" rm demo
echo "(the container's writable layer went with rm; the images are unchanged)"

say "strata save writes a docker-archive that skopeo reads"
strata --root "$D/store" save demo/app:1 -o "$D/app-image.tar"
skopeo inspect "docker-archive:$D/app-image.tar" | grep -E '"(Architecture|Os)"|sha256' | head -4
strata --root "$D/store" check
say "Done. Layers are in $D, the store in $D/store"
