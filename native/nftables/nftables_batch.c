// nf_tables batches from Node: one atomic transaction per commit() call, and
// a dump of one table's chains, sets and elements. Built on libnftnl (message
// layout) and libmnl (the netlink socket), the libraries nft itself uses.
//
// Exports:
//   open(netnsPath?: string) -> handle      socket bound in that namespace (or the caller's)
//   close(handle)
//   commit(handle, ops: Op[]) -> undefined  throws Error{ errno, code, opIndex } and applies nothing
//   dump(handle, family: number, table: string) -> null | { chains, rules, sets }
//     each set: { name, keyLen, dataLen, count, keys: Buffer, data: Buffer, comments: (string|undefined)[] }
//   lastKernelMs(handle) -> ms the last commit spent from send to the kernel's answer
//   tableExists(handle, family, table) -> boolean
//
// Op (family defaults to NFPROTO_IPV4):
//   { op: 'addTable' | 'delTable', table }
//   { op: 'addChain', table, chain, hook?, priority?, type?, policy? } | { op: 'delChain', table, chain }
//   { op: 'flushSet', table, set }
//   { op: 'addElems' | 'delElems', table, set, keyLen, keys: Buffer, dataLen?, data?: Buffer, comments?: string[] }
//     keys holds count × keyLen bytes, data count × dataLen (maps only)

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include <node_api.h>

#define CHECK(env, call)                                                     \
  do {                                                                       \
    if ((call) != napi_ok) {                                                 \
      napi_throw_error((env), NULL, "N-API call failed: " #call);            \
      return NULL;                                                           \
    }                                                                        \
  } while (0)

// One nested element list must stay below 64 KiB (nla_len is 16 bits).
#define ELEMS_BYTES_PER_MSG 48000
#define SOCKET_BUFFER (64 * 1024 * 1024)

struct handle {
  struct mnl_socket *nl;
  uint64_t last_kernel_ns;  // time of the last batch from send to the kernel's last answer
  uint32_t portid;
  uint32_t seq;
};

// ---- a growable buffer of netlink messages -------------------------------

struct batch {
  char *buf;
  size_t len;
  size_t cap;
  uint32_t first_seq;
  uint32_t seq;
  // op index of each message, by seq - first_seq
  int *op_of;
  size_t nmsg;
  size_t op_cap;
};

static int batch_reserve(struct batch *b, size_t more) {
  if (b->len + more <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 65536;
  while (cap < b->len + more) cap *= 2;
  char *p = realloc(b->buf, cap);
  if (!p) return -1;
  memset(p + b->cap, 0, cap - b->cap);
  b->buf = p;
  b->cap = cap;
  return 0;
}

// Space for the next message: returns where to build it.
static char *batch_next(struct batch *b, size_t upper, int op) {
  if (batch_reserve(b, upper) < 0) return NULL;
  if (b->nmsg == b->op_cap) {
    size_t cap = b->op_cap ? b->op_cap * 2 : 64;
    int *p = realloc(b->op_of, cap * sizeof(int));
    if (!p) return NULL;
    b->op_of = p;
    b->op_cap = cap;
  }
  b->op_of[b->nmsg++] = op;
  return b->buf + b->len;
}

static void batch_done(struct batch *b, struct nlmsghdr *nlh) {
  b->len += NLMSG_ALIGN(nlh->nlmsg_len);
  b->seq++;
}

// ---- N-API helpers ------------------------------------------------------

static napi_value throw_errno(napi_env env, int err, int op_index, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value m, e, v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, NULL, m, &e);
  napi_create_int32(env, err, &v);
  napi_set_named_property(env, e, "errno", v);
  const char *code = err == EEXIST ? "EEXIST" : err == ENOENT ? "ENOENT" : err == EBUSY ? "EBUSY" : err == EINVAL ? "EINVAL"
                   : err == EPERM ? "EPERM" : err == ENOMEM ? "ENOMEM" : err == EOPNOTSUPP ? "EOPNOTSUPP" : "EUNKNOWN";
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, e, "code", v);
  napi_create_int32(env, op_index, &v);
  napi_set_named_property(env, e, "opIndex", v);
  napi_throw(env, e);
  return NULL;
}

