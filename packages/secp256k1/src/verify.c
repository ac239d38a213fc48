/*
 * secp256k1_verify.node — BIP-340 Schnorr verification for Nostr events.
 *
 * A deliberately tiny N-API (C, node_api.h) wrapper around the system
 * libsecp256k1 (schnorrsig + extrakeys modules).
 *
 *   verify(msg32, pub32, sig64)  -> boolean
 *   verifyBatch(buf, n)          -> Uint8Array(n) of 1/0
 *       buf holds n records of 128 bytes: 32 msg (event id) | 32 x-only
 *       pubkey | 64 signature.
 *   version                      -> string (addon ABI version of this file)
 *
 * One secp256k1 context is created when the module is initialised (per Node
 * environment, i.e. per main thread / worker thread) and destroyed with it.
 * Verification only reads the context, so sharing it is safe.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <node_api.h>

#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>

#define REC_LEN 128
#define MSG_OFF 0
#define PUB_OFF 32
#define SIG_OFF 64

/* libsecp256k1 >= 0.2.0 has SECP256K1_CONTEXT_NONE (VERIFY is deprecated);
 * older releases need SECP256K1_CONTEXT_VERIFY for verification. */
#ifdef SECP256K1_CONTEXT_NONE
#define CTX_FLAGS SECP256K1_CONTEXT_NONE
#else
#define CTX_FLAGS SECP256K1_CONTEXT_VERIFY
#endif

#define CHECK(env, call)                                                     \
  do {                                                                       \
    if ((call) != napi_ok) {                                                 \
      const napi_extended_error_info *info_ = NULL;                          \
      bool pending_ = false;                                                 \
      napi_get_last_error_info((env), &info_);                               \
      napi_is_exception_pending((env), &pending_);                           \
      if (!pending_)                                                         \
        napi_throw_error((env), NULL,                                        \
                         (info_ && info_->error_message)                     \
                             ? info_->error_message                          \
                             : "secp256k1_verify: N-API call failed");       \
      return NULL;                                                           \
    }                                                                        \
  } while (0)

static int verify_one(const secp256k1_context *ctx, const unsigned char *msg32,
                      const unsigned char *pub32, const unsigned char *sig64) {
  secp256k1_xonly_pubkey pk;
  if (!secp256k1_xonly_pubkey_parse(ctx, &pk, pub32)) return 0;
  return secp256k1_schnorrsig_verify(ctx, sig64, msg32, 32, &pk) == 1;
}

/* Reads a Uint8Array/Buffer argument. Returns 1 on success, 0 (with a pending
 * TypeError) when the value is not a Uint8Array. */
static int get_bytes(napi_env env, napi_value v, const char *name,
                     const unsigned char **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *ptr = NULL;
  size_t length = 0;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) goto bad;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, NULL, NULL) !=
          napi_ok ||
      type != napi_uint8_array)
    goto bad;
  *data = (const unsigned char *)ptr;
  *len = length;
  return 1;
bad:
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", name);
  return 0;
}

static const secp256k1_context *get_ctx(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok || data == NULL) {
    napi_throw_error(env, NULL, "secp256k1_verify: context not initialised");
    return NULL;
  }
  return (const secp256k1_context *)data;
}

/* verify(msg32: Uint8Array, pub32: Uint8Array, sig64: Uint8Array): boolean
 * Wrong lengths yield false; non-Uint8Array arguments throw a TypeError. */
static napi_value js_verify(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  const unsigned char *msg, *pub, *sig;
  size_t msg_len, pub_len, sig_len;
  napi_value result;
  const secp256k1_context *ctx;
  int ok = 0;

  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "verify(msg32, pub32, sig64) expects 3 arguments");
    return NULL;
  }
  if (!get_bytes(env, argv[0], "msg32 must be a Uint8Array", &msg, &msg_len)) return NULL;
  if (!get_bytes(env, argv[1], "pub32 must be a Uint8Array", &pub, &pub_len)) return NULL;
  if (!get_bytes(env, argv[2], "sig64 must be a Uint8Array", &sig, &sig_len)) return NULL;
  if ((ctx = get_ctx(env)) == NULL) return NULL;

  if (msg_len == 32 && pub_len == 32 && sig_len == 64)
    ok = verify_one(ctx, msg, pub, sig);
  CHECK(env, napi_get_boolean(env, ok != 0, &result));
  return result;
}

/* verifyBatch(buf: Uint8Array, n: number): Uint8Array
 * buf must hold at least n * 128 bytes. */
static napi_value js_verify_batch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  const unsigned char *buf;
  size_t buf_len;
  double n_d;
  size_t n, i;
  napi_valuetype vt;
  napi_value out_ab, out;
  void *out_data = NULL;
  unsigned char *res;
  const secp256k1_context *ctx;

  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "verifyBatch(buf, n) expects 2 arguments");
    return NULL;
  }
  if (!get_bytes(env, argv[0], "buf must be a Uint8Array", &buf, &buf_len)) return NULL;
  CHECK(env, napi_typeof(env, argv[1], &vt));
  if (vt != napi_number) {
    napi_throw_type_error(env, NULL, "n must be a number");
    return NULL;
  }
  CHECK(env, napi_get_value_double(env, argv[1], &n_d));
  /* bound check first so the size_t cast below is always defined */
  if (!(n_d >= 0) || n_d > (double)(buf_len / REC_LEN) || n_d != (double)(size_t)n_d) {
    napi_throw_range_error(env, NULL,
                           "n must be a non-negative integer with n * 128 <= buf.length");
    return NULL;
  }
  n = (size_t)n_d;
  if ((ctx = get_ctx(env)) == NULL) return NULL;

  CHECK(env, napi_create_arraybuffer(env, n, &out_data, &out_ab));
  res = (unsigned char *)out_data;
  for (i = 0; i < n; i++) {
    const unsigned char *rec = buf + i * REC_LEN;
    res[i] = (unsigned char)verify_one(ctx, rec + MSG_OFF, rec + PUB_OFF, rec + SIG_OFF);
  }
  CHECK(env, napi_create_typedarray(env, napi_uint8_array, n, out_ab, 0, &out));
  return out;
}

static void destroy_ctx(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  if (data) secp256k1_context_destroy((secp256k1_context *)data);
}

NAPI_MODULE_INIT() {
  napi_value fn, str;
  secp256k1_context *ctx = secp256k1_context_create(CTX_FLAGS);
  if (ctx == NULL) {
    napi_throw_error(env, NULL, "secp256k1_context_create failed");
    return NULL;
  }
  if (napi_set_instance_data(env, ctx, destroy_ctx, NULL) != napi_ok) {
    secp256k1_context_destroy(ctx);
    napi_throw_error(env, NULL, "napi_set_instance_data failed");
    return NULL;
  }

  CHECK(env, napi_create_function(env, "verify", NAPI_AUTO_LENGTH, js_verify, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "verify", fn));
  CHECK(env, napi_create_function(env, "verifyBatch", NAPI_AUTO_LENGTH, js_verify_batch,
                                  NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "verifyBatch", fn));
  CHECK(env, napi_create_string_utf8(env, "1", NAPI_AUTO_LENGTH, &str));
  CHECK(env, napi_set_named_property(env, exports, "version", str));
  return exports;
}
