// Types for fuse-native 2.2.6 as patched by strata (native-deps/fuse-native/strata.patch).
// install.sh copies this file next to node_modules/fuse-native/index.js. The API differs from
// upstream's: create gets flags, utimens gets seconds + nanoseconds, fgetattr and readdir get the
// file handle, stats carry 64-bit inos and nanosecond times; see README.md beside this file.
/// <reference types="node" />

declare namespace Fuse {
  /** 0 for success or a negative errno, e.g. Fuse.ENOENT (-2). Never an Error object. */
  type Errno = number

  type Callback = (err: Errno) => void

  /**
   * The path of an op that carries a file handle. null when mounted with `nullPath: true`
   * (libfuse's nopath: read, write, flush, release, fsync, fgetattr, ftruncate, readdir,
   * releasedir, fsyncdir then get null, except fgetattr right after create; use `fd`).
   */
  type HandlePath = string | null

  type Int = number | bigint

  /**
   * A stat answer as an object. Every field is optional. `ino` and the `*Ns` times may be bigints
   * (fs.BigIntStats fits as is); the `*Ns` fields win over `atime`/`mtime`/`ctime`, which are
   * Dates or milliseconds (missing: now). `ino` is only used by the kernel with `use_ino`.
   */
  interface StatObject {
    mode?: Int
    uid?: Int
    gid?: Int
    size?: Int
    dev?: Int
    nlink?: Int
    ino?: Int
    rdev?: Int
    blksize?: Int
    blocks?: Int
    atime?: Date | number
    mtime?: Date | number
    ctime?: Date | number
    atimeNs?: bigint
    mtimeNs?: bigint
    ctimeNs?: bigint
  }

  /**
   * A stat answer, either as an object or already laid out in a Uint32Array of 22
   * entries, which is passed to C as is: [0] mode, [1] uid, [2] gid, [3]/[4] size low/high,
   * [5] dev, [6] nlink, [7]/[8] ino low/high, [9] rdev, [10] blksize, [11]/[12] blocks low/high,
   * [13]/[14] atime seconds low/high (two's complement), [15] atime nsec, [16]/[17] mtime sec,
   * [18] mtime nsec, [19]/[20] ctime sec, [21] ctime nsec. A shorter array fails the op with EIO.
   * The binding reads it on the next tick: do not refill it for another request before then.
   */
  type Stat = StatObject | Uint32Array

  /** Counts may exceed 2^32 (passed as 64-bit). */
  interface StatFs {
    bsize?: number
    frsize?: number
    blocks?: Int
    bfree?: Int
    bavail?: Int
    files?: Int
    ffree?: Int
    favail?: Int
    fsid?: number
    flag?: number
    namemax?: number
  }

  type StatCallback = (err: Errno, stat?: Stat) => void
  type HandleCallback = (err: Errno, fd?: number) => void
  /** A byte count (>= 0) or a negative errno. */
  type IoCallback = (result: number) => void