static int get_string(napi_env env, napi_value obj, const char *key, char *out, size_t size) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return 0;
  napi_value v;
  napi_valuetype t;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return -1;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return t == napi_undefined ? 0 : -1;
  size_t n;
  if (napi_get_value_string_utf8(env, v, out, size, &n) != napi_ok) return -1;
  return 1;
}

static int get_int(napi_env env, napi_value obj, const char *key, int32_t *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return 0;
  napi_value v;
  napi_valuetype t;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return -1;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return t == napi_undefined ? 0 : -1;
  if (napi_get_value_int32(env, v, out) != napi_ok) return -1;
  return 1;
}

static int get_buffer(napi_env env, napi_value obj, const char *key, void **data, size_t *len) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return 0;
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return -1;
  bool is = false;
  napi_is_buffer(env, v, &is);
  if (!is) {
    napi_valuetype t;
    napi_typeof(env, v, &t);
    return t == napi_undefined ? 0 : -1;
  }
  if (napi_get_buffer_info(env, v, data, len) != napi_ok) return -1;
  return 1;
}

static struct handle *get_handle(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "expected an nftables handle");
    return NULL;
  }
  struct handle *h = p;
  if (!h->nl) {
    napi_throw_error(env, NULL, "nftables handle is closed");
    return NULL;
  }
  return h;
}

// ---- open / close -------------------------------------------------------

static void finalize_handle(napi_env env, void *data, void *hint) {
  struct handle *h = data;
  if (h->nl) mnl_socket_close(h->nl);
  free(h);
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096] = "";
  if (argc >= 1) {
    napi_valuetype t;
    CHECK(env, napi_typeof(env, argv[0], &t));
    if (t == napi_string) CHECK(env, napi_get_value_string_utf8(env, argv[0], path, sizeof path, NULL));
  }

  int self = -1;
  if (path[0]) {
    // Only this thread enters the namespace, for as long as the socket takes to open.
    self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = open(path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
      int err = errno;
      if (self >= 0) close(self);
      if (target >= 0) close(target);
      return throw_errno(env, err, -1, "entering the network namespace");
    }
    close(target);
  }
  struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  int err = nl ? 0 : errno;
  if (nl && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    err = errno;
    mnl_socket_close(nl);
    nl = NULL;
  }
  if (self >= 0) {
    if (setns(self, CLONE_NEWNET) < 0) abort();  // never leave the main thread elsewhere
    close(self);
  }
  if (!nl) return throw_errno(env, err, -1, "opening the netfilter netlink socket");

  int size = SOCKET_BUFFER;
  // Large batches and dumps: FORCE needs CAP_NET_ADMIN, the plain option is the fallback.
  if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  int one = 1;
  setsockopt(mnl_socket_get_fd(nl), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);

  struct handle *h = calloc(1, sizeof *h);
  h->nl = nl;
  h->portid = mnl_socket_get_portid(nl);
  h->seq = (uint32_t)time(NULL);
  napi_value out;
  CHECK(env, napi_create_external(env, h, finalize_handle, NULL, &out));
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *p = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &p) != napi_ok || !p) return NULL;
  struct handle *h = p;
  if (h->nl) mnl_socket_close(h->nl);
  h->nl = NULL;
  return NULL;
}

// ---- commit -------------------------------------------------------------

struct names {
  char table[256];
  char object[256];
  uint16_t family;
};

static int read_names(napi_env env, napi_value op, struct names *n, const char *object_key) {
  int32_t family = NFPROTO_IPV4;
  if (get_int(env, op, "family", &family) < 0) return -1;
  n->family = (uint16_t)family;
  if (get_string(env, op, "table", n->table, sizeof n->table) != 1) return -1;
  n->object[0] = 0;
  if (object_key && get_string(env, op, object_key, n->object, sizeof n->object) != 1) return -1;
  return 0;
}

static int build_table(struct batch *b, int op, int cmd, const struct names *n) {
  struct nftnl_table *t = nftnl_table_alloc();
  nftnl_table_set_str(t, NFTNL_TABLE_NAME, n->table);
  char *at = batch_next(b, 4096, op);
  if (!at) { nftnl_table_free(t); return -1; }
  struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(at, cmd, n->family, cmd == NFT_MSG_NEWTABLE ? NLM_F_CREATE : 0, b->seq);
  nftnl_table_nlmsg_build_payload(nlh, t);
  nftnl_table_free(t);
  batch_done(b, nlh);
  return 0;
}

