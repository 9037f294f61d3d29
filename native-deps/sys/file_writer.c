/*
 * file_writer.c - a layer's regular files written by a thread of their own.
 *
 * Unpacking a layer tar is two kinds of work: parsing and hashing the stream
 * (JS), and creating, filling and labelling files (system calls, ~35 us per
 * file on ext4). On one thread they add up; here the system calls run on a
 * dedicated thread, in submission order, while JS parses the next entries.
 *
 * The JS side submits, per file: create(path, mode), data(chunk)...,
 * xattr(name, value)..., finish(owner, mode, times). Every chunk is copied, so
 * the caller may reuse its buffers at once. Pending data is bounded: a submit
 * blocks while more than WRITER_MAX_PENDING bytes wait.
 *
 * The first failing call stops the writer: it records the call, the path and
 * the errno, and discards everything submitted after it. Submits then answer 1
 * (0 while all is well), and wait() tells what failed. JS must wait() before
 * touching a path it submitted (unlink, link, directory times) and before
 * reading the result.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <node_api.h>

#include "file_writer.h"
#include "napi_error.h"

#define WRITER_MAX_PENDING ((size_t)16 << 20)
#define WRITER_WAKE_BATCH ((size_t)1 << 20)
#define WRITER_PATH_BUF (PATH_MAX + 1)
#define WRITER_NAME_BUF 257

typedef enum { OP_CREATE, OP_DATA, OP_XATTR, OP_FINISH, OP_DIR, OP_SYMLINK } op_kind;

static const char *const op_names[] = { "create", "write", "set xattr", "set owner, mode and times of",
                                        "make directory", "make symlink" };

typedef struct wjob {
    struct wjob *next;
    op_kind op;
    uint32_t mode;        /* CREATE: permission bits; FINISH: mode to fchmod, or UINT32_MAX; DIR: mode */
    uint32_t uid, gid;    /* FINISH, when chown is set; DIR */
    bool chown;           /* FINISH: set the owner; DIR: create the directory first */
    int64_t times[4];     /* FINISH, SYMLINK: atime s, ns, mtime s, ns */
    size_t len;           /* bytes of payload (DATA, XATTR value) */
    char name[WRITER_NAME_BUF]; /* XATTR name */
    char bytes[];         /* CREATE, DIR: the path; SYMLINK: the path, then the target (each
                             NUL-terminated); DATA and XATTR: the payload */
} wjob;

typedef struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work;  /* a job arrived, or stop */
    pthread_cond_t space; /* pending bytes fell, or the queue emptied */
    wjob *head, *tail;
    size_t pending;
    bool busy;            /* the thread holds a job outside the queue */
    bool sleeping;        /* the thread waits for work */
    int space_waiters;    /* submitters and waiters blocked on space */
    size_t unsignalled;   /* bytes queued since the thread was last woken */
    bool stop;
    bool closed;
    int dirfd;
    /* Touched by the thread only, until it reports through err. */
    int fd;
    char path[WRITER_PATH_BUF];
    /* The first failure; read under mu. */
    int err;
    op_kind err_op;
    char err_path[WRITER_PATH_BUF];
} writer;

static size_t job_cost(const wjob *j)
{
    return sizeof *j + j->len;
}

