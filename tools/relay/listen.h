/*
 * listen: a listening socket several processes can share (SO_REUSEPORT), for lws
 * 4.1, whose own LWS_SERVER_OPTION_ALLOW_LISTEN_SHARE sets SO_REUSEPORT only when the
 * context has more than one service thread (never, in Debian's single-thread build):
 * a second process then fails to bind. So the context is created without a listener
 * (CONTEXT_PORT_NO_LISTEN_SERVER), this module creates the socket itself, watches it
 * as an lws "raw file" descriptor, accepts in its callback and hands each connection
 * to lws with lws_adopt_socket_vhost(), which serves it exactly as if lws had
 * accepted it (HTTP, then the WebSocket upgrade).
 */
#ifndef RELAY_LISTEN_H
#define RELAY_LISTEN_H

#include <libwebsockets.h>

/* The protocol entry for the listener; add it to the context's protocol list. */
#define RELAY_LISTEN_PROTOCOL "relay-listen"
int relay_listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len);

/* Bind HOST:PORT with SO_REUSEADDR and SO_REUSEPORT, listen, and watch it on the
 * context's default vhost. Returns 0, or -1 after logging why. Loop thread. */
int relay_listen_shared(struct lws_context *ctx, const char *host, int port);

#endif
