/*
 * handoff: the one path from libnats threads to the loop thread (STYLE "Threads"):
 * a locked list plus lws_cancel_service(); the loop drains it whole in
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED (wake-ups coalesce).
 */
#ifndef GW_HANDOFF_H
#define GW_HANDOFF_H

#include "gw.h"

int gw_handoff_init(struct gw *gw);
void gw_handoff_destroy(struct gw *gw);

/* Any thread. Takes ownership of msg (destroyed after dispatch, or now on failure). */
void gw_handoff_push(struct gw *gw, enum gw_event_kind kind, natsMsg *msg);

/* Loop thread: dispatch everything queued so far. */
void gw_handoff_drain(struct gw *gw);

#endif
