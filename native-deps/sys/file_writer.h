/* file_writer.h - the file writer's functions, added to the addon's exports. */
#ifndef STRATA_FILE_WRITER_H
#define STRATA_FILE_WRITER_H

#include <node_api.h>

napi_status register_file_writer(napi_env env, napi_value exports);

#endif
