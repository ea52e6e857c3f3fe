/*
 * ws: the libwebsockets protocol callback, the gateway's only entry point from
 * lws. It dispatches: HTTP endpoints, the pre-upgrade check, frames, writes, closes
 * and the hand-off wake-up. Loop thread.
 */
#ifndef GW_WS_H
#define GW_WS_H

#include "gw.h"

/* Start the watch for bus reconnections: after one, every socket replays its backlog
 * from the last id it has, since live deliveries may have been lost meanwhile. */
void gw_ws_watch_reconnects(struct gw *gw);

int gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

/* Begin a graceful drain (SIGTERM): refuse new sockets, close idle ones with 1001,
 * let in-flight sends be acknowledged, stop at --drain-timeout-ms at the latest. */
void gw_ws_begin_drain(struct gw *gw);

#endif
