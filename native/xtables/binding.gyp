{
  "targets": [
    {
      "target_name": "xtables_legacy",
      "sources": ["xtables_legacy.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
