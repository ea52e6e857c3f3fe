/*
 * backlog: the replay a socket gets when it connects (or after a bus reconnect), the
 * same for chat and notification sockets: ask for a page after the last id the socket
 * has (chat.sync.<p> / notify.sync), queue what is newer, ask again while the service
 * says there is more, then release the live deliveries held meanwhile. Loop thread.
 */
#ifndef GW_BACKLOG_H
#define GW_BACKLOG_H

#include "gw.h"

/* Start (or restart) the replay of socket c. */
void gw_backlog_start(struct gw *gw, struct gw_conn *c);

/* The bus is back after a gap: socket c may have missed live deliveries, which another
 * socket of its user (on another gateway) may have had, so they are no longer in the
 * undelivered backlog. It replays everything after the last id this gateway had from
 * the service (chat: from the partition) before the gap (SyncRequest.resync); a replay
 * in flight is followed by another. */
void gw_backlog_after_gap(struct gw *gw, struct gw_conn *c);

/* Any chat id this gateway received from chat-svc (an acknowledgement or a live
 * delivery): chat-svc publishes both in commit order on one connection, so every
 * message of that partition below it that was addressed here arrived before it. */
void gw_backlog_note_chat_id(struct gw *gw, uint64_t id);

/* The same for a notification id (notify-svc publishes from one thread, in id order
 * of what it stores). */
void gw_backlog_note_notify_id(struct gw *gw, uint64_t id);

/* The bus went down: what each service had sent so far bounds what can be missed. */
void gw_backlog_mark_gap(struct gw *gw);

/* One replayed item, rendered (the socket takes its own reference). */
void gw_backlog_queue(struct gw *gw, struct gw_conn *c, struct gw_buf *b);

/* A page was queued: fetch the next one when `more`, else end the replay. */
void gw_backlog_page_done(struct gw *gw, struct gw_conn *c, int more);

/* After a write: fetch the deferred next page once the queue is down to a quarter. */
void gw_backlog_resume(struct gw *gw, struct gw_conn *c);

/* The replay could not be fetched: error frame (chat) and close with 1011, so the client
 * reconnects with its own backoff and the replay is tried again. */
void gw_backlog_failed(struct gw *gw, struct gw_conn *c);

#endif