static int build_chain(napi_env env, napi_value opv, struct batch *b, int op, int cmd, const struct names *n) {
  struct nftnl_chain *c = nftnl_chain_alloc();
  nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, n->table);
  nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, n->object);
  if (cmd == NFT_MSG_NEWCHAIN) {
    int32_t hook, prio = 0, policy;
    char type[32] = "filter";
    int hh = get_int(env, opv, "hook", &hook);
    if (hh < 0 || get_int(env, opv, "priority", &prio) < 0 || get_string(env, opv, "type", type, sizeof type) < 0) {
      nftnl_chain_free(c);
      return -2;
    }
    if (hh == 1) {
      nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, (uint32_t)hook);
      nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
      nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
      if (get_int(env, opv, "policy", &policy) == 1) nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, (uint32_t)policy);
    }
  }
  char *at = batch_next(b, 4096, op);
  if (!at) { nftnl_chain_free(c); return -1; }
  struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(at, cmd, n->family, cmd == NFT_MSG_NEWCHAIN ? NLM_F_CREATE : 0, b->seq);
  nftnl_chain_nlmsg_build_payload(nlh, c);
  nftnl_chain_free(c);
  batch_done(b, nlh);
  return 0;
}

static struct nftnl_set *set_named(const struct names *n) {
  struct nftnl_set *s = nftnl_set_alloc();
  nftnl_set_set_str(s, NFTNL_SET_TABLE, n->table);
  nftnl_set_set_str(s, NFTNL_SET_NAME, n->object);
  nftnl_set_set_u32(s, NFTNL_SET_FAMILY, n->family);
  return s;
}

static int flush_elems(struct batch *b, int op, int cmd, const struct names *n, struct nftnl_set *s) {
  char *at = batch_next(b, ELEMS_BYTES_PER_MSG * 2 + 4096, op);
  if (!at) return -1;
  struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(at, cmd, n->family, cmd == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, b->seq);
  nftnl_set_elems_nlmsg_build_payload(nlh, s);
  batch_done(b, nlh);
  return 0;
}

// Elements come packed: `keys` holds count × keyLen bytes, `data` count ×
// dataLen (maps), `comments` an optional array of count strings ('' for none).
// One property read per operation instead of several per element.
static int build_elems(napi_env env, napi_value opv, struct batch *b, int op, int cmd, const struct names *n) {
  void *keys = NULL, *data = NULL;
  size_t keys_len = 0, data_len = 0;
  int32_t key_len = 0, val_len = 0;
  if (get_buffer(env, opv, "keys", &keys, &keys_len) != 1 || get_int(env, opv, "keyLen", &key_len) != 1 || key_len <= 0 || key_len > 64) return -2;
  if (keys_len % (size_t)key_len) return -2;
  uint32_t count = (uint32_t)(keys_len / (size_t)key_len);
  int has_data = get_buffer(env, opv, "data", &data, &data_len);
  if (has_data < 0) return -2;
  if (has_data == 1 && cmd == NFT_MSG_NEWSETELEM) {
    if (get_int(env, opv, "dataLen", &val_len) != 1 || val_len <= 0 || val_len > 64 || data_len != (size_t)val_len * count) return -2;
  } else {
    data = NULL;
  }
  napi_value comments = NULL;
  bool has_comments = false;
  if (cmd == NFT_MSG_NEWSETELEM && napi_has_named_property(env, opv, "comments", &has_comments) == napi_ok && has_comments) {
    bool is_array = false;
    napi_get_named_property(env, opv, "comments", &comments);
    if (napi_is_array(env, comments, &is_array) != napi_ok || !is_array) comments = NULL;
  }
  struct nftnl_set *s = set_named(n);
  size_t bytes = 0;
  uint32_t in_msg = 0;
  char comment[NFTNL_UDATA_COMMENT_MAXLEN + 1];
  for (uint32_t i = 0; i < count; i++) {
    struct nftnl_set_elem *e = nftnl_set_elem_alloc();
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, (char *)keys + (size_t)i * key_len, key_len);
    if (data) nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, (char *)data + (size_t)i * val_len, val_len);
    size_t ud_len = 0;
    if (comments) {
      napi_value cv;
      napi_valuetype t;
      size_t len = 0;
      if (napi_get_element(env, comments, i, &cv) == napi_ok && napi_typeof(env, cv, &t) == napi_ok && t == napi_string &&
          napi_get_value_string_utf8(env, cv, comment, sizeof comment, &len) == napi_ok && len > 0) {
        struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFTNL_UDATA_COMMENT_MAXLEN + 8);
        nftnl_udata_put_strz(ud, NFTNL_UDATA_SET_ELEM_COMMENT, comment);
        ud_len = nftnl_udata_buf_len(ud);
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(ud), ud_len);
        nftnl_udata_buf_free(ud);
      }
    }
    nftnl_set_elem_add(s, e);
    in_msg++;
    bytes += 32 + (size_t)key_len + (size_t)val_len + ud_len;
    if (bytes >= ELEMS_BYTES_PER_MSG) {
      if (flush_elems(b, op, cmd, n, s) < 0) { nftnl_set_free(s); return -1; }
      nftnl_set_free(s);
      s = set_named(n);
      bytes = 0;
      in_msg = 0;
    }
  }
  int rc = 0;
  if (in_msg > 0) rc = flush_elems(b, op, cmd, n, s);
  nftnl_set_free(s);
  return rc;
}

