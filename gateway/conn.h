/*
 * conn: one client socket's outgoing side. Frames are queued (bounded by
 * --max-queue; a socket that does not read is cut off with 1008 rather than growing
 * the gateway) and written in batches: in SERVER_WRITEABLE, or straight from the loop
 * after a hand-off drain (gw_conn_flush_collected). Loop thread only.
 */
#ifndef GW_CONN_H
#define GW_CONN_H

#include "gw.h"

/* Queued frames leave a socket in one write of at most this many bytes and frames. */
#define GW_WRITE_BATCH_BYTES  (32 * 1024)
#define GW_WRITE_BATCH_FRAMES 64

/* Seconds gw_conn_cut leaves the close frame to get out before the socket is cut. */
#define GW_CLOSE_GRACE_S 2

/* Queue buf (takes a new reference) and ask for a writeable callback. */
void gw_conn_send(struct gw *gw, struct gw_conn *c, struct gw_buf *buf);

/* Render and queue an error frame. */
void gw_conn_send_error(struct gw *gw, struct gw_conn *c, const char *sentence);

/* A delivery (chat_message or notify) for this socket: queued unless the socket already
 * has that id; held back while a backlog replay runs (gw_conn_end_sync releases it). */
void gw_conn_deliver(struct gw *gw, struct gw_conn *c, struct gw_buf *buf);

/* Backlog replay finished: queue held live frames newer than the backlog. */
void gw_conn_end_sync(struct gw *gw, struct gw_conn *c);

/* Close the socket with a WebSocket close code at its next writeable, after its queue. */
void gw_conn_close(struct gw_conn *c, int code, const char *reason);

/* Close it without flushing the queue, and cut it after GW_CLOSE_GRACE_S if even the
 * close frame cannot leave (the peer does not read). */
void gw_conn_cut(struct gw_conn *c, int code, const char *reason);

/* End of a hand-off drain: write the queues of the sockets that got frames during it
 * (gw->flush_batching was set), straight from the loop where lws allows. */
void gw_conn_flush_collected(struct gw *gw);

/* A delivery probe is owed on c (receipts.c): write it now when nothing is queued,
 * else behind the queue. */
void gw_conn_send_probe(struct gw *gw, struct gw_conn *c);

/* Write the next queued frame (SERVER_WRITEABLE). Returns -1 to close the socket. */
int gw_conn_writeable(struct gw *gw, struct gw_conn *c);

/* Release everything a closed socket holds (LWS_CALLBACK_CLOSED). */
void gw_conn_release(struct gw *gw, struct gw_conn *c);

#endif
