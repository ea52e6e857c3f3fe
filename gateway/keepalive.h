/*
 * keepalive: pings and idle timeouts for every WebSocket, in one sweep a second.
 *
 * libwebsockets 4.1 can do this per socket (retry_and_idle_policy), but it re-arms a
 * timer in one sorted list on every frame a socket receives: O(sockets) per frame,
 * which took 80 % of a gateway's CPU with 16,000 idle sockets. Here a socket only
 * records when it last heard from its peer (gw_keepalive_heard); the sweep pings those
 * silent for --ping-interval and drops those silent for --idle-timeout (to within the
 * sweep's second).
 * Loop thread only.
 */
#ifndef GW_KEEPALIVE_H
#define GW_KEEPALIVE_H

#include "gw.h"
#include "sb_util.h"

/* Start the sweep (once, after the context exists). */
void gw_keepalive_start(struct gw *gw);

/* Stop it (shutdown). */
void gw_keepalive_stop(struct gw *gw);

/* The peer sent something (a frame or a PONG) on c. */
static inline void gw_keepalive_heard(struct gw_conn *c)
{
	c->heard_ms = sb_mono_ms();
}

/* SERVER_WRITEABLE: write the PING owed to c, if any. Returns 1 when a PING was
 * written (that was this callback's one write), 0 when none was owed, -1 on error. */
int gw_keepalive_write_ping(struct gw_conn *c);

#endif
