{
  "targets": [
    {
      "target_name": "xtables_legacy",
      "include_dirs": ["../common"],
      "sources": ["xtables_legacy.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
