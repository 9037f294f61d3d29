/**
 * Layer sets for tests, built with real tools (mknod, setfattr, ln) so the bytes on disk are what
 * kernel overlayfs and Docker produce. `kernelLayers` uses only the kernel's encodings (so the
 * kernel can be the oracle); `ociLayers` has the same meaning in the OCI tar forms.
 */
import { must } from './run.js';

const q = (s: string) => JSON.stringify(s);

/** Three lowers exercising the union rules; l1 is the top. All times are fixed in the past. */
export function kernelLayers(lowers: string[]): void {
  const [l1, l2, l3] = lowers.map(q) as [string, string, string];
  must(`
    set -e
    # bottom layer: a small rootfs-like tree
    cd ${l3}
    mkdir -p etc usr/bin data/sub deep/a/b/c opq swap dir-to-file keep
    echo base-hostname > etc/hostname
    echo 'root:x:0:0::/root:/bin/sh' > etc/passwd
    printf 'old\\n' > data/old.txt
    printf 'kept\\n' > data/kept.txt
    printf 'sub\\n' > data/sub/f.txt
    seq 1 50000 > usr/bin/tool
    chmod 4755 usr/bin/tool
    ln usr/bin/tool usr/bin/tool-link
    ln -s ../etc/hostname data/link-to-hostname
    mkfifo data/fifo
    echo hidden-by-opaque > opq/lower-only.txt
    echo swapped > swap/inner.txt
    echo d2f > dir-to-file/x.txt
    echo deep > deep/a/b/c/file.txt
    echo keep > keep/k.txt
    setfattr -n user.comment -v lower data/kept.txt
    chown 1000:1000 data/kept.txt
    chmod 0640 data/kept.txt
    # middle layer: overrides, a whiteout, an opaque dir, a file over a dir
    cd ${l2}
    mkdir -p etc data opq
    echo mid-hostname > etc/hostname
    mknod data/old.txt c 0 0
    setfattr -n trusted.overlay.opaque -v y opq
    echo mid-opaque > opq/mid.txt
    echo now-a-file > dir-to-file
    mkdir -p deep/a
    echo mid-deep > deep/a/mid.txt
    # top layer: new files and a whiteout of a directory
    cd ${l1}
    mkdir -p etc newdir
    echo top-motd > etc/motd
    echo new > newdir/new.txt
    mknod swap c 0 0
    for d in ${l1} ${l2} ${l3}; do find "$d" -mindepth 1 -exec touch -h -d '2020-01-02 03:04:05.123456789' {} +; done
  `);
}

/** The same meaning as kernelLayers, with the OCI tar encodings (.wh. files, .wh..wh..opq). */
export function ociLayers(lowers: string[]): void {
  kernelLayers(lowers);
  const [l1, l2] = lowers.map(q) as [string, string, string];
  must(`
    set -e
    cd ${l2}
    rm data/old.txt && touch data/.wh.old.txt
    setfattr -x trusted.overlay.opaque opq && touch opq/.wh..wh..opq
    cd ${l1}
    rm swap && touch .wh.swap
  `);
}
