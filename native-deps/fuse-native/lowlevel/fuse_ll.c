// fuse-native's low-level mode, added by strata (see ../README.md, "The low-level session").
//
// fuse-native's own binding wraps libfuse 2's high-level, path-based API: libfuse resolves a path
// for every request, gives every name its own kernel inode (so hard links cannot share cached
// attributes), and hands each request from a FUSE thread to the JS thread and back through a
// semaphore (two thread switches, ~25 us). This binding serves libfuse 3's low-level,
// inode-based API on the JS thread itself:
//
//  - /dev/fuse is non-blocking and watched by a uv_poll handle; when it is readable, requests are
//    read and dispatched in a batch, each handler called synchronously inside one callback scope
//    (so promise jobs run once per batch, not per request).
//  - Handlers answer whenever they like (now or after async work) through the reply functions
//    below, naming the request by a small id; a stale or repeated id is refused, never a crash.
//  - Data does not cross into JS: read, write, lseek, fallocate and copy_file_range act on the
//    file handle, which is the layer file's descriptor, right here.
//  - Attribute timeouts are per reply: a non-directory with more than one link is never cached,
//    since each of its names is a kernel inode of its own, and a change through one name would
//    leave the others' cached attributes stale.
#define FUSE_USE_VERSION 34
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define STAT_INTS 22
#define BATCH_MAX 256
#define ID_SLOT_BITS 20
#define ID_SLOT_MASK ((1u << ID_SLOT_BITS) - 1)

enum {
  OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR, OP_UNLINK,
  OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_RELEASE, OP_FSYNC, OP_OPENDIR,
  OP_READDIR, OP_RELEASEDIR, OP_FSYNCDIR, OP_STATFS, OP_SETXATTR, OP_GETXATTR, OP_LISTXATTR,
  OP_REMOVEXATTR, OP_CREATE, OP_COUNT
};

static const char *OP_NAMES[OP_COUNT] = {
  "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink",
  "rmdir", "symlink", "rename", "link", "open", "release", "fsync", "opendir",
  "readdir", "releasedir", "fsyncdir", "statfs", "setxattr", "getxattr", "listxattr",
  "removexattr", "create"
};

typedef struct {
  napi_env env;
  struct fuse_session *se;
  int fd;
  uv_poll_t poll;
  int exited;          // the connection ended: no more requests, replies are dropped
  napi_ref handlers[OP_COUNT];
  napi_ref on_exit;
  napi_ref resource;
  napi_async_context async_ctx;
  napi_ref ctx_ref;
  uint32_t *ctx;       // JS Uint32Array [uid, gid, pid, umask] of the request being dispatched
  struct fuse_buf buf;
  double attr_timeout, entry_timeout, negative_timeout;
  unsigned max_write;
  // In-flight requests: id = slot | generation << ID_SLOT_BITS.
  fuse_req_t *reqs;
  uint32_t *gens;
  uint32_t *free_slots;
  uint32_t nfree, cap;
} session_t;

// ---- helpers ---------------------------------------------------------------------------------

#define CHECK(call) do { if ((call) != napi_ok) return NULL; } while (0)

