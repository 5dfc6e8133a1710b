// The legacy (x_tables) IPv4 and IPv6 tables read in-process: the kernel's
// table blob through getsockopt(IPT_SO_GET_INFO / IPT_SO_GET_ENTRIES, and the
// IP6T_ ones), as iptables-legacy and ip6tables-legacy read it, without
// starting a process or printing text. Used to check the
// agent's jumps and chains every second on nodes where iptables-legacy
// announces nothing.
//
// Exports:
//   open(family?: 4 | 6) -> handle         a raw socket of that family (default 4) in the caller's network namespace
//   close(handle)
//   read(handle, table, prefix) -> null | { builtins, chains }
//     null when the table does not exist (it is not instantiated by asking)
//     builtins: { PREROUTING: [{ target?, comment? }], ... } each built-in chain's rules in order, without the policy
//     chains:   { NAME: fingerprint } for each user chain whose name starts with prefix: 16 hex digits over its rules
//               (counters and kernel bookkeeping left out; a jump counts by the name of the chain it reaches)

#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <linux/netfilter.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include <node_api.h>

#include "napi_errors.h"

static const char *HOOKS[NF_INET_NUMHOOKS] = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"};

// An entry of either family: the address part first, then the same fields
// (target_offset, next_offset, counters), its matches and its target.
struct layout {
  int level;
  int get_info, get_entries;
  size_t entry_size;  // the header up to the first match
  size_t ip_size;     // the address part, which a fingerprint covers
  size_t target_offset_at, next_offset_at;
};

static const struct layout IPV4 = {IPPROTO_IP, IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES, sizeof(struct ipt_entry), sizeof(struct ipt_ip),
                                   offsetof(struct ipt_entry, target_offset), offsetof(struct ipt_entry, next_offset)};
static const struct layout IPV6 = {IPPROTO_IPV6, IP6T_SO_GET_INFO, IP6T_SO_GET_ENTRIES, sizeof(struct ip6t_entry), sizeof(struct ip6t_ip6),
                                   offsetof(struct ip6t_entry, target_offset), offsetof(struct ip6t_entry, next_offset)};

// The info and entries requests are the same structures in both families.
_Static_assert(sizeof(struct ipt_getinfo) == sizeof(struct ip6t_getinfo), "getinfo layouts differ");
_Static_assert(sizeof(struct ipt_get_entries) == sizeof(struct ip6t_get_entries), "get_entries layouts differ");

struct handle {
  int fd;
  const struct layout *l;
};

static napi_value throw_errno(napi_env env, int err, const char *what) {
  napi_throw(env, errno_error(env, err, NULL, what));
  return NULL;
}

static void finalize_handle(napi_env env, void *data, void *hint) {
  struct handle *h = data;
  if (h->fd >= 0) close(h->fd);
  free(h);
}

static struct handle *get_handle(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p || ((struct handle *)p)->fd < 0) {
    napi_throw_type_error(env, NULL, "expected an open xtables handle");
    return NULL;
  }
  return p;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t family = 4;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_undefined && (napi_get_value_int32(env, argv[0], &family) != napi_ok || (family != 4 && family != 6))) {
    napi_throw_type_error(env, NULL, "open(family?: 4 | 6)");
    return NULL;
  }
  int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) return throw_errno(env, errno, "opening a raw socket");
  struct handle *h = calloc(1, sizeof *h);
  if (!h) {
    close(fd);
    return throw_errno(env, ENOMEM, "opening a raw socket");
  }
  h->fd = fd;
  h->l = family == 6 ? &IPV6 : &IPV4;
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
  if (h->fd >= 0) close(h->fd);
  h->fd = -1;
  return NULL;
}

// ---- the blob -------------------------------------------------------------

static uint16_t u16_at(const void *e, size_t at) {
  uint16_t v;
  memcpy(&v, (const char *)e + at, sizeof v);
  return v;
}

// An entry's offsets, whichever family's header it has.
struct entry {
  const char *p;
  uint16_t target_offset, next_offset;
};

