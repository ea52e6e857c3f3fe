/*
 * ws: the libwebsockets protocol callback, the gateway's only entry point from
 * lws. It dispatches: HTTP endpoints, the pre-upgrade check, frames, writes, closes
 * and the hand-off wake-up. Loop thread.
 */
#ifndef GW_WS_H
#define GW_WS_H

#include "gw.h"

/* Follow the bus connection: while it is down every socket holds live deliveries, and
 * once it is back every socket replays its backlog from the last id it has (deliveries
 * published meanwhile were lost to NATS). gw_ws_on_bus_state runs on the loop. */
void gw_ws_watch_reconnects(struct gw *gw);
void gw_ws_on_bus_state(struct gw *gw, int up);

int gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

/* Begin a graceful drain (SIGTERM): refuse new sockets, close idle ones with 1001,
 * let in-flight sends be acknowledged, stop at --drain-timeout-ms at the latest. */
void gw_ws_begin_drain(struct gw *gw);

#endif