static int run_job(writer *w, wjob *j)
{
    switch (j->op) {
    case OP_CREATE:
        strcpy(w->path, j->bytes);
        w->fd = openat(w->dirfd, j->bytes, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       (mode_t)j->mode);
        return w->fd < 0 ? -errno : 0;
    case OP_DIR:
        /* A directory of this layer's own making (never a symlink), so chmod may follow. */
        strcpy(w->path, j->bytes);
        if (j->chown && mkdirat(w->dirfd, j->bytes, 0700) < 0)
            return -errno;
        if (fchownat(w->dirfd, j->bytes, j->uid, j->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
            fchmodat(w->dirfd, j->bytes, (mode_t)j->mode, 0) < 0)
            return -errno;
        return 0;
    case OP_SYMLINK: {
        struct timespec ts[2] = { { (time_t)j->times[0], (long)j->times[1] },
                                  { (time_t)j->times[2], (long)j->times[3] } };
        strcpy(w->path, j->bytes);
        if (symlinkat(j->bytes + strlen(j->bytes) + 1, w->dirfd, j->bytes) < 0 ||
            fchownat(w->dirfd, j->bytes, j->uid, j->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
            utimensat(w->dirfd, j->bytes, ts, AT_SYMLINK_NOFOLLOW) < 0)
            return -errno;
        return 0;
    }
    case OP_DATA:
        for (size_t off = 0; off < j->len;) {
            ssize_t n = write(w->fd, j->bytes + off, j->len - off);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            off += (size_t)n;
        }
        return 0;
    case OP_XATTR:
        return fsetxattr(w->fd, j->name, j->bytes, j->len, 0) < 0 ? -errno : 0;
    case OP_FINISH: {
        struct timespec ts[2] = { { (time_t)j->times[0], (long)j->times[1] },
                                  { (time_t)j->times[2], (long)j->times[3] } };
        int r = 0;
        /* chown before chmod: chown clears setuid and setgid. */
        if (j->chown && fchown(w->fd, j->uid, j->gid) < 0)
            r = -errno;
        else if (j->mode != UINT32_MAX && fchmod(w->fd, (mode_t)j->mode) < 0)
            r = -errno;
        else if (futimens(w->fd, ts) < 0)
            r = -errno;
        if (close(w->fd) < 0 && r == 0 && errno != EINTR)
            r = -errno;
        w->fd = -1;
        return r;
    }
    }
    return -EINVAL;
}

static void *writer_main(void *arg)
{
    writer *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->head == NULL && !w->stop) {
            w->sleeping = true;
            pthread_cond_wait(&w->work, &w->mu);
        }
        w->sleeping = false;
        if (w->head == NULL)
            break;
        /* Take the whole queue: one lock round per batch, not per job, keeps the producer unblocked. */
        wjob *batch = w->head;
        w->head = w->tail = NULL;
        bool failed = w->err != 0;
        w->busy = true;
        pthread_mutex_unlock(&w->mu);

        size_t done = 0;
        int r = 0;
        op_kind op = OP_CREATE;
        while (batch != NULL) {
            wjob *j = batch;
            batch = j->next;
            if (!failed && r == 0) {
                r = run_job(w, j);
                op = j->op;
            }
            done += job_cost(j);
            free(j);
            /*
             * Room is given back as the batch goes, not at its end: a producer blocked on a full
             * queue would otherwise sit idle while the whole batch (up to WRITER_MAX_PENDING) is
             * written, and the two threads would take turns instead of working at once.
             */
            if (done >= WRITER_WAKE_BATCH && batch != NULL) {
                pthread_mutex_lock(&w->mu);
                w->pending -= done;
                done = 0;
                if (w->space_waiters > 0)
                    pthread_cond_broadcast(&w->space);
                pthread_mutex_unlock(&w->mu);
            }
        }

        pthread_mutex_lock(&w->mu);
        w->busy = false;
        if (r < 0 && w->err == 0) {
            w->err = -r;
            w->err_op = op;
            strcpy(w->err_path, w->path);
            if (w->fd >= 0) {
                close(w->fd);
                w->fd = -1;
            }
        }
        w->pending -= done;
        if (w->space_waiters > 0)
            pthread_cond_broadcast(&w->space);
    }
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Wait until the queue is empty and the thread idle. Called with mu held. */
static void drain_locked(writer *w)
{
    while (w->head != NULL || w->busy) {
        w->space_waiters++;
        pthread_cond_wait(&w->space, &w->mu);
        w->space_waiters--;
    }
}

static void writer_shutdown(writer *w)
{
    if (w->closed)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->closed = true;
}

static void writer_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    writer *w = data;
    writer_shutdown(w);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->space);
    free(w);
}

/* ------------------------------------------------------------------------ */
/* N-API side                                                                */

static napi_value int_value(napi_env env, int32_t v)
{
    napi_value r = NULL;
    napi_create_int32(env, v, &r);
    return r;
}

static writer *get_writer(napi_env env, napi_value v)
{
    napi_valuetype t;
    void *data = NULL;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
        napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "strata_sys: writer must be a file writer");
        return NULL;
    }
    writer *w = data;
    if (w->closed) {
        napi_throw_error(env, NULL, "strata_sys: the file writer is closed");
        return NULL;
    }
    return w;
}

