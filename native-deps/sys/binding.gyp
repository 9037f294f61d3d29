{
  "targets": [
    {
      "target_name": "strata_sys",
      "sources": ["strata_sys.c", "file_writer.c", "digest.c", "tree_summary.c", "read_file.c"],
      "libraries": ["-lpthread"],
      "defines": ["_GNU_SOURCE", "_FILE_OFFSET_BITS=64", "NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