  /**
   * The handlers. Each runs on the JS thread and must call its callback exactly once (later calls
   * are ignored). Read `fuse.context` synchronously at entry if the caller matters. Buffers handed
   * to read/write/setxattr/getxattr wrap libfuse memory and are detached after the callback.
   * `fd` is the number that open/create/opendir answered (0 if they are not implemented).
   */
  interface Operations {
    init?(cb: Callback): void
    access?(path: string, mode: number, cb: Callback): void
    statfs?(path: string, cb: (err: Errno, statfs?: StatFs) => void): void
    /** Also answers lookups. */
    getattr?(path: string, cb: StatCallback): void
    /**
     * Attributes of an open file: after create, ftruncate and lseek(SEEK_END) on Linux (fstat
     * itself goes to getattr). With nullPath the path is null, except right after create.
     */
    fgetattr?(path: HandlePath, fd: number, cb: StatCallback): void
    flush?(path: HandlePath, fd: number, cb: Callback): void
    fsync?(path: HandlePath, datasync: number, fd: number, cb: Callback): void
    fsyncdir?(path: HandlePath, datasync: number, fd: number, cb: Callback): void
    /** `fd` is what opendir answered. `stats`, if given, parallels `names` (gives d_type, d_ino). */
    readdir?(path: HandlePath, fd: number, cb: (err: Errno, names?: string[], stats?: Stat[]) => void): void
    truncate?(path: string, size: number, cb: Callback): void
    ftruncate?(path: HandlePath, fd: number, size: number, cb: Callback): void
    /**
     * Times as whole seconds (may be negative) and nanoseconds. A nanosecond value may be
     * Fuse.UTIME_NOW (set that time to now) or Fuse.UTIME_OMIT (leave it unchanged).
     */
    utimens?(path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, cb: Callback): void
    readlink?(path: string, cb: (err: Errno, target?: string) => void): void
    /** uid or gid 4294967295 ((uid_t)-1) means "leave unchanged". */
    chown?(path: string, uid: number, gid: number, cb: Callback): void
    chmod?(path: string, mode: number, cb: Callback): void
    mknod?(path: string, mode: number, dev: number, cb: Callback): void
    /** Copy `value` if you keep it. `position` is always 0 on Linux. */
    setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: Callback): void
    /** No value (null/undefined) answers ENODATA; a value longer than the caller's buffer, ERANGE. */
    getxattr?(path: string, name: string, position: number, cb: (err: Errno, value?: Buffer | null) => void): void
    listxattr?(path: string, cb: (err: Errno, names?: string[]) => void): void
    removexattr?(path: string, name: string, cb: Callback): void
    /** Answer a file handle (a non-zero uint32; 0 means "none"). */
    open?(path: string, flags: number, cb: HandleCallback): void
    opendir?(path: string, flags: number, cb: HandleCallback): void
    read?(path: HandlePath, fd: number, buffer: Buffer, length: number, position: number, cb: IoCallback): void
    write?(path: HandlePath, fd: number, buffer: Buffer, length: number, position: number, cb: IoCallback): void
    release?(path: HandlePath, fd: number, cb: Callback): void
    releasedir?(path: HandlePath, fd: number, cb: Callback): void
    /** `flags` are the open(2) flags (O_EXCL, O_TRUNC, O_APPEND, access mode...). */
    create?(path: string, mode: number, flags: number, cb: HandleCallback): void
    unlink?(path: string, cb: Callback): void
    rename?(src: string, dest: string, cb: Callback): void
    /** Hard link `dest` to the existing `src`. */
    link?(src: string, dest: string, cb: Callback): void
    /** Create the symlink `dest` whose target is `src`. */
    symlink?(src: string, dest: string, cb: Callback): void
    mkdir?(path: string, mode: number, cb: Callback): void
    rmdir?(path: string, cb: Callback): void
  }

  type OpName = keyof Operations

  interface Options {
    /** JS-side timeout per op in ms (default 15000; ETIMEDOUT after it), false for none, or per op. */
    timeout?: number | false | ({ default?: number } & { [op in OpName]?: number | false }) | undefined
    /** Unmount a stale (disconnected) mount at the mountpoint first. */
    force?: boolean | undefined
    /** Create the mountpoint if missing. */
    mkdir?: boolean | undefined
    /** Pass ops carrying a file handle a null path (libfuse flag_nullpath_ok + flag_nopath). */
    nullPath?: boolean | undefined
    /** libfuse -o options appended verbatim, e.g. ['big_writes', 'max_write=131072', 'use_ino']. */
    extraOptions?: readonly string[] | undefined
    /**
     * Called once the FUSE loop has ended, i.e. the kernel connection is gone (umount, fusermount
     * -u, a connection abort, or unmount()). The binding then holds nothing that keeps the
     * process alive.
     */
    onLoopExit?: (() => void) | undefined
    debug?: boolean | undefined
    allowOther?: boolean | undefined
    allowRoot?: boolean | undefined
    autoUnmount?: boolean | undefined
    defaultPermissions?: boolean | undefined
    blkdev?: boolean | undefined
    blksize?: number | undefined
    maxRead?: number | undefined
    fd?: number | undefined
    userId?: number | undefined
    fsname?: string | undefined
    subtype?: string | undefined
    kernelCache?: boolean | undefined
    autoCache?: boolean | undefined
    umask?: number | undefined
    uid?: number | undefined
    gid?: number | undefined
    /** Seconds (may be fractional). */
    entryTimeout?: number | undefined
    attrTimeout?: number | undefined
    acAttrTimeout?: number | undefined
    noforget?: boolean | undefined
    remember?: number | undefined
    modules?: string | undefined
  }
}

declare class Fuse {
  constructor (mnt: string, ops: Fuse.Operations, opts?: Fuse.Options)

  readonly mnt: string
  readonly ops: Fuse.Operations
  readonly opts: Fuse.Options

  /**
   * [uid, gid, pid, umask] of the process whose request is being handled, refreshed right before
   * each handler call: read it synchronously at handler entry. umask is 0 except for create,
   * mknod and mkdir.
   */
  readonly context: Uint32Array

  /** Same moment as opts.onLoopExit: the kernel connection is gone and the process may exit. */
  on (event: 'loopExit', listener: () => void): this
  once (event: 'loopExit', listener: () => void): this
  off (event: 'loopExit', listener: () => void): this

  /** Calls back once the kernel has sent init, or with the mount error. */
  mount (cb: (err: Error | null) => void): void
  /** `fusermount -uz`; calls back at once (with null) if the loop has already exited. */
  unmount (cb: (err: (Error & { unmountFailure?: boolean }) | null) => void): void
  /** Fuse.ENOENT for 'ENOENT', -1 for unknown codes. */
  errno (code: string): number

  static unmount (mnt: string, cb: (err: Error | null) => void): void

  /** 1 when this is strata's patched build (index.js refuses an unpatched binding). */
  static readonly STRATA_PATCHED: 1
  /** utimens nanoseconds meaning "now" ((1 << 30) - 1) and "unchanged" ((1 << 30) - 2). */
  static readonly UTIME_NOW: 1073741823
  static readonly UTIME_OMIT: 1073741822

