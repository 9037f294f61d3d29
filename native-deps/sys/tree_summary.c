/*
 * tree_summary.c - treeSummary(path): the SHA-256 of what lstat says of a file and, for a
 * directory, of everything below it: names, modes, owners, devices, inodes, sizes, and
 * modification and change times to the nanosecond. Symlinks are not followed.
 *
 * The build cache trusts a file whose identity (device, inode, size, mtime, ctime) is unchanged
 * to have unchanged content, as git's index does. An unchanged rebuild checks that for a whole
 * COPY source at once: walking a 5k-file context from JS, a Stats-like object and a few strings
 * per entry, was ~80 ms; these syscalls alone are a few.
 *
 * Each directory's names are sorted (strcmp), so the order getdents happens to give never
 * changes the digest. The stream hashed is, per entry, its name, a NUL, the fixed-size stat
 * record; after a directory's children, a single 'X' byte, which no name can be mistaken for
 * since a record's length is known once its name is read.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <node_api.h>
#include <openssl/evp.h>

#include "tree_summary.h"

/* Deeper trees are refused (-ELOOP) rather than holding a descriptor per level without bound. */
#define MAX_DEPTH 256

typedef struct {
    uint32_t mode, uid, gid;
    uint64_t dev, ino, size;
    int64_t mtime_sec, ctime_sec;
    uint32_t mtime_nsec, ctime_nsec;
} record;

static int add(EVP_MD_CTX *ctx, const char *name, const struct stat *st)
{
    record r;
    memset(&r, 0, sizeof r); /* padding bytes are hashed too */
    r.mode = st->st_mode;
    r.uid = st->st_uid;
    r.gid = st->st_gid;
    r.dev = st->st_dev;
    r.ino = st->st_ino;
    r.size = (uint64_t)st->st_size;
    r.mtime_sec = st->st_mtim.tv_sec;
    r.mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
    r.ctime_sec = st->st_ctim.tv_sec;
    r.ctime_nsec = (uint32_t)st->st_ctim.tv_nsec;
    return EVP_DigestUpdate(ctx, name, strlen(name) + 1) == 1 &&
                   EVP_DigestUpdate(ctx, &r, sizeof r) == 1
               ? 0
               : -ENOMEM;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The children of the directory open as dfd (which this closes), depth first. */
static int add_children(EVP_MD_CTX *ctx, int dfd, int depth)
{
    if (depth > MAX_DEPTH) {
        close(dfd);
        return -ELOOP;
    }
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        int e = errno;
        close(dfd);
        return -e;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            size_t ncap = cap == 0 ? 64 : cap * 2;
            char **grown = realloc(names, ncap * sizeof *names);
            if (grown == NULL) {
                r = -ENOMEM;
                goto out;
            }
            names = grown;
            cap = ncap;
        }
        if ((names[n] = strdup(de->d_name)) == NULL) {
            r = -ENOMEM;
            goto out;
        }
        n++;
    }
    if (errno != 0) {
        r = -errno;
        goto out;
    }
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n && r == 0; i++) {
        struct stat st;
        if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
            /* Removed since it was listed: as if never there (as the JS walk does). */
            if (errno == ENOENT)
                continue;
            r = -errno;
            break;
        }
        if ((r = add(ctx, names[i], &st)) != 0)
            break;
        if (S_ISDIR(st.st_mode)) {
            int fd = openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                r = errno == ENOENT ? 0 : -errno;
                continue;
            }
            r = add_children(ctx, fd, depth + 1);
        }
    }
    if (r == 0 && EVP_DigestUpdate(ctx, "X", 1) != 1)
        r = -ENOMEM;
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return r;
}

static napi_value TreeSummary(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1], result;
    char path[PATH_MAX + 1];
    size_t len = 0;
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok ||
        napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok) {
        napi_throw_type_error(env, NULL, "treeSummary: path must be a string");
        return NULL;
    }
    int r = 0;
    if (len >= sizeof path - 1 || strlen(path) != len)
        r = len >= sizeof path - 1 ? -ENAMETOOLONG : -EINVAL;
    EVP_MD_CTX *ctx = r == 0 ? EVP_MD_CTX_new() : NULL;
    if (r == 0 && (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1))
        r = -ENOMEM;
    struct stat st;
    if (r == 0 && lstat(path, &st) < 0)
        r = -errno;
    if (r == 0)
        r = add(ctx, "", &st);
    if (r == 0 && S_ISDIR(st.st_mode)) {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        r = fd < 0 ? -errno : add_children(ctx, fd, 0);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (r == 0 && EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
        r = -ENOMEM;
    EVP_MD_CTX_free(ctx);
    if (r != 0) {
        napi_create_int32(env, r, &result);
        return result;
    }
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned int i = 0; i < mdlen; i++) {
        static const char digits[] = "0123456789abcdef";
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    napi_create_string_latin1(env, hex, 2 * mdlen, &result);
    return result;
}

napi_status register_tree_summary(napi_env env, napi_value exports)
{
    napi_value fn;
    napi_status s = napi_create_function(env, "treeSummary", NAPI_AUTO_LENGTH, TreeSummary, NULL, &fn);
    return s != napi_ok ? s : napi_set_named_property(env, exports, "treeSummary", fn);
}