static struct entry entry_at(const struct layout *l, const void *blob, unsigned int off) {
  const char *p = (const char *)blob + off;
  return (struct entry){p, u16_at(p, l->target_offset_at), u16_at(p, l->next_offset_at)};
}

#define TARGET(e) ((const struct xt_entry_target *)((e).p + (e).target_offset))

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ULL;
  return h;
}

// Chain names by the offset of their first rule (what a jump's verdict holds).
struct chain_at {
  unsigned int offset;
  const char *name;
};

static const char *chain_name_at(const struct chain_at *heads, size_t n, unsigned int offset) {
  for (size_t i = 0; i < n; i++) if (heads[i].offset == offset) return heads[i].name;
  return NULL;
}

static int is_error_target(const struct xt_entry_target *t) {
  return !strcmp(t->u.user.name, XT_ERROR_TARGET);
}

// Where a rule sends packets: a chain's name, a verdict, or a target module's name.
static const char *target_of(struct entry e, const struct chain_at *heads, size_t n) {
  const struct xt_entry_target *t = TARGET(e);
  if (t->u.user.name[0]) return t->u.user.name;
  int verdict = ((const struct xt_standard_target *)t)->verdict;
  if (verdict >= 0) return chain_name_at(heads, n, (unsigned int)verdict);
  switch (verdict) {
    case -NF_ACCEPT - 1: return "ACCEPT";
    case -NF_DROP - 1: return "DROP";
    case XT_RETURN: return "RETURN";
    default: return NULL;
  }
}

static const char *comment_of(const struct layout *l, struct entry e, char *out, size_t size) {
  for (size_t off = l->entry_size; off + sizeof(struct xt_entry_match) <= e.target_offset;) {
    const struct xt_entry_match *m = (const struct xt_entry_match *)(e.p + off);
    if (m->u.match_size < sizeof *m) break;
    if (!strcmp(m->u.user.name, "comment")) {
      size_t n = m->u.match_size - sizeof *m;
      if (n >= size) n = size - 1;
      memcpy(out, m->data, n);
      out[n] = 0;
      out[strnlen(out, n)] = 0;
      return out;
    }
    off += m->u.match_size;
  }
  return NULL;
}

// A rule's fingerprint: what it matches and does, not its counters, not the
// kernel's bookkeeping, and a jump by the name it reaches (offsets move when
// other chains change size).
static uint64_t fingerprint_rule(uint64_t h, const struct layout *l, struct entry e, const struct chain_at *heads, size_t n) {
  h = fnv(h, e.p, l->ip_size);
  h = fnv(h, &e.target_offset, sizeof e.target_offset);
  h = fnv(h, &e.next_offset, sizeof e.next_offset);
  h = fnv(h, e.p + l->entry_size, e.target_offset - l->entry_size);
  const struct xt_entry_target *t = TARGET(e);
  if (!t->u.user.name[0] && ((const struct xt_standard_target *)t)->verdict >= 0) {
    const char *to = target_of(e, heads, n);
    h = fnv(h, "->", 2);
    if (to) h = fnv(h, to, strlen(to));
  } else {
    h = fnv(h, t, e.next_offset - e.target_offset);
  }
  return h;
}

static void set_str(napi_env env, napi_value o, const char *k, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, k, v);
}

