// An nf_tables event monitor (what `nft monitor` reads): a NETLINK_NETFILTER
// socket joined to one multicast group and polled on Node's own event loop.
//
// Why not a generic netlink binding: when a burst overflows the socket's
// receive buffer the kernel drops notifications and marks the socket with
// ENOBUFS, which poll(2) reports as POLLERR. That is an expected event here
// (a kube-proxy rewriting 10,000 rules), so it is reported to JavaScript as
// "lost" and reading goes on; nothing in this file can throw across libuv.
//
// Exports (registered by nftables_batch.c):
//   monitorOpen(group, rcvbuf, callback) -> handle   in the caller's network namespace
//     callback('datagrams', Buffer[])  notifications read in one wake, in the kernel's order
//     callback('lost', code)           notifications were dropped (ENOBUFS) or one was truncated (EMSGSIZE);
//                                      said once the backlog is read, so a check made then sees every dropped change
//     callback('failed', code)         the socket failed otherwise and is closed
//   monitorUnref(handle)               the socket alone does not keep the process alive
//   monitorClose(handle)               idempotent

#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>

#include <node_api.h>
#include <uv.h>

#include "napi_errors.h"
#include "nf_monitor.h"

// A notification is one netlink message of at most a page or two; a larger
// one arrives truncated and is reported as lost rather than misread.
#define DATAGRAM_MAX (128 * 1024)
// Datagrams handed to JavaScript per wake: the loop stays responsive in a storm.
#define READS_PER_WAKE 256

struct monitor {
  uv_poll_t poll;
  int fd;
  bool polling;
  int lost;        // why notifications were lost, reported once the socket's queue is empty
  bool closing;    // uv_close called; `poll` is freed by on_closed
  bool finalized;  // the JavaScript handle is gone; on_closed frees
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  char *buf;
};

static void on_closed(uv_handle_t *handle) {
  struct monitor *m = handle->data;
  m->closing = false;
  if (m->finalized) free(m);
}

static void shut(struct monitor *m) {
  if (m->fd < 0) return;
  uv_poll_stop(&m->poll);
  m->polling = false;
  m->closing = true;
  uv_close((uv_handle_t *)&m->poll, on_closed);
  close(m->fd);
  m->fd = -1;
  free(m->buf);
  m->buf = NULL;
  if (m->callback) napi_delete_reference(m->env, m->callback);
  m->callback = NULL;
  if (m->async) napi_async_destroy(m->env, m->async);
  m->async = NULL;
}

static void finalize_monitor(napi_env env, void *data, void *hint) {
  struct monitor *m = data;
  m->finalized = true;
  shut(m);
  if (!m->closing) free(m);
}

// Calls the JavaScript callback as libuv's own callbacks do: a throw becomes
// the process's uncaught exception, never a C++ exception or an abort.
static void deliver(struct monitor *m, const char *kind, napi_value payload) {
  napi_env env = m->env;
  napi_value fn, recv, argv[2], ignored;
  if (!m->callback || napi_get_reference_value(env, m->callback, &fn) != napi_ok || !fn) return;
  napi_get_global(env, &recv);
  napi_create_string_utf8(env, kind, NAPI_AUTO_LENGTH, &argv[0]);
  argv[1] = payload;
  if (napi_make_callback(env, m->async, recv, fn, 2, argv, &ignored) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
}

static void deliver_code(struct monitor *m, const char *kind, int err) {
  napi_value code;
  napi_create_string_utf8(m->env, uv_err_name(-err), NAPI_AUTO_LENGTH, &code);
  deliver(m, kind, code);
}

static int error_of(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  // Reading SO_ERROR also clears it, which ends the POLLERR condition.
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
  return err;
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  struct monitor *m = handle->data;
  if (m->fd < 0) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(m->env, &scope) != napi_ok) return;

  if (status < 0) {
    // libuv stops the handle on POLLERR (reported as UV_EBADF); the socket's
    // pending error says why. ENOBUFS: dropped notifications, keep reading.
    int err = error_of(m->fd);
    if (err == ENOBUFS || err == 0) {
      if (err) m->lost = ENOBUFS;
      m->polling = uv_poll_start(&m->poll, UV_READABLE, on_poll) == 0;
      if (!m->polling) {
        deliver_code(m, "failed", EBADF);
        shut(m);
      }
    } else {
      deliver_code(m, "failed", err);
      shut(m);
    }
    napi_close_handle_scope(m->env, scope);
    return;
  }

  napi_value list;
  napi_create_array(m->env, &list);
  uint32_t count = 0;
  int lost = 0, failed = 0;
  while (count < READS_PER_WAKE) {
    ssize_t n = recv(m->fd, m->buf, DATAGRAM_MAX, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        // The queue is empty: the kernel delivers again (an overflowed netlink
        // socket drops everything until its queue has been read empty).
        lost = m->lost;
        m->lost = 0;
        break;
      }
      if (errno == ENOBUFS) {
        m->lost = ENOBUFS;
        continue;
      }
      failed = errno;
      break;
    }
    if (n > DATAGRAM_MAX) {
      m->lost = m->lost ? m->lost : EMSGSIZE;
      continue;
    }
    napi_value b;
    if (napi_create_buffer_copy(m->env, (size_t)n, m->buf, NULL, &b) != napi_ok) break;
    napi_set_element(m->env, list, count++, b);
  }
  if (count > 0) deliver(m, "datagrams", list);
  if (lost && m->fd >= 0) deliver_code(m, "lost", lost);
  if (failed && m->fd >= 0) {
    deliver_code(m, "failed", failed);
    shut(m);
  }
  napi_close_handle_scope(m->env, scope);
}

