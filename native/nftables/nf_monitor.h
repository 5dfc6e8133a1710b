// The nf_tables event monitor's exports (nf_monitor.c), registered by the addon's init.
#pragma once
#include <node_api.h>

napi_value nf_monitor_open(napi_env env, napi_callback_info info);
napi_value nf_monitor_unref(napi_env env, napi_callback_info info);
napi_value nf_monitor_close(napi_env env, napi_callback_info info);