/* Queue j (taking ownership); 1 when the writer has already failed (j is dropped). */
static int submit(writer *w, wjob *j)
{
    pthread_mutex_lock(&w->mu);
    while (w->err == 0 && w->pending > WRITER_MAX_PENDING) {
        pthread_cond_signal(&w->work);
        w->space_waiters++;
        pthread_cond_wait(&w->space, &w->mu);
        w->space_waiters--;
    }
    if (w->err != 0) {
        pthread_mutex_unlock(&w->mu);
        free(j);
        return 1;
    }
    j->next = NULL;
    if (w->tail != NULL)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    w->pending += job_cost(j);
    /*
     * A sleeping thread is woken once a batch is worth it: a wake-up per job costs more than the
     * job (a futex call and often a cross-CPU interrupt). wait() and close() wake it regardless.
     */
    w->unsignalled += job_cost(j);
    if (w->sleeping && w->unsignalled >= WRITER_WAKE_BATCH) {
        w->unsignalled = 0;
        pthread_cond_signal(&w->work);
    }
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static wjob *new_job(napi_env env, op_kind op, size_t len)
{
    wjob *j = calloc(1, sizeof *j + len);
    if (j == NULL)
        napi_throw_error(env, NULL, "strata_sys: out of memory");
    else {
        j->op = op;
        j->len = op == OP_CREATE || op == OP_DIR || op == OP_SYMLINK ? 0 : len;
    }
    return j;
}

static bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv)
{
    size_t argc = n;
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
        throw_msg(env, "strata_sys: napi_get_cb_info failed");
        return false;
    }
    for (size_t i = argc; i < n; i++)
        napi_get_undefined(env, &argv[i]);
    return true;
}

static bool get_buffer(napi_env env, napi_value v, void **data, size_t *len, const char *what)
{
    bool is = false;
    if (napi_is_buffer(env, v, &is) != napi_ok || !is || napi_get_buffer_info(env, v, data, len) != napi_ok) {
        char msg[96];
        snprintf(msg, sizeof msg, "strata_sys: %s must be a Buffer", what);
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
        return false;
    }
    return true;
}

static bool get_num(napi_env env, napi_value v, int64_t *out, const char *what)
{
    if (napi_get_value_int64(env, v, out) == napi_ok)
        return true;
    char msg[96];
    snprintf(msg, sizeof msg, "strata_sys: %s must be a number", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
}

/* writerOpen(dirfd): a writer creating files relative to dirfd (which must stay open). */
static napi_value WriterOpen(napi_env env, napi_callback_info info)
{
    napi_value argv[1], ext;
    int64_t dirfd;
    if (!get_args(env, info, 1, argv) || !get_num(env, argv[0], &dirfd, "dirfd"))
        return NULL;
    writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return throw_msg(env, "strata_sys: out of memory");
    w->dirfd = (int)dirfd;
    w->fd = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->space, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        free(w);
        return throw_msg(env, "strata_sys: cannot start the file writer thread");
    }
    if (napi_create_external(env, w, writer_finalize, NULL, &ext) != napi_ok) {
        writer_finalize(env, w, NULL);
        return throw_msg(env, "strata_sys: napi_create_external failed");
    }
    return ext;
}

/*
 * A job carrying the path in `v`, or NULL: with an exception pending, or with
 * *bad set to the -errno of a path the kernel could not take.
 */
static wjob *path_job(napi_env env, op_kind op, napi_value v, int *bad)
{
    size_t len = 0;
    *bad = 0;
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "strata_sys: path must be a string");
        return NULL;
    }
    if (len >= PATH_MAX) {
        *bad = -ENAMETOOLONG;
        return NULL;
    }
    wjob *j = new_job(env, op, len + 1);
    if (j == NULL)
        return NULL;
    napi_get_value_string_utf8(env, v, j->bytes, len + 1, &len);
    if (strlen(j->bytes) != len) {
        free(j);
        *bad = -EINVAL;
        return NULL;
    }
    return j;
}

