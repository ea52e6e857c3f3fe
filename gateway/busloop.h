/*
 * busloop: the gateway's NATS socket, read and written on the loop thread.
 *
 * The socket's epoll set (common/sb_busio.h) is one more raw file that lws polls, so a
 * publish made while handling a frame leaves on the loop's next turn with every other
 * publish of that turn, and nothing waits for libnats' flusher (1 ms per hop) or
 * crosses its reader thread. Replies to the gateway's requests are taken off their
 * synchronous subscription right after the read (gw_handoff_poll_replies); deliveries
 * to the per-user subscriptions still arrive through the hand-off (handoff.h) from
 * libnats' delivery threads.
 */
#ifndef GW_BUSLOOP_H
#define GW_BUSLOOP_H

#include "gw.h"

/* Before the bus connects: the epoll set. 0, or -1. */
int gw_busloop_create(struct gw *gw);

/* After the lws context exists: lws polls the set. 0, or -1. */
int gw_busloop_attach(struct gw *gw);

/* On the loop, once it runs: once a second, look at the bus socket whether or not it
 * woke the loop (sb_busio_unstall; replies left on the inbox). Counted as
 * sb_gateway_bus_stalls_total and logged: it should find nothing. */
void gw_busloop_start_checks(struct gw *gw);

/* The loop has stopped: a thread takes the socket over, so the last publishes, the
 * flush and the close still happen. */
void gw_busloop_detach(struct gw *gw);

/* After the bus is destroyed. */
void gw_busloop_destroy(struct gw *gw);

/* Beyond this many bytes waiting in libnats' buffer, NATS is not reading: gw_bus_up is 0
 * until the buffer is down to an eighth of it (checked once a second). */
#define GW_BUS_BACKLOG_MAX (8 * 1024 * 1024)

/* Loop thread: 1 when the loop may call into the bus connection (publish, subscribe,
 * unsubscribe, statistics) without waiting, and NATS reads what it is sent. 0 from a disconnect
 * until the reconnect is done: libnats' reconnect thread then holds the connection's lock through
 * each connect attempt (up to 2 s against a server that accepts and does not answer), and the loop
 * would stop serving every socket behind it. Those callers fail, retry or defer
 * instead (requests.c, receipts.c, users.c). From libnats' event-loop callbacks
 * (sb_busio_up, set before the reconnect thread starts) and the reconnected callback;
 * with TLS, where libnats' own threads run the socket, from the callbacks only. */
int gw_bus_up(struct gw *gw);

/* "bus_buffered=B bus_in=N bus_out=M bus_reconnects=R" for a warning about an unanswered
 * request: whether the publishes left (B stays 0, out grows) and anything came back;
 * "bus_up=0 bus_reconnects=R" while the bus is down (gw_bus_up). */
void gw_busloop_describe(struct gw *gw, char *buf, size_t size);

/* The raw protocol's callback (the set's readiness). */
int gw_busloop_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len);

#endif