static napi_value throw_error(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value undefined_value(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

static napi_value str(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static int get_double(napi_env env, napi_value v, double *out) {
  return napi_get_value_double(env, v, out) == napi_ok;
}

static session_t *get_session(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

static uint32_t *get_u32_array(napi_env env, napi_value v, size_t min_len) {
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, NULL, NULL) != napi_ok) return NULL;
  if (type != napi_uint32_array || len < min_len) return NULL;
  return data;
}

static uint64_t u64(const uint32_t *lo_hi) {
  return (uint64_t)lo_hi[0] | ((uint64_t)lo_hi[1] << 32);
}

// The 22-word stat layout shared with strata's syscall helper (driver/fs/stat.ts).
static void stat_from_ints(const uint32_t *w, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_mode = w[0];
  st->st_uid = w[1];
  st->st_gid = w[2];
  st->st_size = (off_t)u64(w + 3);
  st->st_dev = w[5];
  st->st_nlink = w[6];
  st->st_ino = u64(w + 7);
  st->st_rdev = w[9];
  st->st_blksize = w[10];
  st->st_blocks = (blkcnt_t)u64(w + 11);
  st->st_atim.tv_sec = (time_t)u64(w + 13);
  st->st_atim.tv_nsec = w[15];
  st->st_mtim.tv_sec = (time_t)u64(w + 16);
  st->st_mtim.tv_nsec = w[18];
  st->st_ctim.tv_sec = (time_t)u64(w + 19);
  st->st_ctim.tv_nsec = w[21];
}

// Another name of a hard-linked file is another kernel dentry; its cached attributes (nlink
// above all) would go stale when this one changes, so such files are never cached.
static double attr_timeout_for(session_t *s, const struct stat *st) {
  return (!S_ISDIR(st->st_mode) && st->st_nlink > 1) ? 0 : s->attr_timeout;
}

// ---- the request table -----------------------------------------------------------------------

static double req_id(session_t *s, fuse_req_t req) {
  if (s->nfree == 0) {
    uint32_t ncap = s->cap == 0 ? 1024 : s->cap * 2;
    if (ncap > ID_SLOT_MASK + 1) return -1;
    fuse_req_t *reqs = realloc(s->reqs, ncap * sizeof *reqs);
    uint32_t *gens = realloc(s->gens, ncap * sizeof *gens);
    uint32_t *fr = realloc(s->free_slots, ncap * sizeof *fr);
    if (reqs == NULL || gens == NULL || fr == NULL) abort(); // out of memory in the request path
    s->reqs = reqs;
    s->gens = gens;
    s->free_slots = fr;
    for (uint32_t i = ncap; i > s->cap; i--) {
      reqs[i - 1] = NULL;
      gens[i - 1] = 0;
      fr[s->nfree++] = i - 1;
    }
    s->cap = ncap;
  }
  uint32_t slot = s->free_slots[--s->nfree];
  s->reqs[slot] = req;
  return (double)slot + (double)s->gens[slot] * (double)(1u << ID_SLOT_BITS);
}

// Takes the request out of the table: each id is answered once.
static fuse_req_t take_req(session_t *s, double id) {
  if (!(id >= 0)) return NULL;
  uint64_t v = (uint64_t)id;
  uint32_t slot = (uint32_t)(v & ID_SLOT_MASK);
  uint32_t gen = (uint32_t)(v >> ID_SLOT_BITS);
  if (slot >= s->cap || s->gens[slot] != gen || s->reqs[slot] == NULL) return NULL;
  fuse_req_t req = s->reqs[slot];
  s->reqs[slot] = NULL;
  s->gens[slot]++;
  s->free_slots[s->nfree++] = slot;
  return s->exited ? NULL : req;
}

// ---- dispatch to JS --------------------------------------------------------------------------

static void set_context(session_t *s, fuse_req_t req) {
  const struct fuse_ctx *c = fuse_req_ctx(req);
  s->ctx[0] = c->uid;
  s->ctx[1] = c->gid;
  s->ctx[2] = (uint32_t)c->pid;
  s->ctx[3] = c->umask;
}

// Calls handler `op` with (id, ...args). If it throws, the request fails with EIO (if the
// handler had not answered) and the error is reported, but the mount stays up.
static void call_js(session_t *s, int op, fuse_req_t req, double id, size_t argc, napi_value *argv) {
  napi_env env = s->env;
  napi_value fn, recv, result;
  napi_get_reference_value(env, s->handlers[op], &fn);
  napi_get_undefined(env, &recv);
  if (napi_call_function(env, recv, fn, argc, argv, &result) == napi_ok) return;
  napi_value err;
  napi_get_and_clear_last_exception(env, &err);
  napi_value msg;
  char text[512] = "";
  size_t n;
  if (napi_coerce_to_string(env, err, &msg) == napi_ok) napi_get_value_string_utf8(env, msg, text, sizeof text, &n);
  fprintf(stderr, "strata: %s handler threw: %s\n", OP_NAMES[op], text);
  if (req != NULL && take_req(s, id) == req) fuse_reply_err(req, EIO);
}

// The common start of every forwarded op: its id, the caller's context, a handle scope.
#define BEGIN(op, nargs)                                      \
  session_t *s = fuse_req_userdata(req);                      \
  napi_env env = s->env;                                      \
  double id = req_id(s, req);                                 \
  if (id < 0) { fuse_reply_err(req, EAGAIN); return; }        \
  set_context(s, req);                                        \
  napi_handle_scope scope;                                    \
  napi_open_handle_scope(env, &scope);                        \
  napi_value argv[nargs];                                     \
  argv[0] = num(env, id);                                     \
  const int this_op = op;

#define END(nargs)                                            \
  call_js(s, this_op, req, id, nargs, argv);                  \
  napi_close_handle_scope(env, scope);

static double fh_of(struct fuse_file_info *fi) {
  return fi == NULL ? -1 : (double)fi->fh;
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  BEGIN(OP_LOOKUP, 3)
  argv[1] = num(env, (double)parent);
  argv[2] = str(env, name);
  END(3)
}

static void forget_one(session_t *s, fuse_ino_t ino, uint64_t nlookup) {
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[2] = { num(env, (double)ino), num(env, (double)nlookup) };
  call_js(s, OP_FORGET, NULL, -1, 2, argv);
  napi_close_handle_scope(env, scope);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  forget_one(fuse_req_userdata(req), ino, nlookup);
  fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  session_t *s = fuse_req_userdata(req);
  for (size_t i = 0; i < count; i++) forget_one(s, forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(OP_GETATTR, 3)
  argv[1] = num(env, (double)ino);
  argv[2] = num(env, fh_of(fi));
  END(3)
}

// setattr(id, ino, toSet, mode, uid, gid, size, atimeSec, atimeNsec, mtimeSec, mtimeNsec, fh)
// toSet carries libfuse's FUSE_SET_ATTR_* bits unchanged.
static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  BEGIN(OP_SETATTR, 12)
  argv[1] = num(env, (double)ino);
  argv[2] = num(env, to_set);
  argv[3] = num(env, attr->st_mode);
  argv[4] = num(env, attr->st_uid);
  argv[5] = num(env, attr->st_gid);
  argv[6] = num(env, (double)attr->st_size);
  argv[7] = num(env, (double)attr->st_atim.tv_sec);
  argv[8] = num(env, (double)attr->st_atim.tv_nsec);
  argv[9] = num(env, (double)attr->st_mtim.tv_sec);
  argv[10] = num(env, (double)attr->st_mtim.tv_nsec);
  argv[11] = num(env, fh_of(fi));
  END(12)
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  BEGIN(OP_READLINK, 2)
  argv[1] = num(env, (double)ino);
  END(2)
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  BEGIN(OP_MKNOD, 5)
  argv[1] = num(env, (double)parent);
  argv[2] = str(env, name);
  argv[3] = num(env, mode);
  argv[4] = num(env, (double)rdev);
  END(5)
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  BEGIN(OP_MKDIR, 4)
  argv[1] = num(env, (double)parent);
  argv[2] = str(env, name);
  argv[3] = num(env, mode);
  END(4)
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  BEGIN(OP_UNLINK, 3)
  argv[1] = num(env, (double)parent);
  argv[2] = str(env, name);
  END(3)
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  BEGIN(OP_RMDIR, 3)
  argv[1] = num(env, (double)parent);
  argv[2] = str(env, name);
  END(3)
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  BEGIN(OP_SYMLINK, 4)
  argv[1] = str(env, link);
  argv[2] = num(env, (double)parent);
  argv[3] = str(env, name);
  END(4)
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags) {
  BEGIN(OP_RENAME, 6)
  argv[1] = num(env, (double)parent);
  argv[2] = str(env, name);
  argv[3] = num(env, (double)newparent);
  argv[4] = str(env, newname);
  argv[5] = num(env, flags);
  END(6)
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  BEGIN(OP_LINK, 4)
  argv[1] = num(env, (double)ino);
  argv[2] = num(env, (double)newparent);
  argv[3] = str(env, newname);
  END(4)
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(OP_OPEN, 3)
  argv[1] = num(env, (double)ino);
  argv[2] = num(env, fi->flags);
  END(3)
}

/* release and releasedir: (ino, fh). */
static void release_common(fuse_req_t req, int op, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(op, 3)
  argv[1] = num(env, (double)ino);
  argv[2] = num(env, fh_of(fi));
  END(3)
}

/* fsync and fsyncdir: (ino, datasync, fh). */
static void fsync_common(fuse_req_t req, int op, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  BEGIN(op, 4)
  argv[1] = num(env, (double)ino);
  argv[2] = num(env, datasync);
  argv[3] = num(env, fh_of(fi));
  END(4)
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  release_common(req, OP_RELEASE, ino, fi);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  fsync_common(req, OP_FSYNC, ino, datasync, fi);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(OP_OPENDIR, 3)
  argv[1] = num(env, (double)ino);
  argv[2] = num(env, fi->flags);
  END(3)
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi, int plus) {
  BEGIN(OP_READDIR, 6)
  argv[1] = num(env, (double)ino);
  argv[2] = num(env, (double)size);
  argv[3] = num(env, (double)off);
  argv[4] = num(env, fh_of(fi));
  napi_get_boolean(env, plus, &argv[5]);
  END(6)
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  readdir_common(req, ino, size, off, fi, 0);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  readdir_common(req, ino, size, off, fi, 1);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  release_common(req, OP_RELEASEDIR, ino, fi);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  fsync_common(req, OP_FSYNCDIR, ino, datasync, fi);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  BEGIN(OP_STATFS, 2)
  argv[1] = num(env, (double)ino);
  END(2)
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  BEGIN(OP_SETXATTR, 5)
  argv[1] = num(env, (double)ino);
  argv[2] = str(env, name);
  // A copy: libfuse's buffer is reused for the next request, and the handler may answer later.
  void *data;
  napi_create_buffer_copy(env, size, value, &data, &argv[3]);
  argv[4] = num(env, flags);
  END(5)
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  BEGIN(OP_GETXATTR, 4)
  argv[1] = num(env, (double)ino);
  argv[2] = str(env, name);
  argv[3] = num(env, (double)size);
  END(4)
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  BEGIN(OP_LISTXATTR, 3)
  argv[1] = num(env, (double)ino);
  argv[2] = num(env, (double)size);
  END(3)
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  BEGIN(OP_REMOVEXATTR, 3)
  argv[1] = num(env, (double)ino);
  argv[2] = str(env, name);
  END(3)
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  BEGIN(OP_CREATE, 5)
  argv[1] = num(env, (double)parent);
  argv[2] = str(env, name);
  argv[3] = num(env, mode);
  argv[4] = num(env, fi->flags);
  END(5)
}

// ---- data ops, served here on the layer file's descriptor --------------------------------------

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)ino;
  struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
  bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
  bv.buf[0].fd = (int)fi->fh;
  bv.buf[0].pos = off;
  fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

static void ll_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off, struct fuse_file_info *fi) {
  (void)ino;
  struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
  out.buf[0].fd = (int)fi->fh;
  out.buf[0].pos = off;
  ssize_t n = fuse_buf_copy(&out, in, 0);
  if (n < 0) fuse_reply_err(req, (int)-n);
  else fuse_reply_write(req, (size_t)n);
}