/* writerCreate(w, path, mode) */
static napi_value WriterCreate(napi_env env, napi_callback_info info)
{
    napi_value argv[3];
    int64_t mode;
    if (!get_args(env, info, 3, argv))
        return NULL;
    writer *w = get_writer(env, argv[0]);
    if (w == NULL || !get_num(env, argv[2], &mode, "mode"))
        return NULL;
    int bad;
    wjob *j = path_job(env, OP_CREATE, argv[1], &bad);
    if (j == NULL)
        return bad ? int_value(env, bad) : NULL;
    j->mode = (uint32_t)mode;
    return int_value(env, submit(w, j));
}

/* writerDir(w, path, create, uid, gid, mode) */
static napi_value WriterDir(napi_env env, napi_callback_info info)
{
    napi_value argv[6];
    int64_t uid, gid, mode;
    bool create = false;
    if (!get_args(env, info, 6, argv))
        return NULL;
    writer *w = get_writer(env, argv[0]);
    if (w == NULL || !get_num(env, argv[3], &uid, "uid") || !get_num(env, argv[4], &gid, "gid") ||
        !get_num(env, argv[5], &mode, "mode"))
        return NULL;
    if (napi_get_value_bool(env, argv[2], &create) != napi_ok) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "strata_sys: create must be a boolean");
        return NULL;
    }
    int bad;
    wjob *j = path_job(env, OP_DIR, argv[1], &bad);
    if (j == NULL)
        return bad ? int_value(env, bad) : NULL;
    j->chown = create;
    j->uid = (uint32_t)uid;
    j->gid = (uint32_t)gid;
    j->mode = (uint32_t)mode;
    return int_value(env, submit(w, j));
}

/* writerSymlink(w, path, target, uid, gid, atimeS, atimeNs, mtimeS, mtimeNs) */
static napi_value WriterSymlink(napi_env env, napi_callback_info info)
{
    napi_value argv[9];
    int64_t n[9];
    size_t plen = 0, tlen = 0;
    static const char *const names[] = { "", "", "", "uid", "gid", "atimeS", "atimeNs", "mtimeS", "mtimeNs" };
    if (!get_args(env, info, 9, argv))
        return NULL;
    writer *w = get_writer(env, argv[0]);
    if (w == NULL)
        return NULL;
    for (int i = 3; i < 9; i++)
        if (!get_num(env, argv[i], &n[i], names[i]))
            return NULL;
    if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &plen) != napi_ok ||
        napi_get_value_string_utf8(env, argv[2], NULL, 0, &tlen) != napi_ok) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "strata_sys: path and target must be strings");
        return NULL;
    }
    if (plen >= PATH_MAX || tlen >= PATH_MAX)
        return int_value(env, -ENAMETOOLONG);
    wjob *j = new_job(env, OP_SYMLINK, plen + tlen + 2);
    if (j == NULL)
        return NULL;
    napi_get_value_string_utf8(env, argv[1], j->bytes, plen + 1, &plen);
    napi_get_value_string_utf8(env, argv[2], j->bytes + plen + 1, tlen + 1, &tlen);
    if (strlen(j->bytes) != plen || strlen(j->bytes + plen + 1) != tlen) {
        free(j);
        return int_value(env, -EINVAL);
    }
    j->uid = (uint32_t)n[3];
    j->gid = (uint32_t)n[4];
    for (int i = 0; i < 4; i++)
        j->times[i] = n[5 + i];
    return int_value(env, submit(w, j));
}

/* writerData(w, chunk) */
static napi_value WriterData(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    void *data;
    size_t len;
    if (!get_args(env, info, 2, argv))
        return NULL;
    writer *w = get_writer(env, argv[0]);
    if (w == NULL || !get_buffer(env, argv[1], &data, &len, "chunk"))
        return NULL;
    wjob *j = new_job(env, OP_DATA, len);
    if (j == NULL)
        return NULL;
    memcpy(j->bytes, data, len);
    return int_value(env, submit(w, j));
}