static int build_flush_set(struct batch *b, int op, const struct names *n) {
  struct nftnl_set *s = set_named(n);
  int rc = flush_elems(b, op, NFT_MSG_DELSETELEM, n, s);
  nftnl_set_free(s);
  return rc;
}

struct ack_state {
  uint32_t first_seq;
  uint32_t last_seq;
  int err;
  uint32_t err_seq;
  int done;
};

static int ack_error_cb(const struct nlmsghdr *nlh, void *data) {
  struct ack_state *st = data;
  const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
  if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct nlmsgerr))) return MNL_CB_ERROR;
  uint32_t seq = e->msg.nlmsg_seq;
  if (e->error != 0 && (st->err == 0 || seq < st->err_seq)) {
    st->err = -e->error;
    st->err_seq = seq;
  }
  if (seq == st->last_seq) st->done = 1;
  // An error for the batch's begin or end message ends it: nothing else will answer.
  if (e->error != 0 && (seq < st->first_seq || seq > st->last_seq)) st->done = 1;
  return MNL_CB_OK;
}

static int batch_talk(struct handle *h, struct batch *b, struct ack_state *st) {
  // The whole batch goes in one datagram: the send buffer must hold it.
  if (b->len + 65536 > SOCKET_BUFFER) {
    int size = (int)(b->len + 65536);
    setsockopt(mnl_socket_get_fd(h->nl), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
  }
  if (mnl_socket_sendto(h->nl, b->buf, b->len) < 0) return -errno;
  static char rbuf[1 << 16];
  while (!st->done) {
    ssize_t n = mnl_socket_recvfrom(h->nl, rbuf, sizeof rbuf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    mnl_cb_t ctl[NLMSG_MIN_TYPE] = {0};
    ctl[NLMSG_ERROR] = ack_error_cb;
    // seq 0 skips libmnl's sequence check: acks of several messages arrive here
    int rc = mnl_cb_run2(rbuf, n, 0, h->portid, NULL, st, ctl, NLMSG_MIN_TYPE);
    if (rc == MNL_CB_ERROR && st->err == 0) return -errno;
  }
  return 0;
}

static napi_value js_commit(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "commit(handle, ops)");
    return NULL;
  }
  struct handle *h = get_handle(env, argv[0]);
  if (!h) return NULL;
  bool is_array = false;
  CHECK(env, napi_is_array(env, argv[1], &is_array));
  if (!is_array) {
    napi_throw_type_error(env, NULL, "ops must be an array");
    return NULL;
  }
  uint32_t nops;
  CHECK(env, napi_get_array_length(env, argv[1], &nops));
  if (nops == 0) return NULL;

  struct batch b = {0};
  b.seq = h->seq;
  char *at = batch_next(&b, 256, -1);
  struct nlmsghdr *nlh = at ? nftnl_batch_begin(at, b.seq) : NULL;
  if (!nlh) goto nomem;
  batch_done(&b, nlh);
  b.first_seq = b.seq;

  for (uint32_t i = 0; i < nops; i++) {
    napi_value opv;
    CHECK(env, napi_get_element(env, argv[1], i, &opv));
    char kind[32];
    struct names n;
    int rc = -2;
    if (get_string(env, opv, "op", kind, sizeof kind) != 1) goto bad;
    if (!strcmp(kind, "addTable") || !strcmp(kind, "delTable")) {
      if (read_names(env, opv, &n, NULL) < 0) goto bad;
      rc = build_table(&b, i, kind[0] == 'a' ? NFT_MSG_NEWTABLE : NFT_MSG_DELTABLE, &n);
    } else if (!strcmp(kind, "addChain") || !strcmp(kind, "delChain")) {
      if (read_names(env, opv, &n, "chain") < 0) goto bad;
      rc = build_chain(env, opv, &b, i, kind[0] == 'a' ? NFT_MSG_NEWCHAIN : NFT_MSG_DELCHAIN, &n);
    } else if (!strcmp(kind, "flushSet")) {
      if (read_names(env, opv, &n, "set") < 0) goto bad;
      rc = build_flush_set(&b, i, &n);
    } else if (!strcmp(kind, "addElems") || !strcmp(kind, "delElems")) {
      if (read_names(env, opv, &n, "set") < 0) goto bad;
      rc = build_elems(env, opv, &b, i, kind[0] == 'a' ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, &n);
    }
    if (rc == -1) goto nomem;
    if (rc < 0) {
    bad:
      free(b.buf);
      free(b.op_of);
      char msg[96];
      snprintf(msg, sizeof msg, "malformed nftables operation at index %u", i);
      napi_throw_type_error(env, NULL, msg);
      return NULL;
    }
  }
  uint32_t last_seq = b.seq - 1;
  if (last_seq < b.first_seq) {  // only empty element lists
    free(b.buf);
    free(b.op_of);
    return NULL;
  }
  // The last message asks for an ack: its answer marks the end of the batch's replies.
  {
    char *p = b.buf;
    struct nlmsghdr *m = NULL;
    while (p < b.buf + b.len) {
      m = (struct nlmsghdr *)p;
      p += NLMSG_ALIGN(m->nlmsg_len);
    }
    m->nlmsg_flags |= NLM_F_ACK;
  }
  at = batch_next(&b, 256, -1);
  nlh = at ? nftnl_batch_end(at, b.seq) : NULL;
  if (!nlh) goto nomem;
  batch_done(&b, nlh);
  h->seq = b.seq;

  struct ack_state st = {.first_seq = b.first_seq, .last_seq = last_seq};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = batch_talk(h, &b, &st);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  h->last_kernel_ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)(t1.tv_nsec - t0.tv_nsec);
  int op_index = st.err && st.err_seq >= b.first_seq && st.err_seq <= last_seq ? b.op_of[1 + (st.err_seq - b.first_seq)] : -1;
  free(b.buf);
  free(b.op_of);
  if (rc < 0) return throw_errno(env, -rc, -1, "nf_tables batch");
  if (st.err) return throw_errno(env, st.err, op_index, "nf_tables batch");
  return NULL;