static void ll_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
  (void)ino;
  off_t r = lseek((int)fi->fh, off, whence);
  if (r < 0) fuse_reply_err(req, errno);
  else fuse_reply_lseek(req, r);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, struct fuse_file_info *fi) {
  (void)ino;
  fuse_reply_err(req, fallocate((int)fi->fh, mode, off, len) < 0 ? errno : 0);
}

static void ll_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in,
                               fuse_ino_t ino_out, off_t off_out, struct fuse_file_info *fi_out, size_t len, int flags) {
  (void)ino_in;
  (void)ino_out;
  ssize_t n = copy_file_range((int)fi_in->fh, &off_in, (int)fi_out->fh, &off_out, len, (unsigned)flags);
  if (n < 0) fuse_reply_err(req, errno);
  else fuse_reply_write(req, (size_t)n);
}

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  session_t *s = userdata;
  // The kernel clears setuid/setgid on write and chown itself; the driver writes as root, which
  // would keep them.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  // No writeback cache: writes reach the layer before write(2) returns, as on overlayfs.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
  if (s->max_write > 0) conn->max_write = s->max_write;
  // Nanosecond timestamps.
  conn->time_gran = 1;
}

static const struct fuse_lowlevel_ops LL_OPS = {
  .init = ll_init,
  .lookup = ll_lookup,
  .forget = ll_forget,
  .forget_multi = ll_forget_multi,
  .getattr = ll_getattr,
  .setattr = ll_setattr,
  .readlink = ll_readlink,
  .mknod = ll_mknod,
  .mkdir = ll_mkdir,
  .unlink = ll_unlink,
  .rmdir = ll_rmdir,
  .symlink = ll_symlink,
  .rename = ll_rename,
  .link = ll_link,
  .open = ll_open,
  .read = ll_read,
  .write_buf = ll_write_buf,
  .release = ll_release,
  .fsync = ll_fsync,
  .opendir = ll_opendir,
  .readdir = ll_readdir,
  .readdirplus = ll_readdirplus,
  .releasedir = ll_releasedir,
  .fsyncdir = ll_fsyncdir,
  .statfs = ll_statfs,
  .setxattr = ll_setxattr,
  .getxattr = ll_getxattr,
  .listxattr = ll_listxattr,
  .removexattr = ll_removexattr,
  .create = ll_create,
  .lseek = ll_lseek,
  .fallocate = ll_fallocate,
  .copy_file_range = ll_copy_file_range,
};

