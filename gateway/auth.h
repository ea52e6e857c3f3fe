/*
 * auth: who may open a socket. Runs in LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION, before
 * the upgrade: the Origin allow-list, then the token from ?token=, verified by
 * auth-svc on auth.verify. Also closes sockets whose token is revoked (auth.revoked).
 *
 * Plain-text listeners verify asynchronously (preauth.c reads the request before lws
 * does). libwebsockets 4.1 gives no way to suspend a handshake, so with TLS terminated
 * by the gateway the verify request is the one bus call the loop waits for: bounded by
 * --auth-timeout-ms, and when auth-svc does not answer the gateway refuses instantly
 * (503) for a second instead of waiting again.
 */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include "gw.h"

/* Decide on an upgrade request. Returns 0 to accept (c->user_id, c->user_name,
 * c->token_hash, c->kind filled) or the HTTP status to refuse with (403 / 404 / 503). */
int gw_auth_check(struct gw *gw, struct lws *wsi, struct gw_conn *c);

/* The checks that need no bus: draining, origin, token shape, bus and auth-svc up.
 * origin may be NULL (no header). 0 to go on and ask auth-svc, else the HTTP status. */
int gw_auth_precheck(struct gw *gw, const char *path, const char *origin, const char *token,
                     size_t tlen);

/* Turn auth-svc's reply (NULL: no answer in time) into a verdict: 0 with c's user, kind
 * and token hash filled (c->user_name allocated), or the HTTP status to refuse with. */
int gw_auth_verdict(struct gw *gw, const Sb__Envelope *reply, enum gw_kind kind, const char *path,
                    struct gw_conn *c);

/* An auth.revoked message from the hand-off: close the affected sockets. */
void gw_auth_on_revoked(struct gw *gw, natsMsg *msg);

#define GW_MAX_TOKEN 2048

/* 1 when t looks like a JWT (three base64url segments): worth asking auth-svc. */
int gw_auth_jwt_shaped(const char *t, size_t len);

/* Endpoint of a request path: GW_CHAT, GW_NOTIFY or 0. */
int gw_auth_endpoint(const char *path);

/* 1 when origin (may be NULL) is allowed by the comma list (empty list: all). */
int gw_auth_origin_allowed(const char *list, const char *origin);

#endif