/* writerXattr(w, name, value) */
static napi_value WriterXattr(napi_env env, napi_callback_info info)
{
    napi_value argv[3];
    void *data;
    size_t len, nlen = 0;
    if (!get_args(env, info, 3, argv))
        return NULL;
    writer *w = get_writer(env, argv[0]);
    if (w == NULL || !get_buffer(env, argv[2], &data, &len, "value"))
        return NULL;
    wjob *j = new_job(env, OP_XATTR, len);
    if (j == NULL)
        return NULL;
    if (napi_get_value_string_utf8(env, argv[1], j->name, sizeof j->name, &nlen) != napi_ok) {
        free(j);
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "strata_sys: name must be a string");
        return NULL;
    }
    if (nlen >= sizeof j->name - 1) {
        free(j);
        return int_value(env, -ERANGE);
    }
    memcpy(j->bytes, data, len);
    return int_value(env, submit(w, j));
}

/* writerFinish(w, uid, gid, chown, chmodMode | -1, atimeS, atimeNs, mtimeS, mtimeNs) */
static napi_value WriterFinish(napi_env env, napi_callback_info info)
{
    napi_value argv[9];
    int64_t n[9];
    bool do_chown = false;
    static const char *const names[] = { "", "uid", "gid", "", "mode", "atimeS", "atimeNs", "mtimeS", "mtimeNs" };
    if (!get_args(env, info, 9, argv))
        return NULL;
    writer *w = get_writer(env, argv[0]);
    if (w == NULL)
        return NULL;
    if (napi_get_value_bool(env, argv[3], &do_chown) != napi_ok) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "strata_sys: chown must be a boolean");
        return NULL;
    }
    for (int i = 1; i < 9; i++)
        if (i != 3 && !get_num(env, argv[i], &n[i], names[i]))
            return NULL;
    wjob *j = new_job(env, OP_FINISH, 0);
    if (j == NULL)
        return NULL;
    j->uid = (uint32_t)n[1];
    j->gid = (uint32_t)n[2];
    j->chown = do_chown;
    j->mode = n[4] < 0 ? UINT32_MAX : (uint32_t)n[4];
    for (int i = 0; i < 4; i++)
        j->times[i] = n[5 + i];
    return int_value(env, submit(w, j));
}

/* The first failure as [errno, call, path], or null. */
static napi_value failure(napi_env env, writer *w)
{
    napi_value r, e, op, path;
    if (w->err == 0) {
        napi_get_null(env, &r);
        return r;
    }
    if (napi_create_array_with_length(env, 3, &r) != napi_ok ||
        napi_create_int32(env, w->err, &e) != napi_ok ||
        napi_create_string_utf8(env, op_names[w->err_op], NAPI_AUTO_LENGTH, &op) != napi_ok ||
        napi_create_string_utf8(env, w->err_path, NAPI_AUTO_LENGTH, &path) != napi_ok ||
        napi_set_element(env, r, 0, e) != napi_ok || napi_set_element(env, r, 1, op) != napi_ok ||
        napi_set_element(env, r, 2, path) != napi_ok)
        return throw_msg(env, "strata_sys: cannot build the writer's failure");
    return r;
}

/* writerWait(w): block until everything submitted is done; the first failure or null. */
static napi_value WriterWait(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    if (!get_args(env, info, 1, argv))
        return NULL;
    writer *w = get_writer(env, argv[0]);
    if (w == NULL)
        return NULL;
    pthread_mutex_lock(&w->mu);
    w->unsignalled = 0;
    pthread_cond_signal(&w->work);
    drain_locked(w);
    pthread_mutex_unlock(&w->mu);
    return failure(env, w);
}

/* writerClose(w): finish what was submitted (nothing more after a failure), stop the thread. */
static napi_value WriterClose(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    if (!get_args(env, info, 1, argv))
        return NULL;
    writer *w = get_writer(env, argv[0]);
    if (w == NULL)
        return NULL;
    writer_shutdown(w);
    return failure(env, w);
}

napi_status register_file_writer(napi_env env, napi_value exports)
{
#define F(js, c) { js, NULL, c, NULL, NULL, NULL, napi_enumerable, NULL }
    static const napi_property_descriptor functions[] = {
        F("writerOpen", WriterOpen),     F("writerCreate", WriterCreate),
        F("writerData", WriterData),     F("writerDir", WriterDir),
        F("writerSymlink", WriterSymlink),     F("writerXattr", WriterXattr),
        F("writerFinish", WriterFinish), F("writerWait", WriterWait),
        F("writerClose", WriterClose),
    };
#undef F
    return napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
}