// ---- the loop --------------------------------------------------------------------------------

static void on_closed(uv_handle_t *h) {
  (void)h;
}

static void finish(session_t *s) {
  if (s->exited) return;
  s->exited = 1;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_closed);
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, recv;
  napi_get_reference_value(env, s->on_exit, &fn);
  napi_get_undefined(env, &recv);
  napi_call_function(env, recv, fn, 0, NULL, NULL);
  napi_close_handle_scope(env, scope);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  session_t *s = handle->data;
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value resource;
  napi_get_reference_value(env, s->resource, &resource);
  napi_callback_scope cb_scope;
  napi_open_callback_scope(env, resource, s->async_ctx, &cb_scope);
  if (status < 0) {
    finish(s);
  } else {
    for (int i = 0; i < BATCH_MAX && !s->exited; i++) {
      int r = fuse_session_receive_buf(s->se, &s->buf);
      if (r == -EAGAIN || r == -EINTR) break;
      if (r <= 0 || fuse_session_exited(s->se)) {
        finish(s);
        break;
      }
      fuse_session_process_buf(s->se, &s->buf);
    }
  }
  napi_close_callback_scope(env, cb_scope);
  napi_close_handle_scope(env, scope);
}

// ---- JS API ----------------------------------------------------------------------------------

// mount(mountpoint, options: string[] (each one -o value), handlers: object, ctx: Uint32Array(4),
//       onExit: () => void, config: { attrTimeout, entryTimeout, negativeTimeout, maxWrite })
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) return throw_error(env, "mount: expected 6 arguments");

  char mountpoint[4096];
  size_t n;
  if (napi_get_value_string_utf8(env, argv[0], mountpoint, sizeof mountpoint, &n) != napi_ok || n >= sizeof mountpoint - 1)
    return throw_error(env, "mount: bad mountpoint");

  session_t *s = calloc(1, sizeof *s);
  if (s == NULL) return throw_error(env, "mount: out of memory");
  s->env = env;

  uint32_t nopts;
  CHECK(napi_get_array_length(env, argv[1], &nopts));
  char **args = calloc(2 + 2 * (size_t)nopts + 1, sizeof *args);
  int nargs = 0;
  args[nargs++] = strdup("strata");
  for (uint32_t i = 0; i < nopts; i++) {
    napi_value o;
    char buf[4096];
    CHECK(napi_get_element(env, argv[1], i, &o));
    if (napi_get_value_string_utf8(env, o, buf, sizeof buf, &n) != napi_ok || n >= sizeof buf - 1)
      return throw_error(env, "mount: bad option");
    args[nargs++] = strdup("-o");
    args[nargs++] = strdup(buf);
  }

  for (int op = 0; op < OP_COUNT; op++) {
    napi_value fn;
    napi_valuetype t;
    CHECK(napi_get_named_property(env, argv[2], OP_NAMES[op], &fn));
    CHECK(napi_typeof(env, fn, &t));
    if (t != napi_function) {
      char msg[64];
      snprintf(msg, sizeof msg, "mount: handler %s missing", OP_NAMES[op]);
      return throw_error(env, msg);
    }
    CHECK(napi_create_reference(env, fn, 1, &s->handlers[op]));
  }

  s->ctx = get_u32_array(env, argv[3], 4);
  if (s->ctx == NULL) return throw_error(env, "mount: ctx must be a Uint32Array(4)");
  CHECK(napi_create_reference(env, argv[3], 1, &s->ctx_ref));
  CHECK(napi_create_reference(env, argv[4], 1, &s->on_exit));

  napi_value v;
  double d;
  s->attr_timeout = (napi_get_named_property(env, argv[5], "attrTimeout", &v) == napi_ok && get_double(env, v, &d)) ? d : 1;
  s->entry_timeout = (napi_get_named_property(env, argv[5], "entryTimeout", &v) == napi_ok && get_double(env, v, &d)) ? d : 1;
  s->negative_timeout = (napi_get_named_property(env, argv[5], "negativeTimeout", &v) == napi_ok && get_double(env, v, &d)) ? d : 1;
  s->max_write = (napi_get_named_property(env, argv[5], "maxWrite", &v) == napi_ok && get_double(env, v, &d)) ? (unsigned)d : 0;

  napi_value resource, name;
  CHECK(napi_create_object(env, &resource));
  CHECK(napi_create_reference(env, resource, 1, &s->resource));
  CHECK(napi_create_string_utf8(env, "fuse-native:lowlevel", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, resource, name, &s->async_ctx));

  struct fuse_args fargs = FUSE_ARGS_INIT(nargs, args);
  s->se = fuse_session_new(&fargs, &LL_OPS, sizeof LL_OPS, s);
  fuse_opt_free_args(&fargs);
  if (s->se == NULL) return throw_error(env, "bad FUSE options (libfuse printed why)");
  if (fuse_session_mount(s->se, mountpoint) != 0) {
    fuse_session_destroy(s->se);
    s->se = NULL;
    return throw_error(env, "mount failed (libfuse printed why)");
  }
  s->fd = fuse_session_fd(s->se);
  // Children must not inherit the connection; reads must not block the event loop.
  fcntl(s->fd, F_SETFD, fcntl(s->fd, F_GETFD) | FD_CLOEXEC);
  fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);

  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  uv_poll_init(loop, &s->poll, s->fd);
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);

  napi_value ext;
  CHECK(napi_create_external(env, s, NULL, NULL, &ext));
  return ext;
}

