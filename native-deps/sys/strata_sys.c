/*
 * strata_sys.c - the Linux system calls that Node's fs module lacks.
 *
 * strata's FUSE driver serves every request from directory fds into the
 * layer tree, so it needs the *at() family (fstatat, mknodat, renameat2,
 * ...), xattrs, hole-preserving copy-up and umount2, none of which Node
 * offers. This addon exposes them with conventions tuned for the FUSE hot
 * path:
 *
 *   - Everything is synchronous except copyData (libuv threadpool).
 *   - OS errors are never thrown: functions return -errno. Only wrong
 *     argument types throw, always a TypeError.
 *   - Paths are UTF-8 JS strings resolved relative to a directory fd, as in
 *     the *at() calls; AT_FDCWD is accepted. Every fd opened here carries
 *     O_CLOEXEC so that spawned helpers never inherit layer fds.
 *   - Values that may exceed 32 bits (sizes, seconds) travel as doubles.
 *
 * Built with _GNU_SOURCE and _FILE_OFFSET_BITS=64 (see binding.gyp), so off_t
 * is 64-bit everywhere.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <node_api.h>

#include "digest.h"
#include "file_writer.h"
#include "read_file.h"
#include "tree_summary.h"

/* glibc >= 2.28 defines these in <stdio.h>; older headers do not. */
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif
#ifndef UMOUNT_NOFOLLOW
#define UMOUNT_NOFOLLOW 8
#endif
#ifndef XATTR_NAME_MAX
#define XATTR_NAME_MAX 255
#endif

/* Longest path the kernel accepts is PATH_MAX - 1 bytes; see get_str(). */
#define PATH_BUF (PATH_MAX + 1)
#define NAME_BUF (XATTR_NAME_MAX + 2)
#define STAT_FIELDS 22
#define STATVFS_FIELDS 11
/* copyData's pread/pwrite fallback chunk. */
#define RW_CHUNK ((size_t)1 << 20)
/* Cap for one copy_file_range call; the kernel clamps to ~2 GiB anyway. */
#define CFR_CHUNK ((off_t)1 << 30)
/* Attempts at reading an xattr whose size keeps changing under us. */
#define XATTR_TRIES 8

/* ------------------------------------------------------------------------ */
/* N-API plumbing                                                            */

/*
 * Report an N-API failure we cannot recover from (practically only out of
 * memory) as an Error, unless a JS exception is already pending.
 */
static napi_value fail(napi_env env, const char *what)
{
    const napi_extended_error_info *ei = NULL;
    bool pending = false;
    char msg[192];

    /* The error info is only valid until the next N-API call. */
    napi_get_last_error_info(env, &ei);
    snprintf(msg, sizeof msg, "strata_sys: %s failed: %s", what,
             ei && ei->error_message ? ei->error_message : "N-API error");
    if (napi_is_exception_pending(env, &pending) == napi_ok && !pending)
        napi_throw_error(env, NULL, msg);
    return NULL;
}

#define CHECK(call)                      \
    do {                                 \
        if ((call) != napi_ok)           \
            return fail(env, #call);     \
    } while (0)

static napi_value type_error(napi_env env, const char *arg, const char *expected)
{
    char msg[160];

    snprintf(msg, sizeof msg, "strata_sys: %s must be %s", arg, expected);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
}

static napi_value ret_int(napi_env env, int32_t v)
{
    napi_value r;

    CHECK(napi_create_int32(env, v, &r));
    return r;
}

/* Turn a libc-style result (-1 + errno, or >= 0) into our convention. */
static napi_value ret_sys(napi_env env, int r)
{
    return ret_int(env, r < 0 ? -errno : r);
}

/*
 * Argument fetching. ARGS(n) always yields n values: missing ones read as
 * undefined and fail their type check. String arguments the kernel would
 * reject anyway (too long, embedded NUL) are not type errors: the first such
 * problem is remembered in bad_ and returned as -errno by ARGS_DONE(), after
 * every argument has been type-checked.
 */
#define ARGS(n)                                                           \
    int bad_ = 0;                                                         \
    size_t argc = (n);                                                    \
    napi_value argv[(n)];                                                 \
    (void)bad_;                                                           \
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)  \
        return fail(env, "napi_get_cb_info")

#define ARGS_DONE()                   \
    do {                              \
        if (bad_)                     \
            return ret_int(env, bad_); \
    } while (0)

static bool get_i32(napi_env env, napi_value v, int32_t *out, const char *what)
{
    if (napi_get_value_int32(env, v, out) == napi_ok)
        return true;
    type_error(env, what, "a number");
    return false;
}

/* ToUint32 semantics: -1 becomes 0xffffffff, which is what chown wants. */
static bool get_u32(napi_env env, napi_value v, uint32_t *out, const char *what)
{
    if (napi_get_value_uint32(env, v, out) == napi_ok)
        return true;
    type_error(env, what, "a number");
    return false;
}

/* Doubles are truncated; NaN reads as 0 and huge values saturate (N-API). */
static bool get_i64(napi_env env, napi_value v, int64_t *out, const char *what)
{
    if (napi_get_value_int64(env, v, out) == napi_ok)
        return true;
    type_error(env, what, "a number");
    return false;
}

/*
 * Copy a JS string into buf as UTF-8. Strings of size - 1 bytes or more are
 * refused with toolong, so one N-API call suffices: a truncated copy is
 * always detected. An embedded NUL would silently shorten the name the kernel
 * sees (a different file!), so it is refused with EINVAL.
 */
static bool get_str(napi_env env, napi_value v, char *buf, size_t size,
                    const char *what, int toolong, int *bad)
{
    size_t len = 0;

    if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok) {
        type_error(env, what, "a string");
        return false;
    }
    if (len >= size - 1 || strlen(buf) != len) {
        if (!*bad)
            *bad = len >= size - 1 ? -toolong : -EINVAL;
        buf[0] = '\0';
    }
    return true;
}

