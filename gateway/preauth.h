/*
 * preauth: reads a plain-text connection's request head before libwebsockets does, so
 * the token check can wait for auth-svc without stopping the loop (SPEC §3), and still
 * refuse before the upgrade. See preauth.c for how. Loop thread only.
 */
#ifndef GW_PREAUTH_H
#define GW_PREAUTH_H

#include "gw.h"

/* Size of a request head the gateway reads (lws' adoption buffer is 2048 bytes). */
#define GW_PRE_MAX 2048

/* Start: the epoll set lws polls as a raw file. 0, or -1 (then the gateway verifies
 * synchronously, as with TLS). */
int gw_preauth_init(struct gw *gw);
void gw_preauth_destroy(struct gw *gw);

/* Listen on host:port (after gw_preauth_init); reuse_port lets other gateway processes
 * listen on the same port (SO_REUSEPORT: the kernel spreads connections over them).
 * 0, or -1 (logged as listen_failed). */
int gw_preauth_listen(struct gw *gw, const char *host, int port, int reuse_port);

/* HTTP_CONFIRM_UPGRADE: move the verdict reached for this connection into *out.
 * 1 when there was one. */
int gw_preauth_claim(struct gw *gw, struct lws *wsi, struct gw_conn *out);

/* auth.verify answered (reply) or timed out (NULL) for pre. */
struct gw_pre;
void gw_preauth_on_verdict(struct gw *gw, struct gw_pre *pre, const Sb__Envelope *reply);

/* Parsers of the untrusted request head (pure; fuzzed by tests/fuzz/fuzz_head.c).
 * gw_preauth_header: the value of header `name` (case-insensitive) in head[0..len),
 * trimmed, copied NUL-terminated into out (truncated to size - 1); its length, 0 when
 * absent. gw_preauth_query_token: the percent-decoded value of token= in a query string
 * (without the '?'), NUL-terminated in out; its length, 0 when absent or too long. */
size_t gw_preauth_header(const char *head, size_t len, const char *name, char *out, size_t size);
size_t gw_preauth_query_token(const char *q, size_t qlen, char *out, size_t size);

/* The raw protocol's callback (the epoll set's readiness). */
int gw_preauth_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len);

#endif