// unmount(session): detach the mount; the loop ends (onExit) when the kernel ends the connection.
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session_t *s = get_session(env, argv[0]);
  if (s == NULL || s->se == NULL) return throw_error(env, "unmount: not a session");
  fuse_session_unmount(s->se);
  return undefined_value(env);
}

// Reply helpers: each takes (session, id, ...) and returns whether the id was live.
#define REPLY_PROLOGUE(nargs)                                         \
  size_t argc = nargs;                                                \
  napi_value argv[nargs];                                             \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));        \
  session_t *s = get_session(env, argv[0]);                           \
  double id;                                                          \
  if (s == NULL || !get_double(env, argv[1], &id)) return throw_error(env, "reply: bad session or id"); \
  fuse_req_t req = take_req(s, id);                                   \
  napi_value ok;                                                      \
  napi_get_boolean(env, req != NULL, &ok);                            \
  if (req == NULL) return ok;

// replyErr(session, id, errno): 0 answers success for ops without a payload.
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(3)
  double e = 0;
  get_double(env, argv[2], &e);
  fuse_reply_err(req, (int)e);
  return ok;
}

static int fill_entry(session_t *s, napi_env env, napi_value nodeid, napi_value st, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  double ino = 0;
  get_double(env, nodeid, &ino);
  e->ino = (fuse_ino_t)ino;
  if (e->ino == 0) {
    e->entry_timeout = s->negative_timeout;
    return 1;
  }
  uint32_t *w = get_u32_array(env, st, STAT_INTS);
  if (w == NULL) return 0;
  stat_from_ints(w, &e->attr);
  e->attr_timeout = attr_timeout_for(s, &e->attr);
  e->entry_timeout = s->entry_timeout;
  return 1;
}

