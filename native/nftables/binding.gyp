{
  "targets": [
    {
      "target_name": "nftables_batch",
      "include_dirs": ["../common"],
      "sources": ["nftables_batch.c", "nf_monitor.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags libnftnl libmnl)"],
      "libraries": ["<!@(pkg-config --libs libnftnl libmnl)"]
    }
  ]
}
