/**
 * Every change to the merged view. Each mutation goes through the copy-up gate first, writes
 * only to the upper layer, records deletions as kernel-form whiteouts where a lower layer still
 * shows the name, and updates the dentry cache for exactly what it changed. Entries that must
 * appear atomically over a whiteout are built in the work directory and renamed into place.
 * Callers serialize mutations (see lock.ts), so no two of these interleave.
 */
import { constants as fsc } from 'node:fs';
import { sys } from '../native/sys.js';
import { copyUp, copyUpDir, workName } from './copy-up.js';
import { check, E, FsError, fsErr } from './errno.js';
import { makeWhiteout, removeRedirect, setOpaque, setRedirect, WH_PREFIX, xattrToLayer } from './encoding.js';
import { joinRel, removeContents, type Layer } from './layers.js';
import { Node, type Kind } from './node.js';
import { newStat, S, S_ISGID, S_IFMT } from './stat.js';
import { kindOfMode, type Union } from './union.js';

/** The process on whose behalf a new entry is created. */
export interface Caller {
  uid: number;
  gid: number;
}

const OPEN_STRIP = fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOCTTY | fsc.O_TRUNC;
const WRITE_ACCESS = fsc.O_WRONLY | fsc.O_RDWR;

export class Mutations {
  private readonly st = newStat();

  constructor(private readonly u: Union) {}

  /** Name (in the work dir) of the whiteout inode new whiteouts are hard links to. */
  private sharedWhiteout: string | null = null;