// replyEntry(session, id, nodeid, stat): nodeid 0 is a cached negative entry.
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(4)
  struct fuse_entry_param e;
  if (!fill_entry(s, env, argv[2], argv[3], &e)) {
    fuse_reply_err(req, EIO);
    return throw_error(env, "replyEntry: stat must be a Uint32Array(22)");
  }
  fuse_reply_entry(req, &e);
  return ok;
}

static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(3)
  uint32_t *w = get_u32_array(env, argv[2], STAT_INTS);
  if (w == NULL) {
    fuse_reply_err(req, EIO);
    return throw_error(env, "replyAttr: stat must be a Uint32Array(22)");
  }
  struct stat st;
  stat_from_ints(w, &st);
  fuse_reply_attr(req, &st, attr_timeout_for(s, &st));
  return ok;
}

// Open flags as JS passes them: 1 direct_io, 2 keep_cache, 4 nonseekable, 8 cache_readdir.
static void fill_open(napi_env env, napi_value fh, napi_value flags, struct fuse_file_info *fi) {
  memset(fi, 0, sizeof *fi);
  double h = 0, f = 0;
  get_double(env, fh, &h);
  get_double(env, flags, &f);
  unsigned bits = (unsigned)f;
  fi->fh = (uint64_t)h;
  fi->direct_io = (bits & 1) != 0;
  fi->keep_cache = (bits & 2) != 0;
  fi->nonseekable = (bits & 4) != 0;
  fi->cache_readdir = (bits & 8) != 0;
  // Nothing is buffered in the driver: no FLUSH round trip on close.
  fi->noflush = 1;
}

