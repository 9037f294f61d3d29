/* read_file.h - a small file read whole on the threadpool, added to the addon's exports. */
#ifndef STRATA_READ_FILE_H
#define STRATA_READ_FILE_H

#include <node_api.h>

napi_status register_read_file(napi_env env, napi_value exports);

#endif
