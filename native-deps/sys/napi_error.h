/* napi_error.h - throwing a plain Error from the addon's functions, shared by its source files. */
#ifndef STRATA_NAPI_ERROR_H
#define STRATA_NAPI_ERROR_H

#include <node_api.h>

/* Throw Error(msg); returns NULL, what an N-API function returns with an exception pending. */
static inline napi_value throw_msg(napi_env env, const char *msg)
{
    napi_throw_error(env, NULL, msg);
    return NULL;
}

#endif
