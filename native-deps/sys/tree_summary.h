/* tree_summary.h - treeSummary, a digest of a file tree's lstat, added to the addon's exports. */
#ifndef STRATA_TREE_SUMMARY_H
#define STRATA_TREE_SUMMARY_H

#include <node_api.h>

napi_status register_tree_summary(napi_env env, napi_value exports);

#endif