// replyOpen(session, id, fh, flags)
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(4)
  struct fuse_file_info fi;
  fill_open(env, argv[2], argv[3], &fi);
  if (fuse_reply_open(req, &fi) == -ENOENT) {
    // The opener was interrupted and is gone: nobody will release this handle.
    napi_get_boolean(env, 0, &ok);
  }
  return ok;
}

// replyCreate(session, id, nodeid, stat, fh, flags)
static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(6)
  struct fuse_entry_param e;
  if (!fill_entry(s, env, argv[2], argv[3], &e) || e.ino == 0) {
    fuse_reply_err(req, EIO);
    return throw_error(env, "replyCreate: bad entry");
  }
  struct fuse_file_info fi;
  fill_open(env, argv[4], argv[5], &fi);
  if (fuse_reply_create(req, &e, &fi) == -ENOENT) napi_get_boolean(env, 0, &ok);
  return ok;
}

// replyReadlink(session, id, target)
static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(3)
  size_t len;
  napi_get_value_string_utf8(env, argv[2], NULL, 0, &len);
  char *target = malloc(len + 1);
  if (target == NULL) {
    fuse_reply_err(req, ENOMEM);
    return ok;
  }
  napi_get_value_string_utf8(env, argv[2], target, len + 1, &len);
  fuse_reply_readlink(req, target);
  free(target);
  return ok;
}

// replyXattr(session, id, size, value: Buffer): the size the caller asked for decides between
// answering the length (size 0), the bytes, or ERANGE.
static napi_value js_reply_xattr(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(4)
  double size = 0;
  get_double(env, argv[2], &size);
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, argv[3], &data, &len) != napi_ok) {
    fuse_reply_err(req, EIO);
    return throw_error(env, "replyXattr: value must be a Buffer");
  }
  if (size == 0) fuse_reply_xattr(req, len);
  else if (len > (size_t)size) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, data, len);
  return ok;
}

// replyStatfs(session, id, Float64Array(11)) in statvfs order (see strata's statvfsFd).
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(3)
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, argv[2], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_float64_array || len < 11) {
    fuse_reply_err(req, EIO);
    return throw_error(env, "replyStatfs: expected a Float64Array(11)");
  }
  double *v = data;
  struct statvfs st = {
    .f_bsize = (unsigned long)v[0], .f_frsize = (unsigned long)v[1], .f_blocks = (fsblkcnt_t)v[2],
    .f_bfree = (fsblkcnt_t)v[3], .f_bavail = (fsblkcnt_t)v[4], .f_files = (fsfilcnt_t)v[5],
    .f_ffree = (fsfilcnt_t)v[6], .f_favail = (fsfilcnt_t)v[7], .f_fsid = (unsigned long)v[8],
    .f_flag = (unsigned long)v[9], .f_namemax = (unsigned long)v[10],
  };
  fuse_reply_statfs(req, &st);
  return ok;
}

