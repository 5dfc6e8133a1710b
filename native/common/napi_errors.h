// What the addons under native/ share: turning a failed N-API or system call
// into a JavaScript exception.
#pragma once
#include <stdio.h>
#include <string.h>

#include <node_api.h>

// Any N-API call that fails leaves a plain Error pending and returns.
#define CHECK(env, call)                                          \
  do {                                                            \
    if ((call) != napi_ok) {                                      \
      napi_throw_error((env), NULL, "N-API call failed: " #call); \
      return NULL;                                                \
    }                                                             \
  } while (0)

// An Error for a failed system call: message "what: strerror(err)", `errno`,
// and `code` (EEXIST, ENOENT...) when one is given.
static inline napi_value errno_error(napi_env env, int err, const char *code, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value m, e, v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, NULL, m, &e);
  napi_create_int32(env, err, &v);
  napi_set_named_property(env, e, "errno", v);
  if (code) {
    napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, e, "code", v);
  }
  return e;
}