nomem:
  free(b.buf);
  free(b.op_of);
  return throw_errno(env, ENOMEM, -1, "building the nf_tables batch");
}

// ---- dump ---------------------------------------------------------------

struct elem_acc;
struct dump_ctx {
  napi_env env;
  struct elem_acc *acc;
  napi_value list;
  uint32_t count;
  const char *table;
  int failed;
};

static int run_dump(struct handle *h, struct nlmsghdr *nlh, mnl_cb_t cb, struct dump_ctx *ctx) {
  uint32_t seq = nlh->nlmsg_seq;
  if (mnl_socket_sendto(h->nl, nlh, nlh->nlmsg_len) < 0) return -errno;
  static char rbuf[1 << 17];
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(h->nl, rbuf, sizeof rbuf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    int rc = mnl_cb_run(rbuf, n, seq, h->portid, cb, ctx);
    if (rc == MNL_CB_STOP) return ctx->failed ? -ENOMEM : 0;
    if (rc < 0) return -errno;
  }
}

static void push(struct dump_ctx *c, napi_value v) {
  napi_set_element(c->env, c->list, c->count++, v);
}

static void set_str(napi_env env, napi_value o, const char *k, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, k, v);
}

static void set_num(napi_env env, napi_value o, const char *k, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  napi_set_named_property(env, o, k, v);
}

