/*
 * read_file.c - a small file read whole on the threadpool: open, fstat, read, close in one job.
 *
 * A layer's tar is replayed from thousands of small files. With the open and fstat done on the JS
 * thread (and only the read queued), a cold inode stalled the thread that feeds the upload or the
 * archive, and each file cost two threadpool round trips' worth of bookkeeping. Here the JS thread
 * only queues; several files are read at once, which is what a cold disk needs.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <node_api.h>

#include "read_file.h"
#include "napi_error.h"

typedef struct {
    napi_async_work work;
    napi_ref buffer; /* held until completion: the job writes into it */
    napi_ref callback;
    int dirfd; /* the job's own duplicate (or AT_FDCWD): the caller may close theirs meanwhile */
    bool own_dirfd;
    int dup_error; /* the caller's descriptor could not be duplicated: the job answers -this */
    char *path;
    void *data;
    size_t len;
    int64_t result;
} read_job;

static void read_execute(napi_env env, void *data)
{
    (void)env; /* threadpool: no N-API calls here */
    read_job *j = data;
    if (j->dup_error != 0) {
        j->result = -j->dup_error;
        return;
    }
    /* O_NONBLOCK: a FIFO put in the file's place must not hold this thread (S_ISREG refuses it). */
    int fd = openat(j->dirfd, j->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        j->result = -errno;
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        j->result = -errno;
    } else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != j->len) {
        /* Not the file the caller was told of: it changed since. */
        j->result = -ERANGE;
    } else {
        size_t got = 0;
        while (got < j->len) {
            ssize_t n = pread(fd, (char *)j->data + got, j->len - got, (off_t)got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                j->result = n < 0 ? -errno : -ERANGE; /* 0: it shrank under us */
                close(fd);
                return;
            }
            got += (size_t)n;
        }
        j->result = (int64_t)got;
    }
    close(fd);
}

static void read_complete(napi_env env, napi_status status, void *data)
{
    read_job *j = data;
    napi_value cb, global, res;
    int64_t result = status == napi_ok ? j->result : -ECANCELED;
    if (napi_get_reference_value(env, j->callback, &cb) == napi_ok && cb != NULL &&
        napi_get_global(env, &global) == napi_ok && napi_create_int64(env, result, &res) == napi_ok)
        napi_call_function(env, global, cb, 1, &res, NULL);
    napi_delete_reference(env, j->buffer);
    napi_delete_reference(env, j->callback);
    napi_delete_async_work(env, j->work);
    if (j->own_dirfd)
        close(j->dirfd);
    free(j->path);
    free(j);
}

static void free_job(napi_env env, read_job *j)
{
    if (j->own_dirfd)
        close(j->dirfd);
    if (j->buffer != NULL)
        napi_delete_reference(env, j->buffer);
    if (j->callback != NULL)
        napi_delete_reference(env, j->callback);
    free(j->path);
    free(j);
}

/* readFileAt(dirfd, path, buffer, callback(res)): see index.d.ts. */
static napi_value ReadFileAt(napi_env env, napi_callback_info info)
{
    size_t argc = 4;
    napi_value argv[4], name, undefined;
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4)
        return throw_msg(env, "strata_sys: readFileAt(dirfd, path, buffer, callback)");
    int32_t dirfd;
    size_t path_len;
    bool is_buf = false;
    napi_valuetype cbt;
    if (napi_get_value_int32(env, argv[0], &dirfd) != napi_ok ||
        napi_get_value_string_utf8(env, argv[1], NULL, 0, &path_len) != napi_ok ||
        napi_is_buffer(env, argv[2], &is_buf) != napi_ok || !is_buf ||
        napi_typeof(env, argv[3], &cbt) != napi_ok || cbt != napi_function) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "strata_sys: readFileAt(dirfd: number, path: string, buffer: Buffer, callback: function)");
        return NULL;
    }
    if (path_len >= PATH_MAX) {
        napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "strata_sys: readFileAt: path too long");
        return NULL;
    }
    read_job *j = calloc(1, sizeof *j);
    if (j == NULL || (j->path = malloc(path_len + 1)) == NULL) {
        free(j);
        return throw_msg(env, "strata_sys: out of memory");
    }
    /* AT_FDCWD stays as it is; any other directory is duplicated for the job's lifetime. */
    j->dirfd = AT_FDCWD;
    if (dirfd != AT_FDCWD) {
        j->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (j->dirfd < 0)
            j->dup_error = errno;
        else
            j->own_dirfd = true;
    }
    if (napi_get_value_string_utf8(env, argv[1], j->path, path_len + 1, &path_len) != napi_ok ||
        strlen(j->path) != path_len) { /* a NUL inside the name would open another file */
        free_job(env, j);
        napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "strata_sys: readFileAt: bad path");
        return NULL;
    }
    if (napi_get_buffer_info(env, argv[2], &j->data, &j->len) != napi_ok ||
        napi_create_reference(env, argv[2], 1, &j->buffer) != napi_ok ||
        napi_create_reference(env, argv[3], 1, &j->callback) != napi_ok ||
        napi_create_string_utf8(env, "strata_sys.readFileAt", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_async_work(env, NULL, name, read_execute, read_complete, j, &j->work) != napi_ok) {
        free_job(env, j);
        return throw_msg(env, "strata_sys: readFileAt: cannot set up the job");
    }
    if (napi_queue_async_work(env, j->work) != napi_ok) {
        napi_delete_async_work(env, j->work);
        free_job(env, j);
        return throw_msg(env, "strata_sys: readFileAt: cannot queue the job");
    }
    napi_get_undefined(env, &undefined);
    return undefined;
}

napi_status register_read_file(napi_env env, napi_value exports)
{
    napi_property_descriptor d = { "readFileAt", NULL, ReadFileAt, NULL, NULL, NULL, napi_enumerable, NULL };
    return napi_define_properties(env, exports, 1, &d);
}
