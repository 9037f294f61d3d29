/* digest.h - the threadpool SHA-256 functions, added to the addon's exports. */
#ifndef STRATA_DIGEST_H
#define STRATA_DIGEST_H

#include <node_api.h>

napi_status register_digest(napi_env env, napi_value exports);

#endif