  /**
   * Make a whiteout at dirfd/rel. Like the kernel, strata links one shared whiteout inode instead
   * of allocating one per deleted name: cheaper (no inode allocation, which is slow on ext4 right
   * after many deletions) and smaller. A new shared inode is made when links run out (EMLINK).
   */
  private whiteout(dirfd: number, rel: string): number {
    const wfd = this.u.stack.workFd;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.sharedWhiteout === null) {
        const name = workName();
        if (makeWhiteout(wfd, name) < 0) break;
        this.sharedWhiteout = name;
      }
      const r = sys.linkAt(wfd, this.sharedWhiteout, dirfd, rel);
      if (r === 0 || (-r !== E.EMLINK && -r !== E.ENOENT)) return r;
      this.sharedWhiteout = null;
    }
    return makeWhiteout(dirfd, rel);
  }

  private upper(): Layer {
    if (this.u.upper === null) throw fsErr(E.EROFS);
    return this.u.upper;
  }

  /** A new entry's parent directory and name, checked, and the parent made writable. */
  private prepareNew(parent: Node, name: string): { upper: Layer; overWhiteout: boolean } {
    const upper = this.upper();
    if (parent.kind !== 'dir') throw fsErr(E.ENOTDIR);
    if (parent.unlinked) throw fsErr(E.ENOENT);
    this.u.checkName(name);
    const state = this.u.dirState(parent);
    if (state.children.has(name)) throw fsErr(E.EEXIST);
    copyUpDir(this.u, parent);
    this.kernelFormWhiteout(parent, name);
    return { upper, overWhiteout: state.upperWhiteouts.has(name) };
  }

  /**
   * An OCI-form whiteout in the upper (`.wh.<name>`) leaves the name itself free, which the
   * atomic replace-the-whiteout steps below rely on not being. Rewrite it in the kernel's form
   * first: the device, then drop the file (between the two, both hide the name).
   */
  private kernelFormWhiteout(dir: Node, name: string): void {
    const state = this.u.dirState(dir);
    if (state.tarWhiteouts?.has(name) !== true) return;
    const rel = dir.childRel(name);
    const r = this.whiteout(this.u.upper!.fd, rel);
    if (r < 0 && -r !== E.EEXIST) throw new FsError(-r, 'whiteout ' + rel);
    sys.unlinkAt(this.u.upper!.fd, dir.childRel(WH_PREFIX + name), 0);
    state.tarWhiteouts.delete(name);
  }

  /**
   * Owner of a new entry: the caller, except that a setgid parent passes its group on (the
   * filesystem below already did that, so the group is left alone).
   */
  private own(fd: number | null, rel: string, caller: Caller, parent: Node, mode: number): void {
    const upper = this.u.upper!;
    check(sys.lstatAt(upper.fd, parent.rel(), this.st), 'stat parent');
    const gid = this.st[S.mode]! & S_ISGID ? -1 : caller.gid;
    if (caller.uid === 0 && (gid === -1 || caller.gid === 0)) return;
    if (fd !== null) {
      check(sys.fchown(fd, caller.uid, gid), 'chown new entry');
      if (mode & 0o6000) check(sys.fchmod(fd, mode & 0o7777), 'chmod new entry');
    } else {
      check(sys.chownAt(upper.fd, rel, caller.uid, gid), 'chown new entry');
      if (mode & 0o6000 && (mode & S_IFMT) !== 0o120000) check(sys.chmodAt(upper.fd, rel, mode & 0o7777), 'chmod new entry');
    }
  }

  private addChild(parent: Node, name: string, kind: Kind, lowerVisible: boolean): Node {
    const state = this.u.dirState(parent);
    const node = new Node(name, parent, kind, true, null, lowerVisible);
    state.children.set(name, node);
    state.upperWhiteouts.delete(name);
    this.u.cache.added();
    return node;
  }

  /** Create and open a regular file; answers the open fd and the new node. */
  create(parent: Node, name: string, mode: number, flags: number, caller: Caller): { fd: number; node: Node } {
    const { upper, overWhiteout } = this.prepareNew(parent, name);
    const rel = parent.childRel(name);
    const openFlags = (flags & ~OPEN_STRIP) | fsc.O_CREAT | fsc.O_EXCL;
    let fd: number;
    if (overWhiteout) {
      const tmp = workName();
      fd = check(sys.openAt(this.u.stack.workFd, tmp, openFlags, mode & 0o7777), 'create');
      try {
        this.ownAt(this.u.stack.workFd, tmp, caller, parent, mode);
        check(sys.renameAt2(this.u.stack.workFd, tmp, upper.fd, rel, 0), 'create over whiteout');
      } catch (err) {
        sys.close(fd);
        sys.unlinkAt(this.u.stack.workFd, tmp, 0);
        throw err;
      }
    } else {
      fd = check(sys.openAt(upper.fd, rel, openFlags, mode & 0o7777), 'create');
      try {
        this.own(fd, rel, caller, parent, mode);
      } catch (err) {
        sys.close(fd);
        sys.unlinkAt(upper.fd, rel, 0);
        throw err;
      }
    }
    return { fd, node: this.addChild(parent, name, 'file', overWhiteout) };
  }

  mkdir(parent: Node, name: string, mode: number, caller: Caller): Node {
    const { upper, overWhiteout } = this.prepareNew(parent, name);
    const rel = parent.childRel(name);
    const wfd = this.u.stack.workFd;
    if (overWhiteout) {
      // Build the opaque directory in the work dir, swap it with the whiteout, drop the whiteout.
      const tmp = workName();
      check(sys.mkdirAt(wfd, tmp, mode & 0o7777), 'mkdir');
      try {
        this.ownAt(wfd, tmp, caller, parent, mode, true);
        check(setOpaque(wfd, tmp), 'mark opaque');
        check(sys.renameAt2(wfd, tmp, upper.fd, rel, sys.RENAME_EXCHANGE), 'mkdir over whiteout');
      } catch (err) {
        sys.unlinkAt(wfd, tmp, sys.AT_REMOVEDIR);
        throw err;
      }
      sys.unlinkAt(wfd, tmp, 0);
    } else {
      check(sys.mkdirAt(upper.fd, rel, mode & 0o7777), 'mkdir');
      this.own(null, rel, caller, parent, mode);
    }
    const node = this.addChild(parent, name, 'dir', overWhiteout);
    this.u.cache.loaded(node, { lowerSources: [], opaque: overWhiteout, children: new Map(), upperWhiteouts: new Set() });
    return node;
  }

  /** chown for an entry still in the work dir (its future parent decides the group). */
  private ownAt(dirfd: number, rel: string, caller: Caller, parent: Node, mode: number, isDir = false): void {
    check(sys.lstatAt(this.u.upper!.fd, parent.rel(), this.st), 'stat parent');
    const setgidParent = (this.st[S.mode]! & S_ISGID) !== 0;
    check(sys.chownAt(dirfd, rel, caller.uid, setgidParent ? this.st[S.gid]! : caller.gid), 'chown new entry');
    // What a setgid parent gives an entry made in it: its group, and to a directory the bit too.
    let perms = mode & 0o7777;
    if (setgidParent && isDir) perms |= S_ISGID;
    if (perms & 0o6000) check(sys.chmodAt(dirfd, rel, perms), 'chmod new entry');
  }

  mknod(parent: Node, name: string, mode: number, dev: number, caller: Caller): Node {
    const { upper, overWhiteout } = this.prepareNew(parent, name);
    const rel = parent.childRel(name);
    this.place(upper, rel, overWhiteout, (dirfd, p) => {
      check(sys.mknodAt(dirfd, p, mode, dev), 'mknod');
      this.ownAt(dirfd, p, caller, parent, mode);
    });
    return this.addChild(parent, name, kindOfMode(mode), overWhiteout);
  }

  symlink(target: string, parent: Node, name: string, caller: Caller): Node {
    const { upper, overWhiteout } = this.prepareNew(parent, name);
    const rel = parent.childRel(name);
    this.place(upper, rel, overWhiteout, (dirfd, p) => {
      check(sys.symlinkAt(target, dirfd, p), 'symlink');
      this.ownAt(dirfd, p, caller, parent, 0);
    });
    return this.addChild(parent, name, 'symlink', overWhiteout);
  }

  async link(node: Node, parent: Node, name: string): Promise<Node> {
    if (node.kind === 'dir') throw fsErr(E.EPERM);
    if (node.unlinked) throw fsErr(E.ENOENT);
    const { upper, overWhiteout } = this.prepareNew(parent, name);
    await copyUp(this.u, node);
    const srcRel = node.rel();
    const rel = parent.childRel(name);
    this.place(upper, rel, overWhiteout, (dirfd, p) => check(sys.linkAt(upper.fd, srcRel, dirfd, p), 'link'));
    const added = this.addChild(parent, name, node.kind, overWhiteout);
    added.ino = node.ino;
    return added;
  }

  /** Make a non-directory at upper/rel: directly, or in the work dir and renamed over a whiteout. */
  private place(upper: Layer, rel: string, overWhiteout: boolean, make: (dirfd: number, path: string) => void): void {
    if (!overWhiteout) {
      make(upper.fd, rel);
      return;
    }
    const wfd = this.u.stack.workFd;
    const tmp = workName();
    try {
      make(wfd, tmp);
      check(sys.renameAt2(wfd, tmp, upper.fd, rel, 0), 'replace whiteout');
    } catch (err) {
      sys.unlinkAt(wfd, tmp, 0);
      throw err;
    }
  }

  unlink(parent: Node, name: string): void {
    const upper = this.upper();
    const node = this.existing(parent, name);
    if (node.kind === 'dir') throw fsErr(E.EISDIR);
    if (node.open > 0) return this.hide(node);
    copyUpDir(this.u, parent);
    const rel = node.rel();
    this.removeEntry(upper, node, rel);
    this.detach(parent, node);
  }

  /** The cache side of a removal: the name leaves its directory (a whiteout if a lower shows it). */
  private detach(parent: Node, node: Node): void {
    const state = this.u.dirState(parent);
    state.children.delete(node.name);
    if (node.lowerVisible) state.upperWhiteouts.add(node.name);
    node.unlinked = true;
    this.u.cache.forget(node);
    this.u.cache.removed();
  }

  /** Take a non-directory out of the view: replace it with a whiteout or delete it. */
  private removeEntry(upper: Layer, node: Node, rel: string): void {
    if (!node.lowerVisible) {
      check(sys.unlinkAt(upper.fd, rel, 0), 'unlink');
    } else if (!node.inUpper) {
      check(this.whiteout(upper.fd, rel), 'whiteout');
    } else {
      // One atomic step: a whiteout built in the work dir replaces the upper entry.
      const wfd = this.u.stack.workFd;
      const tmp = workName();
      check(this.whiteout(wfd, tmp), 'whiteout');
      const r = sys.renameAt2(wfd, tmp, upper.fd, rel, 0);
      if (r < 0) {
        sys.unlinkAt(wfd, tmp, 0);
        throw new FsError(-r, 'whiteout ' + rel);
      }
    }
  }

  rmdir(parent: Node, name: string): void {
    const upper = this.upper();
    const node = this.existing(parent, name);
    if (node.kind !== 'dir') throw fsErr(E.ENOTDIR);
    if (!this.u.isEmpty(node)) throw fsErr(E.ENOTEMPTY);
    copyUpDir(this.u, parent);
    const rel = node.rel();
    this.removeDir(upper, node, rel);
    this.detach(parent, node);
  }

  /** Take an empty (in the merged view) directory out: its upper copy holds only whiteouts. */
  private removeDir(upper: Layer, node: Node, rel: string): void {
    const wfd = this.u.stack.workFd;
    if (!node.inUpper) {
      check(this.whiteout(upper.fd, rel), 'whiteout');
      return;
    }
    const tmp = workName();
    if (node.lowerVisible) {
      check(this.whiteout(wfd, tmp), 'whiteout');
      const r = sys.renameAt2(wfd, tmp, upper.fd, rel, sys.RENAME_EXCHANGE);
      if (r < 0) {
        sys.unlinkAt(wfd, tmp, 0);
        throw new FsError(-r, 'rmdir ' + rel);
      }
    } else {
      check(sys.renameAt2(upper.fd, rel, wfd, tmp, 0), 'rmdir ' + rel);
    }
    removeContents(wfd, tmp);
    sys.unlinkAt(wfd, tmp, sys.AT_REMOVEDIR);
  }

  /** rename(2) with its flags: RENAME_NOREPLACE is honoured, RENAME_EXCHANGE is not supported. */
  async rename(sparent: Node, sname: string, dparent: Node, dname: string, flags: number): Promise<void> {
    const upper = this.upper();
    if ((flags & ~sys.RENAME_NOREPLACE) !== 0) throw fsErr(E.EINVAL);
    const node = this.existing(sparent, sname);
    if (dparent.kind !== 'dir') throw fsErr(E.ENOTDIR);
    if (dparent.unlinked) throw fsErr(E.ENOENT);
    this.u.checkName(dname);
    const dstate = this.u.dirState(dparent);
    let existing = dstate.children.get(dname);
    if (existing !== undefined && flags & sys.RENAME_NOREPLACE) throw fsErr(E.EEXIST);
    if (existing === node) return;
    if (existing !== undefined && this.sameInode(node, existing)) return; // rename(2) of two links of one file: nothing
    if (existing !== undefined && existing.kind !== 'dir' && node.kind !== 'dir' && existing.open > 0) {
      // The replaced file stays readable through its open handles: park it first, then this
      // is a rename onto a free name (or a whiteout).
      this.hide(existing);
      existing = undefined;
    }
    if (existing !== undefined) {
      if (node.kind === 'dir') {
        if (existing.kind !== 'dir') throw fsErr(E.ENOTDIR);
        if (!this.u.isEmpty(existing)) throw fsErr(E.ENOTEMPTY);
      } else if (existing.kind === 'dir') {
        throw fsErr(E.EISDIR);
      }
    }
    for (let n: Node | null = dparent; n !== null; n = n.parent) if (n === node) throw fsErr(E.EINVAL);

    copyUpDir(this.u, sparent);
    copyUpDir(this.u, dparent);
    this.kernelFormWhiteout(dparent, dname);
    const dstLowerVisible = existing !== undefined ? existing.lowerVisible : dstate.upperWhiteouts.has(dname);
    const dstRel = joinRel(dparent.rel(), dname);
    if (node.kind === 'dir') {
      // No EXDEV: the directory moves in the upper and keeps finding its lower content through
      // a redirect to its lower path (the kernel's format, followed on remount by both).
      copyUpDir(this.u, node);
      const state = this.u.dirState(node);
      const srcRel = node.rel();
      const lowerPath = state.lowerSources[0]?.path;
      if (lowerPath !== undefined) {
        if (lowerPath !== dstRel) check(setRedirect(upper.fd, srcRel, lowerPath), 'set redirect');
        else removeRedirect(upper.fd, srcRel);
      } else if (!state.opaque && this.u.dirState(dparent).lowerSources.length > 0) {
        // An upper-only directory moved into a merged one must not pick up lower content
        // there: mark it opaque (the kernel's rule).
        check(setOpaque(upper.fd, srcRel), 'mark opaque');
        state.opaque = true;
      }
    } else {
      await copyUp(this.u, node);
    }
    const srcRel = node.rel();
    if (existing !== undefined && existing.kind === 'dir' && existing.inUpper) {
      // The replaced directory is empty in the merged view, but its upper copy may hold
      // whiteouts, and rename(2) wants it empty. Swap in an empty opaque directory in one step
      // (the view does not change), then clear the old copy out of sight in the work dir.
      const wfd = this.u.stack.workFd;
      const tmp = workName();
      check(sys.mkdirAt(wfd, tmp, 0o755), 'rename: empty dir');
      check(setOpaque(wfd, tmp), 'mark opaque');
      check(sys.renameAt2(wfd, tmp, upper.fd, dstRel, sys.RENAME_EXCHANGE), 'rename: clear target');
      removeContents(wfd, tmp);
      sys.unlinkAt(wfd, tmp, sys.AT_REMOVEDIR);
      this.moveInUpper(upper, srcRel, dstRel, node.lowerVisible);
    } else if (existing === undefined && dstLowerVisible && node.kind === 'dir') {
      // A directory cannot be renamed over the whiteout device: exchange the two in one step;
      // the whiteout lands at the old name, which is kept if a lower shows that name.
      check(sys.renameAt2(upper.fd, srcRel, upper.fd, dstRel, sys.RENAME_EXCHANGE), 'rename');
      if (!node.lowerVisible) check(sys.unlinkAt(upper.fd, srcRel, 0), 'rename: drop whiteout');
    } else {
      this.moveInUpper(upper, srcRel, dstRel, node.lowerVisible);
    }

    const sstate = this.u.dirState(sparent);
    sstate.children.delete(node.name);
    if (node.lowerVisible) sstate.upperWhiteouts.add(node.name);
    if (existing !== undefined) {
      existing.unlinked = true;
      this.u.cache.forget(existing);
      this.u.cache.removed();
    }
    dstate.children.set(dname, node);
    dstate.upperWhiteouts.delete(dname);
    node.move(dparent, dname);
    node.lowerVisible = dstLowerVisible;
  }

  private sameInode(a: Node, b: Node): boolean {
    if (a.kind === 'dir' || b.kind === 'dir') return false;
    const la = this.u.location(a);
    const lb = this.u.location(b);
    const sb = newStat();
    if (sys.lstatAt(la.layer.fd, la.path, this.st) < 0 || sys.lstatAt(lb.layer.fd, lb.path, sb) < 0) return false;
    return la.layer === lb.layer && this.st[S.inoLo] === sb[S.inoLo] && this.st[S.inoHi] === sb[S.inoHi];
  }

  /**
   * Unlinking a file that is still open: it leaves the merged view at once (a whiteout where a
   * lower shows the name), and its upper entry is parked in the work dir, so stat, chmod, xattrs
   * and I/O through the open handles keep working. Dropped when the last handle is released.
   */
  private hide(node: Node): void {
    const upper = this.upper();
    const parent = node.parent!;
    copyUpDir(this.u, parent);
    const rel = node.rel();
    if (node.inUpper) {
      const tmp = workName();
      const wfd = this.u.stack.workFd;
      if (!node.lowerVisible) check(sys.renameAt2(upper.fd, rel, wfd, tmp, 0), 'hide');
      else {
        const r = sys.renameAt2(upper.fd, rel, wfd, tmp, sys.RENAME_WHITEOUT);
        if (r < 0) {
          if (-r !== E.EINVAL && -r !== E.EOPNOTSUPP) throw new FsError(-r, 'hide');
          check(sys.renameAt2(upper.fd, rel, wfd, tmp, 0), 'hide');
          check(this.whiteout(upper.fd, rel), 'whiteout');
        }
      }
      node.hiddenName = tmp;
      node.inUpper = false;
    } else {
      check(this.whiteout(upper.fd, rel), 'whiteout');
    }
    this.detach(parent, node);
  }

  /** Remove the work-dir copy of an unlinked file once nothing can reach it any more. */
  dropHidden(node: Node): void {
    if (!node.unlinked || node.open > 0 || node.hiddenName === null) return;
    sys.unlinkAt(this.u.stack.workFd, node.hiddenName, 0);
    node.hiddenName = null;
  }

  /** The visible entry `name` of `parent`, or ENOENT. */
  private existing(parent: Node, name: string): Node {
    const node = this.u.child(parent, name);
    if (node === undefined) throw fsErr(E.ENOENT);
    return node;
  }

  /** rename(2) in the upper, leaving a whiteout behind when a lower layer shows the old name. */
  private moveInUpper(upper: Layer, srcRel: string, dstRel: string, whiteout: boolean): void {
    if (!whiteout) {
      check(sys.renameAt2(upper.fd, srcRel, upper.fd, dstRel, 0), 'rename');
      return;
    }
    const r = sys.renameAt2(upper.fd, srcRel, upper.fd, dstRel, sys.RENAME_WHITEOUT);
    if (r === 0) return;
    if (-r !== E.EINVAL && -r !== E.EOPNOTSUPP) throw new FsError(-r, 'rename');
    // The upper filesystem cannot do RENAME_WHITEOUT: rename, then whiteout.
    check(sys.renameAt2(upper.fd, srcRel, upper.fd, dstRel, 0), 'rename');
    check(this.whiteout(upper.fd, srcRel), 'whiteout');
  }

  chmod(node: Node, mode: number): void | Promise<void> {
    return this.onWritable(node, true, (w) => void check(sys.chmodAt(w.fd, w.rel, mode & 0o7777), 'chmod'));
  }

  chown(node: Node, uid: number, gid: number): void | Promise<void> {
    return this.onWritable(node, true, (w) => void check(sys.chownAt(w.fd, w.rel, uid, gid), 'chown'));
  }

  utimens(node: Node, aSec: number, aNsec: number, mSec: number, mNsec: number): void | Promise<void> {
    return this.onWritable(node, true, (w) => void check(sys.utimensAt(w.fd, w.rel, aSec, aNsec, mSec, mNsec), 'utimens'));
  }

  truncate(node: Node, size: number): void | Promise<void> {
    return this.onWritable(node, size > 0, (w) => {
      if (node.kind === 'dir') throw fsErr(E.EISDIR);
      const fd = check(sys.openAt(w.fd, w.rel, fsc.O_WRONLY | sys.O_NOFOLLOW, 0), 'truncate');
      try {
        check(sys.ftruncate(fd, size), 'truncate');
      } finally {
        sys.close(fd);
      }
    });
  }

  setxattr(node: Node, name: string, value: Buffer, flags: number): void | Promise<void> {
    const stored = xattrToLayer(name);
    if (stored === null) throw fsErr(E.EPERM);
    return this.onWritable(node, true, (w) => void check(sys.setxattrAt(w.fd, w.rel, stored, value, flags), 'setxattr'));
  }

  removexattr(node: Node, name: string): void | Promise<void> {
    const stored = xattrToLayer(name);
    if (stored === null) throw fsErr(E.EPERM);
    return this.onWritable(node, true, (w) => void check(sys.removexattrAt(w.fd, w.rel, stored), 'removexattr'));
  }

  /** Open an existing entry; write access or O_TRUNC copies it up first. */
  async open(node: Node, flags: number): Promise<{ fd: number; node: Node }> {
    const wants = (flags & WRITE_ACCESS) !== 0 || (flags & fsc.O_TRUNC) !== 0;
    const openFlags = (flags & ~(fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOCTTY)) | sys.O_NOFOLLOW;
    if (wants) {
      this.upper();
      await copyUp(this.u, node, (flags & fsc.O_TRUNC) === 0);
    }
    const { layer, path: rel } = this.u.location(node);
    const fd = check(sys.openAt(layer.fd, rel, openFlags, 0), 'open');
    return { fd, node };
  }

  /**
   * Run `act` on the writable entry of `node`, copying it up first if needed. Synchronous when
   * the entry is already in the upper (the common case), so the change answers without a trip
   * through the promise queue; a promise only when there is data to copy.
   */
  private onWritable<T>(node: Node, withData: boolean, act: (w: { fd: number; rel: string }) => T): T | Promise<T> {
    this.upper();
    const where = () => {
      const { layer, path: rel } = this.u.location(node);
      return { fd: layer.fd, rel };
    };
    if (node.inUpper || node.hiddenName !== null) return act(where());
    return copyUp(this.u, node, withData).then(() => act(where()));
  }
}