#define ARG_INT(i, var)                              \
    int32_t var;                                     \
    if (!get_i32(env, argv[i], &var, #var))          \
        return NULL
#define ARG_U32(i, var)                              \
    uint32_t var;                                    \
    if (!get_u32(env, argv[i], &var, #var))          \
        return NULL
#define ARG_I64(i, var)                              \
    int64_t var;                                     \
    if (!get_i64(env, argv[i], &var, #var))          \
        return NULL
#define ARG_PATH(i, var)                                                     \
    char var[PATH_BUF];                                                      \
    if (!get_str(env, argv[i], var, sizeof var, #var, ENAMETOOLONG, &bad_))  \
        return NULL
/* The kernel reports over-long xattr names as ERANGE; so do we. */
#define ARG_XNAME(i, var)                                              \
    char var[NAME_BUF];                                                \
    if (!get_str(env, argv[i], var, sizeof var, #var, ERANGE, &bad_))  \
        return NULL

/* Fetch a typed array of the given type with at least minlen elements. */
static bool get_typed(napi_env env, napi_value v, napi_typedarray_type want,
                      size_t minlen, void **data, const char *what,
                      const char *expected)
{
    bool is = false;
    napi_typedarray_type type;
    size_t length;
    napi_value ab;
    size_t offset;

    if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
        napi_get_typedarray_info(env, v, &type, &length, data, &ab,
                                 &offset) != napi_ok ||
        type != want || length < minlen || *data == NULL) {
        type_error(env, what, expected);
        return false;
    }
    return true; /* data already points at element 0 (offset applied) */
}

/* ------------------------------------------------------------------------ */
/* stat family                                                               */

static void split64(uint32_t *out, uint64_t v)
{
    out[0] = (uint32_t)v;
    out[1] = (uint32_t)(v >> 32);
}

/* The layout is consumed unchanged by our patched fuse-native: keep it fixed. */
static void fill_stat(uint32_t *out, const struct stat *st)
{
    out[0] = st->st_mode;
    out[1] = st->st_uid;
    out[2] = st->st_gid;
    split64(out + 3, (uint64_t)st->st_size);
    out[5] = (uint32_t)st->st_dev;
    out[6] = (uint32_t)st->st_nlink;
    split64(out + 7, (uint64_t)st->st_ino);
    out[9] = (uint32_t)st->st_rdev;
    out[10] = (uint32_t)st->st_blksize;
    split64(out + 11, (uint64_t)st->st_blocks);
    /* Seconds may be negative: split the two's complement 64-bit value. */
    split64(out + 13, (uint64_t)(int64_t)st->st_atim.tv_sec);
    out[15] = (uint32_t)st->st_atim.tv_nsec;
    split64(out + 16, (uint64_t)(int64_t)st->st_mtim.tv_sec);
    out[18] = (uint32_t)st->st_mtim.tv_nsec;
    split64(out + 19, (uint64_t)(int64_t)st->st_ctim.tv_sec);
    out[21] = (uint32_t)st->st_ctim.tv_nsec;
}

#define STAT_OUT_EXPECTED "a Uint32Array of length >= 22"
#define STATVFS_OUT_EXPECTED "a Float64Array of length >= 11"

static napi_value LstatAt(napi_env env, napi_callback_info info)
{
    ARGS(3);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    void *out;
    if (!get_typed(env, argv[2], napi_uint32_array, STAT_FIELDS, &out, "out",
                   STAT_OUT_EXPECTED))
        return NULL;
    ARGS_DONE();

    struct stat st;
    int flags = AT_SYMLINK_NOFOLLOW | (path[0] == '\0' ? AT_EMPTY_PATH : 0);
    if (fstatat(dirfd, path, &st, flags) < 0)
        return ret_int(env, -errno);
    fill_stat(out, &st);
    return ret_int(env, 0);
}

static napi_value Fstat(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_INT(0, fd);
    void *out;
    if (!get_typed(env, argv[1], napi_uint32_array, STAT_FIELDS, &out, "out",
                   STAT_OUT_EXPECTED))
        return NULL;

    struct stat st;
    if (fstat(fd, &st) < 0)
        return ret_int(env, -errno);
    fill_stat(out, &st);
    return ret_int(env, 0);
}

static napi_value StatvfsFd(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_INT(0, fd);
    void *data;
    if (!get_typed(env, argv[1], napi_float64_array, STATVFS_FIELDS, &data,
                   "out", STATVFS_OUT_EXPECTED))
        return NULL;

    struct statvfs sv;
    if (fstatvfs(fd, &sv) < 0)
        return ret_int(env, -errno);
    double *out = data;
    out[0] = (double)sv.f_bsize;
    out[1] = (double)sv.f_frsize;
    out[2] = (double)sv.f_blocks;
    out[3] = (double)sv.f_bfree;
    out[4] = (double)sv.f_bavail;
    out[5] = (double)sv.f_files;
    out[6] = (double)sv.f_ffree;
    out[7] = (double)sv.f_favail;
    out[8] = (double)sv.f_fsid; /* exact only up to 2^53 */
    out[9] = (double)sv.f_flag;
    out[10] = (double)sv.f_namemax;
    return ret_int(env, 0);
}

/* ------------------------------------------------------------------------ */
/* Namespace operations                                                      */

static napi_value OpenAt(napi_env env, napi_callback_info info)
{
    ARGS(4);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARG_INT(2, flags);
    ARG_U32(3, mode);
    ARGS_DONE();
    return ret_sys(env, openat(dirfd, path, flags | O_CLOEXEC, (mode_t)mode));
}

static napi_value Close(napi_env env, napi_callback_info info)
{
    ARGS(1);
    ARG_INT(0, fd);
    /* Never retry on EINTR: Linux has released the fd already. */
    return ret_sys(env, close(fd));
}

static napi_value MkdirAt(napi_env env, napi_callback_info info)
{
    ARGS(3);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARG_U32(2, mode);
    ARGS_DONE();
    return ret_sys(env, mkdirat(dirfd, path, (mode_t)mode));
}

static napi_value MknodAt(napi_env env, napi_callback_info info)
{
    ARGS(4);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARG_U32(2, mode);
    ARG_I64(3, dev); /* glibc makedev() encoding, as in fs.Stats.rdev */
    ARGS_DONE();
    return ret_sys(env, mknodat(dirfd, path, (mode_t)mode, (dev_t)dev));
}

static napi_value SymlinkAt(napi_env env, napi_callback_info info)
{
    ARGS(3);
    ARG_PATH(0, target);
    ARG_INT(1, dirfd);
    ARG_PATH(2, path);
    ARGS_DONE();
    return ret_sys(env, symlinkat(target, dirfd, path));
}

static napi_value LinkAt(napi_env env, napi_callback_info info)
{
    ARGS(4);
    ARG_INT(0, olddirfd);
    ARG_PATH(1, oldpath);
    ARG_INT(2, newdirfd);
    ARG_PATH(3, newpath);
    ARGS_DONE();
    /* No AT_SYMLINK_FOLLOW: a symlink is hard-linked itself, as POSIX link. */
    return ret_sys(env, linkat(olddirfd, oldpath, newdirfd, newpath, 0));
}

static napi_value UnlinkAt(napi_env env, napi_callback_info info)
{
    ARGS(3);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARG_INT(2, flags);
    ARGS_DONE();
    return ret_sys(env, unlinkat(dirfd, path, flags));
}

static napi_value RenameAt2(napi_env env, napi_callback_info info)
{
    ARGS(5);
    ARG_INT(0, olddirfd);
    ARG_PATH(1, oldpath);
    ARG_INT(2, newdirfd);
    ARG_PATH(3, newpath);
    ARG_U32(4, flags);
    ARGS_DONE();
    if (flags == 0)
        return ret_sys(env, renameat(olddirfd, oldpath, newdirfd, newpath));
    /* The raw syscall, not glibc's wrapper: no dependency on glibc >= 2.28. */
    return ret_sys(env, (int)syscall(SYS_renameat2, olddirfd, oldpath,
                                     newdirfd, newpath, flags));
}

static napi_value ReadlinkAt(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARGS_DONE();

    /* Targets are at most PATH_MAX - 1 bytes, so a full buffer means more. */
    char buf[PATH_MAX];
    ssize_t n = readlinkat(dirfd, path, buf, sizeof buf);
    if (n < 0)
        return ret_int(env, -errno);
    if ((size_t)n >= sizeof buf)
        return ret_int(env, -ENAMETOOLONG);
    napi_value r;
    CHECK(napi_create_string_utf8(env, buf, (size_t)n, &r));
    return r;
}

/* ------------------------------------------------------------------------ */
/* Attributes                                                                */

/* chmod the object behind an O_PATH fd; symlinks have no mode to change. */
static int chmod_opath(int fd, mode_t mode)
{
    struct stat st;
    char proc[32];

    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISLNK(st.st_mode))
        return -EOPNOTSUPP;
    /* fchmod() refuses O_PATH fds; the magic link reaches the same inode. */
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return chmod(proc, mode) < 0 ? -errno : 0;
}

static napi_value ChmodAt(napi_env env, napi_callback_info info)
{
    ARGS(3);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARG_U32(2, mode);
    ARGS_DONE();

    /*
     * The fchmodat syscall takes no flags (fchmodat2 only came with Linux
     * 6.6) and glibc's AT_SYMLINK_NOFOLLOW emulation varies by version, so
     * pin the final component with O_PATH|O_NOFOLLOW ourselves: it can no
     * longer be swapped for a symlink between the check and the chmod.
     */
    int fd = openat(dirfd, path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return ret_int(env, -errno);
    int r = chmod_opath(fd, (mode_t)mode);
    close(fd);
    return ret_int(env, r);
}

static napi_value ChownAt(napi_env env, napi_callback_info info)
{
    ARGS(4);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARG_U32(2, uid);
    ARG_U32(3, gid);
    ARGS_DONE();
    return ret_sys(env, fchownat(dirfd, path, (uid_t)uid, (gid_t)gid,
                                 AT_SYMLINK_NOFOLLOW));
}

static napi_value UtimensAt(napi_env env, napi_callback_info info)
{
    ARGS(6);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARG_I64(2, atimeSec);
    ARG_I64(3, atimeNsec);
    ARG_I64(4, mtimeSec);
    ARG_I64(5, mtimeNsec);
    ARGS_DONE();
    const struct timespec ts[2] = {
        { .tv_sec = (time_t)atimeSec, .tv_nsec = (long)atimeNsec },
        { .tv_sec = (time_t)mtimeSec, .tv_nsec = (long)mtimeNsec },
    };
    return ret_sys(env, utimensat(dirfd, path, ts, AT_SYMLINK_NOFOLLOW));
}

static napi_value Futimens(napi_env env, napi_callback_info info)
{
    ARGS(5);
    ARG_INT(0, fd);
    ARG_I64(1, atimeSec);
    ARG_I64(2, atimeNsec);
    ARG_I64(3, mtimeSec);
    ARG_I64(4, mtimeNsec);
    const struct timespec ts[2] = {
        { .tv_sec = (time_t)atimeSec, .tv_nsec = (long)atimeNsec },
        { .tv_sec = (time_t)mtimeSec, .tv_nsec = (long)mtimeNsec },
    };
    return ret_sys(env, futimens(fd, ts));
}

static napi_value Fchmod(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_INT(0, fd);
    ARG_U32(1, mode);
    return ret_sys(env, fchmod(fd, (mode_t)mode));
}

static napi_value Fchown(napi_env env, napi_callback_info info)
{
    ARGS(3);
    ARG_INT(0, fd);
    ARG_U32(1, uid);
    ARG_U32(2, gid);
    return ret_sys(env, fchown(fd, (uid_t)uid, (gid_t)gid));
}

static napi_value Ftruncate(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_INT(0, fd);
    ARG_I64(1, size);
    return ret_sys(env, ftruncate(fd, (off_t)size));
}

static napi_value Fsync(napi_env env, napi_callback_info info)
{
    ARGS(1);
    ARG_INT(0, fd);
    return ret_sys(env, fsync(fd));
}

/* syncfs(fd): everything written to the filesystem holding fd, in one call (the layer store's
 * commit point, cheaper than an fsync per unpacked file). */
static napi_value Syncfs(napi_env env, napi_callback_info info)
{
    ARGS(1);
    ARG_INT(0, fd);
    return ret_sys(env, syncfs(fd));
}

static napi_value Fdatasync(napi_env env, napi_callback_info info)
{
    ARGS(1);
    ARG_INT(0, fd);
    return ret_sys(env, fdatasync(fd));
}

/* ------------------------------------------------------------------------ */
/* Extended attributes                                                       */

/*
 * Linux 6.13 added *xattrat() syscalls: one call on (dirfd, path) without
 * following a final symlink, and on O_PATH fds through AT_EMPTY_PATH. glibc
 * 2.36 has no wrappers and older kernels no syscalls, so they are called by
 * number (the same on every architecture for syscalls this new) and, on
 * ENOSYS, (dirfd, path) is turned into "/proc/self/fd/<dirfd>/<path>" for the
 * l* calls instead (several times slower: /proc resolves the fd link). They
 * refuse O_PATH fds (EBADF, 6.18), so an fd alone goes through f*xattr.
 */
typedef enum { X_GET, X_SET, X_LIST, X_REMOVE } xop;

#ifndef __NR_setxattrat
#define __NR_setxattrat 463
#define __NR_getxattrat 464
#define __NR_listxattrat 465
#define __NR_removexattrat 466
#endif

struct xattrat_args {
    uint64_t value;
    uint32_t size;
    uint32_t flags;
};

/* Cleared the first time the kernel answers ENOSYS. */
static bool have_xattrat = true;

/* The *xattrat() call for op, or -1 with errno set (ENOSYS: not this kernel). */
static ssize_t xcall_at(int dirfd, const char *rel, unsigned at_flags, xop op,
                        const char *name, void *buf, size_t size, int flags)
{
    struct xattrat_args a = {(uint64_t)(uintptr_t)buf, (uint32_t)size, (uint32_t)flags};
    switch (op) {
    case X_GET:
        a.flags = 0;
        return syscall(__NR_getxattrat, dirfd, rel, at_flags, name, &a, sizeof a);
    case X_SET:
        return syscall(__NR_setxattrat, dirfd, rel, at_flags, name, &a, sizeof a);
    case X_LIST:
        return syscall(__NR_listxattrat, dirfd, rel, at_flags, buf, size);
    case X_REMOVE:
        return syscall(__NR_removexattrat, dirfd, rel, at_flags, name);
    }
    errno = EINVAL;
    return -1;
}

typedef enum { XT_FD, XT_LPATH, XT_PATH } xkind;

typedef struct {
    xkind kind;
    int fd;       /* XT_FD: use the f* calls on it */
    int owned_fd; /* opened by xt_open, closed by xt_close; -1 if none */
    int dirfd;    /* XT_LPATH: the (dirfd, rel) the caller named, for *xattrat */
    const char *rel;
    char path[PATH_MAX];
} xtarget;

static int xt_proc(xtarget *t);

static int xt_open(xtarget *t, int dirfd, const char *path)
{
    t->owned_fd = -1;
    t->fd = -1;
    t->dirfd = -1;
    t->rel = NULL;
    if (path[0] == '\0' && dirfd != AT_FDCWD) {
        t->kind = XT_FD;
        t->fd = dirfd;
        return 0;
    }
    t->kind = XT_LPATH;
    if (path[0] == '\0') { /* AT_FDCWD itself */
        strcpy(t->path, ".");
        return 0;
    }
    if (path[0] == '/' || dirfd == AT_FDCWD) { /* dirfd ignored, as in *at() */
        snprintf(t->path, sizeof t->path, "%s", path); /* fits: < PATH_MAX */
        return 0;
    }
    t->dirfd = dirfd;
    t->rel = path;
    /* The *xattrat() calls need no path built; the /proc one is made if they are missing. */
    return have_xattrat ? 0 : xt_proc(t);
}

/* (dirfd, rel) of t as a /proc path for the l* calls (kernels without *xattrat). */
static int xt_proc(xtarget *t)
{
    int dirfd = t->dirfd;
    const char *path = t->rel;
    int n = snprintf(t->path, sizeof t->path, "/proc/self/fd/%d/%s", dirfd,
                     path);
    if (n >= 0 && (size_t)n < sizeof t->path)
        return 0;

    /*
     * The prefix pushed a legal path over PATH_MAX: pin the object with an
     * O_PATH fd and go through its own magic link, which must be followed
     * (the l* calls would act on the /proc entry). For a symlink, following
     * that link happens to reach the symlink itself on Linux today, but that
     * is not a documented promise, so this rare case refuses symlinks.
     */
    int fd = openat(dirfd, path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int e = fstat(fd, &st) < 0 ? errno : S_ISLNK(st.st_mode) ? ENAMETOOLONG : 0;
    if (e) {
        close(fd);
        return -e;
    }
    t->kind = XT_PATH;
    t->owned_fd = fd;
    snprintf(t->path, sizeof t->path, "/proc/self/fd/%d", fd);
    return 0;
}

static void xt_close(xtarget *t)
{
    if (t->owned_fd >= 0)
        close(t->owned_fd);
    t->owned_fd = -1;
}

static ssize_t xcall_path(const char *p, bool follow, xop op, const char *name,
                          void *buf, size_t size, int flags)
{
    switch (op) {
    case X_GET:
        return follow ? getxattr(p, name, buf, size)
                      : lgetxattr(p, name, buf, size);
    case X_SET:
        return follow ? setxattr(p, name, buf, size, flags)
                      : lsetxattr(p, name, buf, size, flags);
    case X_LIST:
        return follow ? listxattr(p, buf, size) : llistxattr(p, buf, size);
    case X_REMOVE:
        return follow ? removexattr(p, name) : lremovexattr(p, name);
    }
    errno = EINVAL;
    return -1;
}

/* Run one xattr operation on t; returns the syscall's result or -errno. */
static ssize_t xcall(xtarget *t, xop op, const char *name, void *buf,
                     size_t size, int flags)
{
    ssize_t r;

    if (have_xattrat && t->rel != NULL) {
        r = xcall_at(t->dirfd, t->rel, AT_SYMLINK_NOFOLLOW, op, name, buf, size, flags);
        if (r >= 0 || errno != ENOSYS)
            return r < 0 ? -errno : r;
        have_xattrat = false;
        int e = xt_proc(t);
        if (e < 0)
            return e;
    }
    if (t->kind != XT_FD) {
        r = xcall_path(t->path, t->kind == XT_PATH, op, name, buf, size, flags);
        return r < 0 ? -errno : r;
    }
    switch (op) {
    case X_GET:
        r = fgetxattr(t->fd, name, buf, size);
        break;
    case X_SET:
        r = fsetxattr(t->fd, name, buf, size, flags);
        break;
    case X_LIST:
        r = flistxattr(t->fd, buf, size);
        break;
    default:
        r = fremovexattr(t->fd, name);
        break;
    }
    if (r < 0 && errno == EBADF && t->fd >= 0) {
        /*
         * f*xattr refuse O_PATH fds, which the driver uses for directories
         * and special files; the fd's magic link reaches the same inode
         * (for a symlink: the link itself, not its target). If /proc has no
         * such fd either, it really was a bad fd.
         */
        char proc[32];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", t->fd);
        r = xcall_path(proc, true, op, name, buf, size, flags);
        if (r < 0 && errno == ENOENT)
            errno = EBADF;
    }
    return r < 0 ? -errno : r;
}

/*
 * Run a sizing query, then the real call; the value can grow in between
 * (ERANGE), so retry a bounded number of times. On success *out holds a
 * malloc'd buffer of the returned length (possibly 0).
 */
static ssize_t xread(xtarget *t, xop op, const char *name, char **out)
{
    char *buf = NULL;
    ssize_t r = -ERANGE;

    for (int i = 0; i < XATTR_TRIES && r == -ERANGE; i++) {
        ssize_t size = xcall(t, op, name, NULL, 0, 0);
        if (size < 0) {
            r = size;
            break;
        }
        char *nb = realloc(buf, size > 0 ? (size_t)size : 1);
        if (nb == NULL) {
            r = -ENOMEM;
            break;
        }
        buf = nb;
        r = xcall(t, op, name, buf, (size_t)size, 0);
    }
    if (r < 0) {
        free(buf);
        buf = NULL;
    }
    *out = buf;
    return r;
}

static napi_value xattr_get(napi_env env, xtarget *t, const char *name)
{
    char *buf;
    ssize_t n = xread(t, X_GET, name, &buf);
    if (n < 0)
        return ret_int(env, (int32_t)n);
    napi_value r;
    napi_status s = napi_create_buffer_copy(env, (size_t)n, buf, NULL, &r);
    free(buf);
    return s == napi_ok ? r : fail(env, "napi_create_buffer_copy");
}

static napi_value xattr_list(napi_env env, xtarget *t)
{
    char *buf;
    ssize_t n = xread(t, X_LIST, NULL, &buf);
    if (n < 0)
        return ret_int(env, (int32_t)n);

    napi_value arr, s;
    uint32_t count = 0;
    napi_status st = napi_create_array(env, &arr);
    /* The kernel returns "name1\0name2\0...", every name NUL-terminated. */
    for (ssize_t off = 0; st == napi_ok && off < n;) {
        size_t len = strnlen(buf + off, (size_t)(n - off));
        st = napi_create_string_utf8(env, buf + off, len, &s);
        if (st == napi_ok)
            st = napi_set_element(env, arr, count++, s);
        off += (ssize_t)len + 1;
    }
    free(buf);
    return st == napi_ok ? arr : fail(env, "building the xattr name list");
}

static napi_value xattr_set(napi_env env, xtarget *t, const char *name,
                            napi_value value, int flags)
{
    void *data = NULL;
    size_t len = 0;
    CHECK(napi_get_buffer_info(env, value, &data, &len));
    return ret_int(env, (int32_t)xcall(t, X_SET, name, data, len, flags));
}

/* Type-check a Buffer argument before any syscall runs. */
static bool check_buffer(napi_env env, napi_value v, const char *what)
{
    bool is = false;
    if (napi_is_buffer(env, v, &is) == napi_ok && is)
        return true;
    type_error(env, what, "a Buffer");
    return false;
}

/* Shared front half of the *At xattr functions: resolve, or return -errno. */
#define XT_OPEN(t, dirfd, path)                   \
    xtarget t;                                    \
    do {                                          \
        int e_ = xt_open(&t, dirfd, path);        \
        if (e_ < 0)                               \
            return ret_int(env, e_);              \
    } while (0)

static napi_value GetxattrAt(napi_env env, napi_callback_info info)
{
    ARGS(3);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARG_XNAME(2, name);
    ARGS_DONE();
    XT_OPEN(t, dirfd, path);
    napi_value r = xattr_get(env, &t, name);
    xt_close(&t);
    return r;
}

static napi_value SetxattrAt(napi_env env, napi_callback_info info)
{
    ARGS(5);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARG_XNAME(2, name);
    if (!check_buffer(env, argv[3], "value"))
        return NULL;
    ARG_INT(4, flags);
    ARGS_DONE();
    XT_OPEN(t, dirfd, path);
    napi_value r = xattr_set(env, &t, name, argv[3], flags);
    xt_close(&t);
    return r;
}

static napi_value ListxattrAt(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARGS_DONE();
    XT_OPEN(t, dirfd, path);
    napi_value r = xattr_list(env, &t);
    xt_close(&t);
    return r;
}

static napi_value RemovexattrAt(napi_env env, napi_callback_info info)
{
    ARGS(3);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARG_XNAME(2, name);
    ARGS_DONE();
    XT_OPEN(t, dirfd, path);
    ssize_t r = xcall(&t, X_REMOVE, name, NULL, 0, 0);
    xt_close(&t);
    return ret_int(env, (int32_t)r);
}

/* An fd target; path stays unset (no 4 KiB zeroing on the hot path). */
static xtarget *xt_fd(xtarget *t, int fd)
{
    t->kind = XT_FD;
    t->fd = fd;
    t->owned_fd = -1;
    t->dirfd = -1;
    t->rel = NULL;
    return t;
}

static napi_value Fgetxattr(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_INT(0, fd);
    ARG_XNAME(1, name);
    ARGS_DONE();
    xtarget t;
    return xattr_get(env, xt_fd(&t, fd), name);
}

static napi_value Fsetxattr(napi_env env, napi_callback_info info)
{
    ARGS(4);
    ARG_INT(0, fd);
    ARG_XNAME(1, name);
    if (!check_buffer(env, argv[2], "value"))
        return NULL;
    ARG_INT(3, flags);
    ARGS_DONE();
    xtarget t;
    return xattr_set(env, xt_fd(&t, fd), name, argv[2], flags);
}

static napi_value Flistxattr(napi_env env, napi_callback_info info)
{
    ARGS(1);
    ARG_INT(0, fd);
    xtarget t;
    return xattr_list(env, xt_fd(&t, fd));
}

static napi_value Fremovexattr(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_INT(0, fd);
    ARG_XNAME(1, name);
    ARGS_DONE();
    xtarget t;
    return ret_int(env,
                   (int32_t)xcall(xt_fd(&t, fd), X_REMOVE, name, NULL, 0, 0));
}

/* ------------------------------------------------------------------------ */
/* Directories                                                               */

static bool is_dot_or_dotdot(const char *n)
{
    return n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'));
}

/* Read all entries into names and *types; returns 0 or -errno. */
static int read_entries(napi_env env, DIR *d, napi_value names,
                        uint8_t **types, double **inos, uint32_t *count,
                        bool *napi_failed)
{
    size_t cap = 0;
    uint32_t n = 0;

    *types = NULL;
    *inos = NULL;
    for (;;) {
        errno = 0; /* readdir() reports the end and errors both as NULL */
        struct dirent *de = readdir(d);
        if (de == NULL) {
            *count = n;
            return -errno;
        }
        if (is_dot_or_dotdot(de->d_name))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            uint8_t *nt = realloc(*types, ncap);
            if (nt == NULL)
                return -ENOMEM;
            *types = nt;
            double *ni = realloc(*inos, ncap * sizeof(double));
            if (ni == NULL)
                return -ENOMEM;
            *inos = ni;
            cap = ncap;
        }
        (*types)[n] = de->d_type;
        /* d_ino as a double: exact below 2^53, which covers real inode numbers. */
        (*inos)[n] = (double)de->d_ino;

        /* A scope per entry: the array keeps the string alive, not us. */
        napi_handle_scope scope;
        napi_value s;
        if (napi_open_handle_scope(env, &scope) != napi_ok) {
            *napi_failed = true;
            return 0;
        }
        bool ok = napi_create_string_utf8(env, de->d_name, NAPI_AUTO_LENGTH,
                                          &s) == napi_ok &&
                  napi_set_element(env, names, n, s) == napi_ok;
        if (napi_close_handle_scope(env, scope) != napi_ok || !ok) {
            *napi_failed = true;
            return 0;
        }
        n++;
    }
}

static napi_value ReaddirAt(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_INT(0, dirfd);
    ARG_PATH(1, path);
    ARGS_DONE();

    /* Always a fresh open: reading dirfd itself would move its offset. */
    int fd = openat(dirfd, path[0] ? path : ".",
                    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ret_int(env, -errno);
    DIR *d = fdopendir(fd); /* owns fd from here on */
    if (d == NULL) {
        int e = errno;
        close(fd);
        return ret_int(env, -e);
    }

    napi_value names;
    if (napi_create_array(env, &names) != napi_ok) {
        closedir(d);
        return fail(env, "napi_create_array");
    }
    uint8_t *types;
    double *inos;
    uint32_t count = 0;
    bool napi_failed = false;
    int err = read_entries(env, d, names, &types, &inos, &count, &napi_failed);
    closedir(d);
    if (err < 0 || napi_failed) {
        free(types);
        free(inos);
        return napi_failed ? fail(env, "building the entry list")
                           : ret_int(env, err);
    }

    napi_value result, ab, typed, iab, ityped;
    void *data = NULL, *idata = NULL;
    napi_status s = napi_create_arraybuffer(env, count, &data, &ab);
    if (s == napi_ok && count > 0)
        memcpy(data, types, count);
    free(types);
    napi_status si = s == napi_ok
        ? napi_create_arraybuffer(env, count * sizeof(double), &idata, &iab)
        : s;
    if (si == napi_ok && count > 0)
        memcpy(idata, inos, count * sizeof(double));
    free(inos);
    if (s != napi_ok || si != napi_ok)
        return fail(env, "napi_create_arraybuffer");
    CHECK(napi_create_typedarray(env, napi_uint8_array, count, ab, 0, &typed));
    CHECK(napi_create_typedarray(env, napi_float64_array, count, iab, 0, &ityped));
    CHECK(napi_create_object(env, &result));
    CHECK(napi_set_named_property(env, result, "names", names));
    CHECK(napi_set_named_property(env, result, "types", typed));
    CHECK(napi_set_named_property(env, result, "inos", ityped));
    return result;
}

/* ------------------------------------------------------------------------ */
/* copyData: hole-preserving copy-up on the libuv threadpool                 */

typedef struct {
    bool use_rw; /* copy_file_range is unusable for this pair of files */
    char *buf;   /* pread/pwrite bounce buffer, allocated on first need */
} copy_state;

/*
 * Copy [off, off + len) of src to the same offsets of dst. Explicit offsets
 * throughout, so neither fd's file position matters. Returns the bytes
 * copied, fewer than len only if src ended early, or -errno.
 */
static int64_t copy_extent(int src, int dst, off_t off, off_t len,
                           copy_state *cs)
{
    off_t done = 0;

    while (done < len && !cs->use_rw) {
        off_t in = off + done, out = in;
        off_t want = len - done < CFR_CHUNK ? len - done : CFR_CHUNK;
        ssize_t n = copy_file_range(src, &in, dst, &out, (size_t)want, 0);
        if (n > 0) {
            done += n;
        } else if (n == 0) {
            return done; /* src shrank under us */
        } else if (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                   errno == EOPNOTSUPP) {
            /* Cross-fs, old kernel or unsupported fs: plain I/O from here. */
            cs->use_rw = true;
        } else if (errno != EINTR) {
            return -errno;
        }
    }

    while (done < len) {
        if (cs->buf == NULL && (cs->buf = malloc(RW_CHUNK)) == NULL)
            return -ENOMEM;
        size_t want = len - done < (off_t)RW_CHUNK ? (size_t)(len - done)
                                                    : RW_CHUNK;
        ssize_t n = pread(src, cs->buf, want, off + done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return done;
        for (ssize_t w = 0; w < n;) {
            ssize_t m = pwrite(dst, cs->buf + w, (size_t)(n - w),
                               off + done + w);
            if (m < 0 && errno == EINTR)
                continue;
            if (m <= 0) /* 0 would loop forever; no fs should do that */
                return m < 0 ? -errno : -EIO;
            w += m;
        }
        done += n;
    }
    return done;
}

static int64_t copy_sparse(int src, int dst)
{
    struct stat st;
    copy_state cs = { .use_rw = false, .buf = NULL };
    int64_t total = 0, r;

    if (fstat(src, &st) < 0)
        return -errno;
    /* Copy the file as it was when we started; a lower layer is immutable. */
    const off_t size = st.st_size;

    for (off_t pos = 0; pos < size;) {
        /* SEEK_DATA/SEEK_HOLE move src's offset: an unavoidable side effect. */
        off_t data = lseek(src, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) /* nothing but a hole up to EOF */
                break;
            if (pos == 0 && (errno == EINVAL || errno == EOPNOTSUPP)) {
                /* No hole support at all: treat the file as one extent. */
                r = copy_extent(src, dst, 0, size, &cs);
                if (r < 0)
                    goto out;
                total += r;
                break;
            }
            r = -errno;
            goto out;
        }
        if (data >= size)
            break;
        off_t hole = lseek(src, data, SEEK_HOLE);
        if (hole < 0) {
            r = -errno;
            goto out;
        }
        if (hole > size)
            hole = size;
        r = copy_extent(src, dst, data, hole - data, &cs);
        if (r < 0)
            goto out;
        total += r;
        if (r < hole - data)
            break; /* src shrank: stop, the truncate below fixes the size */
        pos = hole;
    }
    /* Holes are never written, so a trailing one needs the size set. */
    r = ftruncate(dst, size) < 0 ? -errno : total;
out:
    free(cs.buf);
    return r;
}

/* Work done on the threadpool: a file copy, or a filesystem flush. */
typedef enum { JOB_COPY, JOB_SYNCFS } job_kind;

typedef struct {
    napi_async_work work;
    napi_ref callback;
    job_kind kind;
    int src, dst; /* JOB_SYNCFS: src is the fd */
    int64_t result; /* bytes copied, or 0; or -errno */
} copy_job;

static void copy_execute(napi_env env, void *data)
{
    (void)env; /* threadpool: no N-API calls allowed here */
    copy_job *job = data;
    if (job->kind == JOB_SYNCFS)
        job->result = syncfs(job->src) < 0 ? -errno : 0;
    else
        job->result = copy_sparse(job->src, job->dst);
}

static void copy_complete(napi_env env, napi_status status, void *data)
{
    copy_job *job = data;
    napi_value cb, global, res;
    int64_t result = status == napi_ok ? job->result : -ECANCELED;

    /*
     * If any of these fail (out of memory) the callback cannot be reached
     * at all; there is nobody else to tell. An exception thrown by the
     * callback surfaces as an uncaught exception, as for fs callbacks.
     */
    if (napi_get_reference_value(env, job->callback, &cb) == napi_ok &&
        cb != NULL && napi_get_global(env, &global) == napi_ok &&
        napi_create_int64(env, result, &res) == napi_ok)
        napi_call_function(env, global, cb, 1, &res, NULL);
    napi_delete_reference(env, job->callback);
    napi_delete_async_work(env, job->work);
    free(job);
}

/* Queue `kind` on the threadpool, calling argv[cb_arg] with its result. */
static napi_value queue_job(napi_env env, napi_value *argv, int cb_arg, job_kind kind,
                            int src, int dst, const char *what)
{
    napi_valuetype type;
    CHECK(napi_typeof(env, argv[cb_arg], &type));
    if (type != napi_function)
        return type_error(env, "callback", "a function");

    /* Only a failure to even queue the job throws: nothing async exists yet. */
    copy_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        napi_throw_error(env, NULL, "strata_sys: out of memory");
        return NULL;
    }
    job->kind = kind;
    job->src = src;
    job->dst = dst;

    napi_value name, undefined;
    if (napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_reference(env, argv[cb_arg], 1, &job->callback) != napi_ok) {
        free(job);
        return fail(env, "async job setup");
    }
    if (napi_create_async_work(env, NULL, name, copy_execute, copy_complete,
                               job, &job->work) != napi_ok) {
        napi_delete_reference(env, job->callback);
        free(job);
        return fail(env, "napi_create_async_work");
    }
    if (napi_queue_async_work(env, job->work) != napi_ok) {
        napi_delete_async_work(env, job->work);
        napi_delete_reference(env, job->callback);
        free(job);
        return fail(env, "napi_queue_async_work");
    }
    CHECK(napi_get_undefined(env, &undefined));
    return undefined;
}

static napi_value CopyData(napi_env env, napi_callback_info info)
{
    ARGS(3);
    ARG_INT(0, srcFd);
    ARG_INT(1, dstFd);
    return queue_job(env, argv, 2, JOB_COPY, srcFd, dstFd, "strata_sys.copyData");
}

/* syncfs(fd) on the threadpool: start writing a filesystem back while the caller goes on. */
static napi_value SyncfsAsync(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_INT(0, fd);
    return queue_job(env, argv, 1, JOB_SYNCFS, fd, -1, "strata_sys.syncfsAsync");
}

/* ------------------------------------------------------------------------ */
/* Mounts                                                                    */

static napi_value Umount2(napi_env env, napi_callback_info info)
{
    ARGS(2);
    ARG_PATH(0, path);
    ARG_INT(1, flags);
    ARGS_DONE();
    return ret_sys(env, umount2(path, flags));
}

/* ------------------------------------------------------------------------ */
/* Module                                                                    */

static const struct {
    const char *name;
    int64_t value;
} constants[] = {
#define C(x) { #x, x }
    C(AT_FDCWD),         C(AT_REMOVEDIR),    C(AT_SYMLINK_NOFOLLOW),
    C(AT_EMPTY_PATH),    C(RENAME_NOREPLACE), C(RENAME_EXCHANGE),
    C(RENAME_WHITEOUT),  C(UTIME_NOW),       C(UTIME_OMIT),
    C(XATTR_CREATE),     C(XATTR_REPLACE),   C(MNT_FORCE),
    C(MNT_DETACH),       C(UMOUNT_NOFOLLOW), C(O_PATH),
    C(O_NOFOLLOW),       C(O_DIRECTORY),     C(DT_UNKNOWN),
    C(DT_FIFO),          C(DT_CHR),          C(DT_DIR),
    C(DT_BLK),           C(DT_REG),          C(DT_LNK),
    C(DT_SOCK),
#undef C
};

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */)
{
#define F(js, c) { js, NULL, c, NULL, NULL, NULL, napi_enumerable, NULL }
    static const napi_property_descriptor functions[] = {
        F("lstatAt", LstatAt),
        F("fstat", Fstat),
        F("openAt", OpenAt),
        F("close", Close),
        F("mkdirAt", MkdirAt),
        F("mknodAt", MknodAt),
        F("symlinkAt", SymlinkAt),
        F("linkAt", LinkAt),
        F("unlinkAt", UnlinkAt),
        F("renameAt2", RenameAt2),
        F("readlinkAt", ReadlinkAt),
        F("chmodAt", ChmodAt),
        F("chownAt", ChownAt),
        F("utimensAt", UtimensAt),
        F("futimens", Futimens),
        F("fchmod", Fchmod),
        F("fchown", Fchown),
        F("ftruncate", Ftruncate),
        F("fsync", Fsync),
        F("syncfs", Syncfs),
        F("syncfsAsync", SyncfsAsync),
        F("fdatasync", Fdatasync),
        F("getxattrAt", GetxattrAt),
        F("setxattrAt", SetxattrAt),
        F("listxattrAt", ListxattrAt),
        F("removexattrAt", RemovexattrAt),
        F("fgetxattr", Fgetxattr),
        F("fsetxattr", Fsetxattr),
        F("flistxattr", Flistxattr),
        F("fremovexattr", Fremovexattr),
        F("readdirAt", ReaddirAt),
        F("statvfsFd", StatvfsFd),
        F("copyData", CopyData),
        F("umount2", Umount2),
    };
#undef F
    CHECK(napi_define_properties(env, exports,
                                 sizeof functions / sizeof functions[0],
                                 functions));
    CHECK(register_file_writer(env, exports));
    CHECK(register_digest(env, exports));
    CHECK(register_read_file(env, exports));
    CHECK(register_tree_summary(env, exports));
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
        napi_value v;
        CHECK(napi_create_int64(env, constants[i].value, &v));
        CHECK(napi_set_named_property(env, exports, constants[i].name, v));
    }
    return exports;
}
