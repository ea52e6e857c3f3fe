/*
 * handoff: the path from libnats threads to the loop thread (STYLE "Threads"):
 * a locked list plus lws_cancel_service(); the loop drains it whole in
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED (wake-ups coalesce). Replies to the gateway's
 * requests skip it when the loop reads the bus socket itself: they wait on a
 * synchronous subscription that the loop empties after each read.
 */
#ifndef GW_HANDOFF_H
#define GW_HANDOFF_H

#include "gw.h"

int gw_handoff_init(struct gw *gw);
void gw_handoff_destroy(struct gw *gw);

/* After an asynchronous subscription is made: it counts until libnats says its delivery
 * thread has returned from the handler for the last time (its on-complete callback). */
void gw_handoff_track(struct gw *gw, natsSubscription *sub);

/* Shutdown, after the bus is closed: wait (at most timeout_ms) until no tracked
 * subscription can push any more. 0, or -1 on timeout (then leave the list alone). */
int gw_handoff_wait_untracked(struct gw *gw, int timeout_ms);

/* Any thread. Takes ownership of msg (destroyed after dispatch, or now on failure). */
void gw_handoff_push(struct gw *gw, enum gw_event_kind kind, natsMsg *msg);

/* Loop thread: dispatch everything queued so far. */
void gw_handoff_drain(struct gw *gw);

/* Loop thread, after the bus socket was read there (busloop.h): answer the replies the
 * read left on the synchronous inbox subscription. No thread and no wake-up between
 * the read and the answer. Nothing when the inbox is asynchronous (TLS mode). */
void gw_handoff_poll_replies(struct gw *gw);

#endif
