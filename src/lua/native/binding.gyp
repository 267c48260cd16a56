{
  "targets": [
    {
      "target_name": "meshext_luajit",
      "sources": ["luajit.c"],
      "cflags": ["-O2", "-Wall", "-Wno-unused-parameter", "<!@(pkg-config --cflags luajit)"],
      "libraries": ["<!@(pkg-config --libs luajit)"]
    }
  ]
}
