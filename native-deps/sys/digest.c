/*
 * digest.c - SHA-256 of a stream, computed on the libuv threadpool.
 *
 * A layer's DiffID is the digest of its whole tar. Hashing 200 MB costs the JS thread ~0.2 s
 * that it needs for parsing; here each chunk is hashed by a threadpool job while the caller goes
 * on. The caller passes chunks one update at a time (the next after the previous one's
 * callback), so the order is kept and at most one job touches the context. An update takes one
 * Buffer or an array of them (what arrived while the previous job ran, hashed without joining
 * them first). Chunks are referenced, not copied: their bytes must not change until the
 * callback. OpenSSL is Node's own (the addon links against the symbols the node binary exports).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <node_api.h>
#include <openssl/evp.h>

#include "digest.h"
#include "napi_error.h"

typedef struct {
    EVP_MD_CTX *ctx;
    bool busy;
    bool finished;
} digest;

typedef struct {
    const void *data;
    size_t len;
} chunk_view;

typedef struct {
    napi_async_work work;
    napi_ref chunk;
    napi_ref callback;
    digest *d;
    uint32_t count;
    int ok;
    chunk_view views[]; /* count of them */
} update_job;

static void digest_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    digest *d = data;
    /* Never during a job: each job holds a reference to this external (see DigestUpdate). */
    EVP_MD_CTX_free(d->ctx);
    free(d);
}

static digest *get_digest(napi_env env, napi_value v)
{
    napi_valuetype t;
    void *data = NULL;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
        napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "strata_sys: not a digest");
        return NULL;
    }
    return data;
}

/* digestOpen(): a SHA-256 context. */
static napi_value DigestOpen(napi_env env, napi_callback_info info)
{
    (void)info;
    napi_value ext;
    digest *d = calloc(1, sizeof *d);
    if (d == NULL || (d->ctx = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL) != 1) {
        if (d != NULL)
            EVP_MD_CTX_free(d->ctx);
        free(d);
        return throw_msg(env, "strata_sys: cannot start a SHA-256 digest");
    }
    if (napi_create_external(env, d, digest_finalize, NULL, &ext) != napi_ok) {
        digest_finalize(env, d, NULL);
        return throw_msg(env, "strata_sys: napi_create_external failed");
    }
    return ext;
}

static void update_execute(napi_env env, void *data)
{
    (void)env;
    update_job *j = data;
    j->ok = 1;
    for (uint32_t i = 0; i < j->count && j->ok; i++)
        j->ok = EVP_DigestUpdate(j->d->ctx, j->views[i].data, j->views[i].len) == 1;
}

static void update_complete(napi_env env, napi_status status, void *data)
{
    update_job *j = data;
    napi_value cb, global, arg;
    j->d->busy = false;
    if (napi_get_reference_value(env, j->callback, &cb) == napi_ok && cb != NULL &&
        napi_get_global(env, &global) == napi_ok &&
        napi_get_boolean(env, status == napi_ok && j->ok, &arg) == napi_ok)
        napi_call_function(env, global, cb, 1, &arg, NULL);
    napi_delete_reference(env, j->chunk);
    napi_delete_reference(env, j->callback);
    napi_delete_async_work(env, j->work);
    free(j);
}

/* The Buffer at v as a view, or false (a TypeError pending). */
static bool view_of(napi_env env, napi_value v, chunk_view *out)
{
    bool is_buf = false;
    void *data;
    if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf || napi_get_buffer_info(env, v, &data, &out->len) != napi_ok) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "strata_sys: a chunk must be a Buffer");
        return false;
    }
    out->data = data;
    return true;
}

/*
 * digestUpdate(d, chunk | chunks[], callback(ok)): hash the chunk, or the chunks in order, on the
 * threadpool. One update at a time.
 */