static void set_buf(napi_env env, napi_value o, const char *k, const void *p, size_t len) {
  napi_value v;
  void *out;
  napi_create_buffer_copy(env, len, p, &out, &v);
  napi_set_named_property(env, o, k, v);
}

static int table_cb(const struct nlmsghdr *nlh, void *data) {
  struct dump_ctx *c = data;
  struct nftnl_table *t = nftnl_table_alloc();
  if (nftnl_table_nlmsg_parse(nlh, t) == 0 && !strcmp(nftnl_table_get_str(t, NFTNL_TABLE_NAME), c->table)) c->count++;
  nftnl_table_free(t);
  return MNL_CB_OK;
}

static int chain_comment_cb(const struct nftnl_udata *attr, void *data) {
  if (nftnl_udata_type(attr) == NFTNL_UDATA_CHAIN_COMMENT) *(const char **)data = nftnl_udata_get(attr);
  return 0;
}

static int chain_cb(const struct nlmsghdr *nlh, void *data) {
  struct dump_ctx *c = data;
  struct nftnl_chain *ch = nftnl_chain_alloc();
  if (nftnl_chain_nlmsg_parse(nlh, ch) == 0 && !strcmp(nftnl_chain_get_str(ch, NFTNL_CHAIN_TABLE), c->table)) {
    napi_value o;
    napi_create_object(c->env, &o);
    set_str(c->env, o, "name", nftnl_chain_get_str(ch, NFTNL_CHAIN_NAME));
    if (nftnl_chain_is_set(ch, NFTNL_CHAIN_HOOKNUM)) {
      set_num(c->env, o, "hook", nftnl_chain_get_u32(ch, NFTNL_CHAIN_HOOKNUM));
      set_num(c->env, o, "priority", nftnl_chain_get_s32(ch, NFTNL_CHAIN_PRIO));
      set_str(c->env, o, "type", nftnl_chain_get_str(ch, NFTNL_CHAIN_TYPE));
      if (nftnl_chain_is_set(ch, NFTNL_CHAIN_POLICY)) set_num(c->env, o, "policy", nftnl_chain_get_u32(ch, NFTNL_CHAIN_POLICY));
    }
    uint32_t len = 0;
    const void *ud = nftnl_chain_get_data(ch, NFTNL_CHAIN_USERDATA, &len);
    if (ud) {
      const char *comment = NULL;
      nftnl_udata_parse(ud, len, chain_comment_cb, &comment);
      if (comment) set_str(c->env, o, "comment", comment);
    }
    push(c, o);
  }
  nftnl_chain_free(ch);
  return MNL_CB_OK;
}

static int rule_cb(const struct nlmsghdr *nlh, void *data) {
  struct dump_ctx *c = data;
  struct nftnl_rule *r = nftnl_rule_alloc();
  if (nftnl_rule_nlmsg_parse(nlh, r) == 0 && !strcmp(nftnl_rule_get_str(r, NFTNL_RULE_TABLE), c->table)) {
    napi_value o;
    napi_create_object(c->env, &o);
    set_str(c->env, o, "chain", nftnl_rule_get_str(r, NFTNL_RULE_CHAIN));
    set_num(c->env, o, "handle", (double)nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE));
    push(c, o);
  }
  nftnl_rule_free(r);
  return MNL_CB_OK;
}

static int set_cb(const struct nlmsghdr *nlh, void *data) {
  struct dump_ctx *c = data;
  struct nftnl_set *s = nftnl_set_alloc();
  if (nftnl_set_nlmsg_parse(nlh, s) == 0 && !strcmp(nftnl_set_get_str(s, NFTNL_SET_TABLE), c->table)) {
    napi_value o;
    napi_create_object(c->env, &o);
    set_str(c->env, o, "name", nftnl_set_get_str(s, NFTNL_SET_NAME));
    set_num(c->env, o, "keyLen", nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN));
    set_num(c->env, o, "dataLen", nftnl_set_is_set(s, NFTNL_SET_DATA_LEN) ? nftnl_set_get_u32(s, NFTNL_SET_DATA_LEN) : 0);
    set_num(c->env, o, "flags", nftnl_set_is_set(s, NFTNL_SET_FLAGS) ? nftnl_set_get_u32(s, NFTNL_SET_FLAGS) : 0);
    push(c, o);
  }
  nftnl_set_free(s);
  return MNL_CB_OK;
}

