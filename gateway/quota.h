/*
 * quota: abuse limits that protect other clients on the same gateway.
 *  - a token bucket per socket for chat frames (--rate-limit, --rate-burst): over it the
 *    client gets "rate limit exceeded"; a client that keeps going is closed with 1008;
 *  - a cap on one user's sockets on this gateway (--max-conns-per-user): 429 at upgrade;
 *  - a cap on failed handshakes per client IP per minute (--max-failed-handshakes):
 *    429 before any auth look-up, so a flood of bad tokens costs nothing.
 * Loop thread only.
 */
#ifndef GW_QUOTA_H
#define GW_QUOTA_H

#include "frame.h"
#include "gw.h"

/* 1 when socket c may send one more chat frame now; 0 = refuse (the caller says so),
 * -1 = refuse and close (abuse). */
int gw_quota_take(struct gw *gw, struct gw_conn *c);

/* 1 when this IP has used up its failed handshakes for the current minute. */
int gw_quota_ip_blocked(struct gw *gw, const char *ip);

/* Count a failed handshake from ip. */
void gw_quota_ip_failed(struct gw *gw, const char *ip);

void gw_quota_destroy(struct gw *gw);

#endif