static struct monitor *monitor_of(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "expected a monitor handle");
    return NULL;
  }
  return p;
}

static napi_value throw_monitor(napi_env env, int err, const char *what) {
  char context[96];
  snprintf(context, sizeof context, "nf_tables monitor: %s", what);
  napi_throw(env, errno_error(env, err, uv_err_name(-err), context));
  return NULL;
}

napi_value nf_monitor_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint32_t group = 0, rcvbuf = 0;
  napi_valuetype t = napi_undefined;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_uint32(env, argv[0], &group) != napi_ok || napi_get_value_uint32(env, argv[1], &rcvbuf) != napi_ok ||
      napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, NULL, "monitorOpen(group: number, rcvbuf: number, callback: function)");
    return NULL;
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_monitor(env, EINVAL, "no event loop");

  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
  if (fd < 0) return throw_monitor(env, errno, "socket");
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  int size = (int)rcvbuf;
  // SO_RCVBUFFORCE passes net.core.rmem_max (the agent has CAP_NET_ADMIN); SO_RCVBUF is capped by it.
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) < 0) ||
      setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0) {
    int err = errno;
    close(fd);
    return throw_monitor(env, err, "socket setup");
  }

  struct monitor *m = calloc(1, sizeof *m);
  char *buf = malloc(DATAGRAM_MAX);
  if (!m || !buf) {
    free(m);
    free(buf);
    close(fd);
    return throw_monitor(env, ENOMEM, "allocation");
  }
  m->fd = fd;
  m->env = env;
  m->buf = buf;
  m->poll.data = m;
  napi_value name, handle;
  napi_create_string_utf8(env, "clusterset-proxy:nf_tables-monitor", NAPI_AUTO_LENGTH, &name);
  int err = uv_poll_init(loop, &m->poll, fd);
  if (err) {
    close(fd);
    free(buf);
    free(m);
    return throw_monitor(env, -err, "uv_poll_init");
  }
  if (napi_create_reference(env, argv[2], 1, &m->callback) != napi_ok || napi_async_init(env, NULL, name, &m->async) != napi_ok ||
      napi_create_external(env, m, finalize_monitor, NULL, &handle) != napi_ok) {
    m->finalized = true;
    shut(m);
    return throw_monitor(env, ENOMEM, "handle");
  }
  err = uv_poll_start(&m->poll, UV_READABLE, on_poll);
  if (err) {
    shut(m);
    return throw_monitor(env, -err, "uv_poll_start");
  }
  m->polling = true;
  return handle;
}

napi_value nf_monitor_unref(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  struct monitor *m = monitor_of(env, argv[0]);
  if (m && m->fd >= 0) uv_unref((uv_handle_t *)&m->poll);
  return NULL;
}

napi_value nf_monitor_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  struct monitor *m = monitor_of(env, argv[0]);
  if (m) shut(m);
  return NULL;
}