static napi_value js_read(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "read(handle, table, prefix)");
    return NULL;
  }
  struct handle *h = get_handle(env, argv[0]);
  if (!h) return NULL;
  char table[XT_TABLE_MAXNAMELEN], prefix[XT_EXTENSION_MAXNAMELEN];
  CHECK(env, napi_get_value_string_utf8(env, argv[1], table, sizeof table, NULL));
  CHECK(env, napi_get_value_string_utf8(env, argv[2], prefix, sizeof prefix, NULL));

  const struct layout *l = h->l;
  struct ipt_getinfo gi;
  struct ipt_get_entries *ge = NULL;
  // The table may be replaced between the two calls (EAGAIN): ask again.
  for (int attempt = 0;; attempt++) {
    memset(&gi, 0, sizeof gi);
    snprintf(gi.name, sizeof gi.name, "%s", table);
    socklen_t len = sizeof gi;
    if (getsockopt(h->fd, l->level, l->get_info, &gi, &len) < 0) {
      napi_value null;
      if (errno == ENOENT) return napi_get_null(env, &null), null;
      return throw_errno(env, errno, "SO_GET_INFO");
    }
    free(ge);
    ge = calloc(1, sizeof *ge + gi.size);
    if (!ge) return throw_errno(env, ENOMEM, "reading the table");
    snprintf(ge->name, sizeof ge->name, "%s", table);
    ge->size = gi.size;
    len = sizeof *ge + gi.size;
    if (getsockopt(h->fd, l->level, l->get_entries, ge, &len) == 0) break;
    int err = errno;
    if (err != EAGAIN || attempt >= 5) {
      free(ge);
      return throw_errno(env, err, "SO_GET_ENTRIES");
    }
  }

  // User chains start after an ERROR entry naming them; built-in ones at their hook's entry.
  size_t cap = 64, n = 0;
  struct chain_at *heads = malloc(cap * sizeof *heads);
  for (int hook = 0; hook < NF_INET_NUMHOOKS; hook++)
    if (gi.valid_hooks & (1u << hook)) heads[n++] = (struct chain_at){gi.hook_entry[hook], HOOKS[hook]};
  for (unsigned int off = 0; off + l->entry_size <= gi.size;) {
    struct entry e = entry_at(l, ge->entrytable, off);
    if (e.next_offset < l->entry_size) break;
    if (is_error_target(TARGET(e)) && off + e.next_offset < gi.size) {
      if (n == cap) heads = realloc(heads, (cap *= 2) * sizeof *heads);
      heads[n++] = (struct chain_at){off + e.next_offset, (const char *)TARGET(e)->data};
    }
    off += e.next_offset;
  }

  napi_value out, builtins, chains;
  napi_create_object(env, &out);
  napi_create_object(env, &builtins);
  napi_create_object(env, &chains);
  for (int hook = 0; hook < NF_INET_NUMHOOKS; hook++) {
    if (!(gi.valid_hooks & (1u << hook))) continue;
    napi_value list;
    napi_create_array(env, &list);
    uint32_t count = 0;
    // The rules up to the underflow, the chain's policy.
    for (unsigned int off = gi.hook_entry[hook]; off < gi.underflow[hook] && off < gi.size;) {
      struct entry e = entry_at(l, ge->entrytable, off);
      if (e.next_offset < l->entry_size) break;
      napi_value o;
      napi_create_object(env, &o);
      const char *to = target_of(e, heads, n);
      char comment[257];
      if (to) set_str(env, o, "target", to);
      if (comment_of(l, e, comment, sizeof comment)) set_str(env, o, "comment", comment);
      napi_set_element(env, list, count++, o);
      off += e.next_offset;
    }
    napi_set_named_property(env, builtins, HOOKS[hook], list);
  }
  const char *current = NULL;
  uint64_t hash = 0;
  for (unsigned int off = 0; off + l->entry_size <= gi.size;) {
    struct entry e = entry_at(l, ge->entrytable, off);
    if (e.next_offset < l->entry_size) break;
    if (is_error_target(TARGET(e))) {
      if (current) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)hash);
        set_str(env, chains, current, hex);
      }
      const char *name = (const char *)TARGET(e)->data;
      current = prefix[0] && !strncmp(name, prefix, strlen(prefix)) ? name : NULL;
      hash = 0xcbf29ce484222325ULL;
    } else if (current) {
      hash = fingerprint_rule(hash, l, e, heads, n);
    }
    off += e.next_offset;
  }
  napi_set_named_property(env, out, "builtins", builtins);
  napi_set_named_property(env, out, "chains", chains);
  free(heads);
  free(ge);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"read", NULL, js_read, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