static int comment_cb(const struct nftnl_udata *attr, void *data) {
  if (nftnl_udata_type(attr) == NFTNL_UDATA_SET_ELEM_COMMENT) *(const char **)data = nftnl_udata_get(attr);
  return 0;
}

// Elements of one set, packed as commit takes them.
struct elem_acc {
  char *keys, *data;
  size_t nkeys, ndata, cap_keys, cap_data;
  uint32_t count, key_len, data_len;
  napi_value comments;
};

static int append(char **buf, size_t *len, size_t *cap, const void *p, size_t n) {
  if (*len + n > *cap) {
    size_t c = *cap ? *cap * 2 : 65536;
    while (c < *len + n) c *= 2;
    char *q = realloc(*buf, c);
    if (!q) return -1;
    *buf = q;
    *cap = c;
  }
  memcpy(*buf + *len, p, n);
  *len += n;
  return 0;
}

static int elem_cb(const struct nlmsghdr *nlh, void *data) {
  struct dump_ctx *c = data;
  struct elem_acc *acc = c->acc;
  struct nftnl_set *s = nftnl_set_alloc();
  if (nftnl_set_elems_nlmsg_parse(nlh, s) == 0) {
    struct nftnl_set_elems_iter *it = nftnl_set_elems_iter_create(s);
    struct nftnl_set_elem *e;
    while ((e = nftnl_set_elems_iter_next(it))) {  // returns the current element, then advances
      uint32_t len = 0;
      const void *p = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
      if (!p || len != acc->key_len) continue;
      if (append(&acc->keys, &acc->nkeys, &acc->cap_keys, p, len) < 0) c->failed = 1;
      if (acc->data_len) {
        static const char zero[64];
        p = nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &len);
        if (!p || len != acc->data_len) p = zero, len = acc->data_len;
        if (append(&acc->data, &acc->ndata, &acc->cap_data, p, len) < 0) c->failed = 1;
      }
      p = nftnl_set_elem_get(e, NFTNL_SET_ELEM_USERDATA, &len);
      if (p) {
        const char *comment = NULL;
        nftnl_udata_parse(p, len, comment_cb, &comment);
        if (comment) {
          napi_value v;
          napi_create_string_utf8(c->env, comment, NAPI_AUTO_LENGTH, &v);
          napi_set_element(c->env, acc->comments, acc->count, v);
        }
      }
      acc->count++;
    }
    nftnl_set_elems_iter_destroy(it);
  }
  nftnl_set_free(s);
  return MNL_CB_OK;
}

static napi_value dump_list(napi_env env, struct handle *h, uint16_t family, const char *table, int cmd, const char *set, mnl_cb_t cb, int *err, struct elem_acc *acc) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct dump_ctx c = {.env = env, .table = table, .acc = acc};
  napi_create_array(env, &c.list);
  struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, cmd, family, NLM_F_DUMP, h->seq++);
  if (cmd == NFT_MSG_GETSETELEM) {
    struct nftnl_set *s = nftnl_set_alloc();
    nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
    nftnl_set_set_str(s, NFTNL_SET_NAME, set);
    nftnl_set_elems_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
  } else if (cmd != NFT_MSG_GETTABLE) {
    // Filter by table in the kernel where it can (chains, rules, sets of one table).
    struct nftnl_table *t = nftnl_table_alloc();
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, table);
    nftnl_table_nlmsg_build_payload(nlh, t);
    nftnl_table_free(t);
  }
  int rc = run_dump(h, nlh, cb, &c);
  *err = rc < 0 ? -rc : 0;
  if (cmd == NFT_MSG_GETTABLE) {
    napi_value v;
    napi_get_boolean(env, c.count > 0, &v);
    return v;
  }
  return c.list;
}

// The arguments every read of one table takes: (handle, family, table).
struct table_args {
  struct handle *h;
  int32_t family;
  char table[256];
};