static napi_value DigestUpdate(napi_env env, napi_callback_info info)
{
    size_t argc = 3;
    napi_value argv[3], name, undefined, holder;
    bool is_array = false;
    uint32_t count = 1;
    napi_valuetype cbt;
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3)
        return throw_msg(env, "strata_sys: digestUpdate(d, chunk, callback)");
    digest *d = get_digest(env, argv[0]);
    if (d == NULL)
        return NULL;
    if (napi_typeof(env, argv[2], &cbt) != napi_ok || cbt != napi_function) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "strata_sys: callback must be a function");
        return NULL;
    }
    if (napi_is_array(env, argv[1], &is_array) != napi_ok)
        return throw_msg(env, "strata_sys: napi_is_array failed");
    if (is_array && napi_get_array_length(env, argv[1], &count) != napi_ok)
        return throw_msg(env, "strata_sys: napi_get_array_length failed");
    if (d->busy || d->finished)
        return throw_msg(env, d->busy ? "strata_sys: digestUpdate while another update runs" : "strata_sys: digest already finished");
    update_job *j = calloc(1, sizeof *j + (size_t)count * sizeof j->views[0]);
    if (j == NULL)
        return throw_msg(env, "strata_sys: out of memory");
    j->d = d;
    j->count = count;
    /*
     * The digest, then every chunk, go into an array that the job references: each Buffer stays
     * alive until completion even if the caller's array changes. Busy from here on, as reading
     * the elements may run JS (a getter) that must not start another update meanwhile.
     */
    d->busy = true;
    if (napi_create_array_with_length(env, (size_t)count + 1, &holder) != napi_ok ||
        napi_set_element(env, holder, 0, argv[0]) != napi_ok) {
        d->busy = false;
        free(j);
        return throw_msg(env, "strata_sys: cannot hold the chunks");
    }
    for (uint32_t i = 0; i < count; i++) {
        napi_value el = argv[1];
        if (is_array && napi_get_element(env, argv[1], i, &el) != napi_ok) {
            d->busy = false;
            free(j);
            return throw_msg(env, "strata_sys: napi_get_element failed");
        }
        if (!view_of(env, el, &j->views[i])) {
            d->busy = false;
            free(j);
            return NULL;
        }
        if (napi_set_element(env, holder, i + 1, el) != napi_ok) {
            d->busy = false;
            free(j);
            return throw_msg(env, "strata_sys: cannot hold the chunks");
        }
    }
    if (napi_create_reference(env, holder, 1, &j->chunk) != napi_ok) {
        d->busy = false;
        free(j);
        return throw_msg(env, "strata_sys: cannot hold the chunks");
    }
    if (napi_create_reference(env, argv[2], 1, &j->callback) != napi_ok) {
        d->busy = false;
        napi_delete_reference(env, j->chunk);
        free(j);
        return throw_msg(env, "strata_sys: cannot hold the callback");
    }
    if (napi_create_string_utf8(env, "strata_sys.digestUpdate", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_async_work(env, NULL, name, update_execute, update_complete, j, &j->work) != napi_ok) {
        d->busy = false;
        napi_delete_reference(env, j->chunk);
        napi_delete_reference(env, j->callback);
        free(j);
        return throw_msg(env, "strata_sys: napi_create_async_work failed");
    }
    if (napi_queue_async_work(env, j->work) != napi_ok) {
        d->busy = false;
        napi_delete_async_work(env, j->work);
        napi_delete_reference(env, j->chunk);
        napi_delete_reference(env, j->callback);
        free(j);
        return throw_msg(env, "strata_sys: napi_queue_async_work failed");
    }
    napi_get_undefined(env, &undefined);
    return undefined;
}

/* digestFinish(d): the hex digest. No update may be running. */
static napi_value DigestFinish(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1], r;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
        return throw_msg(env, "strata_sys: napi_get_cb_info failed");
    digest *d = get_digest(env, argc > 0 ? argv[0] : NULL);
    if (d == NULL)
        return NULL;
    if (d->busy || d->finished)
        return throw_msg(env, d->busy ? "strata_sys: digestFinish while an update runs" : "strata_sys: digest already finished");
    d->finished = true;
    if (EVP_DigestFinal_ex(d->ctx, md, &mdlen) != 1)
        return throw_msg(env, "strata_sys: EVP_DigestFinal_ex failed");
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (napi_create_string_utf8(env, hex, 2 * mdlen, &r) != napi_ok)
        return throw_msg(env, "strata_sys: cannot return the digest");
    return r;
}

napi_status register_digest(napi_env env, napi_value exports)
{
#define F(js, c) { js, NULL, c, NULL, NULL, NULL, napi_enumerable, NULL }
    static const napi_property_descriptor functions[] = {
        F("digestOpen", DigestOpen),
        F("digestUpdate", DigestUpdate),
        F("digestFinish", DigestFinish),
    };
#undef F
    return napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
}