// replyDirents(session, id, size, plus, offset, names: string[], nodeids: Float64Array,
//              stats: Uint32Array(22 * n)) -> number of entries that fit (-1 if the id was stale).
// Entry i gets the offset `offset + i + 1`. In plus mode an entry with nodeid 0 carries no
// attributes (the kernel then does not count it as a lookup); otherwise the kernel counts it.
static napi_value js_reply_dirents(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session_t *s = get_session(env, argv[0]);
  double id, size, offset;
  bool plus;
  if (s == NULL || !get_double(env, argv[1], &id) || !get_double(env, argv[2], &size) ||
      napi_get_value_bool(env, argv[3], &plus) != napi_ok || !get_double(env, argv[4], &offset))
    return throw_error(env, "replyDirents: bad arguments");
  fuse_req_t req = take_req(s, id);
  if (req == NULL) return num(env, -1);
  uint32_t count;
  napi_typedarray_type type;
  size_t nids, nst;
  void *ids_data, *st_data;
  if (napi_get_array_length(env, argv[5], &count) != napi_ok ||
      napi_get_typedarray_info(env, argv[6], &type, &nids, &ids_data, NULL, NULL) != napi_ok || type != napi_float64_array ||
      napi_get_typedarray_info(env, argv[7], &type, &nst, &st_data, NULL, NULL) != napi_ok || type != napi_uint32_array ||
      nids < count || nst < (size_t)count * STAT_INTS) {
    fuse_reply_err(req, EIO);
    return throw_error(env, "replyDirents: names, nodeids and stats disagree");
  }
  double *ids = ids_data;
  uint32_t *stats = st_data;
  char *buf = malloc((size_t)size);
  if (buf == NULL) {
    fuse_reply_err(req, ENOMEM);
    return num(env, 0);
  }
  size_t used = 0;
  uint32_t added = 0;
  char name[1024];
  for (uint32_t i = 0; i < count; i++) {
    napi_value nv;
    size_t nlen;
    if (napi_get_element(env, argv[5], i, &nv) != napi_ok ||
        napi_get_value_string_utf8(env, nv, name, sizeof name, &nlen) != napi_ok) break;
    off_t next = (off_t)offset + i + 1;
    size_t want;
    if (plus) {
      struct fuse_entry_param e;
      memset(&e, 0, sizeof e);
      stat_from_ints(stats + (size_t)i * STAT_INTS, &e.attr);
      e.ino = (fuse_ino_t)ids[i];
      if (e.ino != 0) {
        e.attr_timeout = attr_timeout_for(s, &e.attr);
        e.entry_timeout = s->entry_timeout;
      }
      want = fuse_add_direntry_plus(req, buf + used, (size_t)size - used, name, &e, next);
    } else {
      struct stat st;
      stat_from_ints(stats + (size_t)i * STAT_INTS, &st);
      want = fuse_add_direntry(req, buf + used, (size_t)size - used, name, &st, next);
    }
    if (want > (size_t)size - used) break;
    used += want;
    added++;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
  return num(env, added);
}

// notifyInvalInode(session, nodeid): drop the kernel's cached attributes of a node, for a
// change it cannot see (a new link to the file through another node). Safe inside a handler: no
// kernel lock is taken for attributes only. Returns 0 or -errno (-ENOENT: not cached).
static napi_value js_notify_inval_inode(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session_t *s = get_session(env, argv[0]);
  double ino;
  if (s == NULL || !get_double(env, argv[1], &ino)) return throw_error(env, "notifyInvalInode: bad arguments");
  if (s->exited) return num(env, -ENOTCONN);
  return num(env, fuse_lowlevel_notify_inval_inode(s->se, (fuse_ino_t)ino, -1, 0));
}

static napi_value js_request_count(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session_t *s = get_session(env, argv[0]);
  if (s == NULL) return throw_error(env, "not a session");
  return num(env, s->cap - s->nfree);
}

static napi_value init(napi_env env, napi_value exports) {
  const struct { const char *name; napi_callback fn; } fns[] = {
    { "mount", js_mount },
    { "unmount", js_unmount },
    { "replyErr", js_reply_err },
    { "replyEntry", js_reply_entry },
    { "replyAttr", js_reply_attr },
    { "replyOpen", js_reply_open },
    { "replyCreate", js_reply_create },
    { "replyReadlink", js_reply_readlink },
    { "replyXattr", js_reply_xattr },
    { "replyStatfs", js_reply_statfs },
    { "replyDirents", js_reply_dirents },
    { "notifyInvalInode", js_notify_inval_inode },
    { "pendingRequests", js_request_count },
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  napi_value marker;
  napi_create_uint32(env, 1, &marker);
  napi_set_named_property(env, exports, "strata_lowlevel", marker);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