// Parses (handle, family, table) into `a`; false with a JS exception pending when they are missing or wrong.
static bool table_args(napi_env env, napi_callback_info info, const char *usage, struct table_args *a) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < 3) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  a->h = get_handle(env, argv[0]);
  if (!a->h) return false;
  if (napi_get_value_int32(env, argv[1], &a->family) != napi_ok) {
    napi_throw_type_error(env, NULL, "family must be a number");
    return false;
  }
  if (napi_get_value_string_utf8(env, argv[2], a->table, sizeof a->table, NULL) != napi_ok) {
    napi_throw_type_error(env, NULL, "table must be a string");
    return false;
  }
  return true;
}

static napi_value js_dump(napi_env env, napi_callback_info info) {
  struct table_args a;
  if (!table_args(env, info, "dump(handle, family, table)", &a)) return NULL;
  struct handle *h = a.h;
  int32_t family = a.family;
  const char *table = a.table;

  int err = 0;
  napi_value exists = dump_list(env, h, family, table, NFT_MSG_GETTABLE, NULL, table_cb, &err, NULL);
  if (err) return throw_errno(env, err, -1, "listing tables");
  bool present;
  napi_get_value_bool(env, exists, &present);
  napi_value out;
  if (!present) {
    napi_get_null(env, &out);
    return out;
  }
  napi_create_object(env, &out);
  napi_value chains = dump_list(env, h, family, table, NFT_MSG_GETCHAIN, NULL, chain_cb, &err, NULL);
  if (err) return throw_errno(env, err, -1, "listing chains");
  napi_set_named_property(env, out, "chains", chains);
  napi_value rules = dump_list(env, h, family, table, NFT_MSG_GETRULE, NULL, rule_cb, &err, NULL);
  if (err) return throw_errno(env, err, -1, "listing rules");
  napi_set_named_property(env, out, "rules", rules);
  napi_value sets = dump_list(env, h, family, table, NFT_MSG_GETSET, NULL, set_cb, &err, NULL);
  if (err) return throw_errno(env, err, -1, "listing sets");
  uint32_t nsets;
  napi_get_array_length(env, sets, &nsets);
  for (uint32_t i = 0; i < nsets; i++) {
    napi_value s, name;
    napi_get_element(env, sets, i, &s);
    napi_get_named_property(env, s, "name", &name);
    char set[256];
    napi_get_value_string_utf8(env, name, set, sizeof set, NULL);
    napi_value v;
    struct elem_acc acc = {0};
    napi_get_named_property(env, s, "keyLen", &v);
    napi_get_value_uint32(env, v, &acc.key_len);
    napi_get_named_property(env, s, "dataLen", &v);
    napi_get_value_uint32(env, v, &acc.data_len);
    napi_create_array(env, &acc.comments);
    dump_list(env, h, family, table, NFT_MSG_GETSETELEM, set, elem_cb, &err, &acc);
    if (!err) {
      set_buf(env, s, "keys", acc.keys ? acc.keys : "", acc.nkeys);
      set_buf(env, s, "data", acc.data ? acc.data : "", acc.ndata);
      set_num(env, s, "count", acc.count);
      napi_set_named_property(env, s, "comments", acc.comments);
    }
    free(acc.keys);
    free(acc.data);
    if (err) return throw_errno(env, err, -1, "listing set elements");
  }
  napi_set_named_property(env, out, "sets", sets);
  return out;
}

// Whether a table exists, without reading its contents.
static napi_value js_table_exists(napi_env env, napi_callback_info info) {
  struct table_args a;
  if (!table_args(env, info, "tableExists(handle, family, table)", &a)) return NULL;
  int err = 0;
  napi_value exists = dump_list(env, a.h, a.family, a.table, NFT_MSG_GETTABLE, NULL, table_cb, &err, NULL);
  if (err) return throw_errno(env, err, -1, "listing tables");
  return exists;
}

// Milliseconds the last commit spent between sending the batch and the kernel's answer.
static napi_value js_last_kernel_ms(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct handle *h = get_handle(env, argv[0]);
  if (!h) return NULL;
  napi_value out;
  napi_create_double(env, (double)h->last_kernel_ns / 1e6, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"commit", NULL, js_commit, NULL, NULL, NULL, napi_default, NULL},
      {"dump", NULL, js_dump, NULL, NULL, NULL, napi_default, NULL},
      {"lastKernelMs", NULL, js_last_kernel_ms, NULL, NULL, NULL, napi_default, NULL},
      {"tableExists", NULL, js_table_exists, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
