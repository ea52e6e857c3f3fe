/*
 * receipts: delivery receipts (chat.delivered.<p>, notify.delivered), batched.
 *
 * A frame handed to the kernel is not yet read: a client that vanishes (a phone out
 * of coverage, a reset connection) loses what sat in the socket buffers, and a
 * receipt sent then would take those messages out of its backlog for good. So a
 * socket's receipts wait until the client answers a PING written after the frames (a
 * probe, "sr" and a sequence number): RFC 6455 clients, browsers included, answer
 * PINGs in order, after reading what came before. A probe goes out a delay after the
 * first frame it covers (GW_PROBE_DELAY_CHAT_MS, GW_PROBE_DELAY_NOTIFY_MS), behind
 * whatever the socket has been sent by then, and one probe at most is on the wire per
 * socket: a busy socket costs a PING and a PONG per delay, not per message.
 * Notification sockets wait longer: a broadcast costs one PONG per socket (about 13 us
 * of a gateway's CPU each, and as much again in the client), so a 5 s wait lets the
 * broadcasts of those 5 s share one and keeps the PONGs out of a broadcast's way; the
 * price is that a client reconnecting within 5 s of a notification may get it again.
 * A socket that closes before its PONG leaves those messages undelivered: they replay
 * on its user's next connect.
 *
 * Confirmed receipts go into one list that a short timer publishes as one Delivered
 * per (kind, user), so a burst costs a few bus messages, not one each. A receipt lost
 * in a crash only means a replay. Loop thread.
 */
#ifndef GW_RECEIPTS_H
#define GW_RECEIPTS_H

#include "gw.h"

void gw_receipts_add(struct gw *gw, enum gw_kind kind, uint64_t user_id, uint64_t id);

/* A frame carrying message or notification `id` went to the kernel for c: its receipt
 * waits for a probe. */
void gw_receipts_written(struct gw *gw, struct gw_conn *c, uint64_t id);

#define GW_PROBE_DELAY_CHAT_MS   100
#define GW_PROBE_DELAY_NOTIFY_MS 5000
/* A probe whose PONG has not come back by then is sent again (a client may answer only
 * the last of several PINGs: lws' client drops one while its PONG is pending); a PONG to
 * either still counts. */
#define GW_PROBE_RETRY_MS    5000
#define GW_PROBE_FRAME_BYTES 8

/* Before the first delivery (the probe lists). */
void gw_receipts_init(struct gw *gw);
/* Writing raw bytes to c at out: when a probe is owed and c's queue is empty, put one
 * there (GW_PROBE_FRAME_BYTES) and return its length, else 0. After a non-zero return
 * the caller settles the frames written before it (gw_receipts_written), then calls
 * gw_receipts_probe_sent. */
size_t gw_receipts_probe_append(struct gw *gw, struct gw_conn *c, unsigned char *out);
void gw_receipts_probe_sent(struct gw *gw, struct gw_conn *c);

/* SERVER_WRITEABLE with c's queue empty: write the probe owed, if any. Returns 1 when
 * it wrote one, 0 when none was owed, -1 on error. */
int gw_receipts_write_probe(struct gw *gw, struct gw_conn *c);

/* The gateway is draining: probe c now rather than after the delay. */
void gw_receipts_probe_now(struct gw *gw, struct gw_conn *c);

/* Before lws_context_destroy: the timers go (lws frees their list with the context). */
void gw_receipts_stop(struct gw *gw);

/* A PONG came on c (payload in[0..len)). */
void gw_receipts_on_pong(struct gw *gw, struct gw_conn *c, const void *in, size_t len);

/* c is closing: receipts still waiting for their probe are dropped (those messages
 * stay in the backlog and replay on the next connect). */
void gw_receipts_conn_closed(struct gw *gw, struct gw_conn *c);

/* Publish everything pending now (also called at shutdown). */
void gw_receipts_flush(struct gw *gw);

void gw_receipts_destroy(struct gw *gw);

#endif