  static readonly EPERM: -1
  static readonly ENOENT: -2
  static readonly ESRCH: -3
  static readonly EINTR: -4
  static readonly EIO: -5
  static readonly ENXIO: -6
  static readonly E2BIG: -7
  static readonly ENOEXEC: -8
  static readonly EBADF: -9
  static readonly ECHILD: -10
  static readonly EAGAIN: -11
  static readonly ENOMEM: -12
  static readonly EACCES: -13
  static readonly EFAULT: -14
  static readonly ENOTBLK: -15
  static readonly EBUSY: -16
  static readonly EEXIST: -17
  static readonly EXDEV: -18
  static readonly ENODEV: -19
  static readonly ENOTDIR: -20
  static readonly EISDIR: -21
  static readonly EINVAL: -22
  static readonly ENFILE: -23
  static readonly EMFILE: -24
  static readonly ENOTTY: -25
  static readonly ETXTBSY: -26
  static readonly EFBIG: -27
  static readonly ENOSPC: -28
  static readonly ESPIPE: -29
  static readonly EROFS: -30
  static readonly EMLINK: -31
  static readonly EPIPE: -32
  static readonly EDOM: -33
  static readonly ERANGE: -34
  static readonly EDEADLK: -35
  static readonly ENAMETOOLONG: -36
  static readonly ENOLCK: -37
  static readonly ENOSYS: -38
  static readonly ENOTEMPTY: -39
  static readonly ELOOP: -40
  static readonly EWOULDBLOCK: -11
  static readonly ENOMSG: -42
  static readonly EIDRM: -43
  static readonly ECHRNG: -44
  static readonly EL2NSYNC: -45
  static readonly EL3HLT: -46
  static readonly EL3RST: -47
  static readonly ELNRNG: -48
  static readonly EUNATCH: -49
  static readonly ENOCSI: -50
  static readonly EL2HLT: -51
  static readonly EBADE: -52
  static readonly EBADR: -53
  static readonly EXFULL: -54
  static readonly ENOANO: -55
  static readonly EBADRQC: -56
  static readonly EBADSLT: -57
  static readonly EDEADLOCK: -35
  static readonly EBFONT: -59
  static readonly ENOSTR: -60
  static readonly ENODATA: -61
  static readonly ETIME: -62
  static readonly ENOSR: -63
  static readonly ENONET: -64
  static readonly ENOPKG: -65
  static readonly EREMOTE: -66
  static readonly ENOLINK: -67
  static readonly EADV: -68
  static readonly ESRMNT: -69
  static readonly ECOMM: -70
  static readonly EPROTO: -71
  static readonly EMULTIHOP: -72
  static readonly EDOTDOT: -73
  static readonly EBADMSG: -74
  static readonly EOVERFLOW: -75
  static readonly ENOTUNIQ: -76
  static readonly EBADFD: -77
  static readonly EREMCHG: -78
  static readonly ELIBACC: -79
  static readonly ELIBBAD: -80
  static readonly ELIBSCN: -81
  static readonly ELIBMAX: -82
  static readonly ELIBEXEC: -83
  static readonly EILSEQ: -84
  static readonly ERESTART: -85
  static readonly ESTRPIPE: -86
  static readonly EUSERS: -87
  static readonly ENOTSOCK: -88
  static readonly EDESTADDRREQ: -89
  static readonly EMSGSIZE: -90
  static readonly EPROTOTYPE: -91
  static readonly ENOPROTOOPT: -92
  static readonly EPROTONOSUPPORT: -93
  static readonly ESOCKTNOSUPPORT: -94
  static readonly EOPNOTSUPP: -95
  static readonly EPFNOSUPPORT: -96
  static readonly EAFNOSUPPORT: -97
  static readonly EADDRINUSE: -98
  static readonly EADDRNOTAVAIL: -99
  static readonly ENETDOWN: -100
  static readonly ENETUNREACH: -101
  static readonly ENETRESET: -102
  static readonly ECONNABORTED: -103
  static readonly ECONNRESET: -104
  static readonly ENOBUFS: -105
  static readonly EISCONN: -106
  static readonly ENOTCONN: -107
  static readonly ESHUTDOWN: -108
  static readonly ETOOMANYREFS: -109
  static readonly ETIMEDOUT: -110
  static readonly ECONNREFUSED: -111
  static readonly EHOSTDOWN: -112
  static readonly EHOSTUNREACH: -113
  static readonly EALREADY: -114
  static readonly EINPROGRESS: -115
  static readonly ESTALE: -116
  static readonly EUCLEAN: -117
  static readonly ENOTNAM: -118
  static readonly ENAVAIL: -119
  static readonly EISNAM: -120
  static readonly EREMOTEIO: -121
  static readonly EDQUOT: -122
  static readonly ENOMEDIUM: -123
  static readonly EMEDIUMTYPE: -124
}

export = Fuse
