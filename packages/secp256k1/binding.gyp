{
  "targets": [
    {
      "target_name": "secp256k1_verify",
      "sources": ["src/verify.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lsecp256k1"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O2"] }
    }
  ]
}
