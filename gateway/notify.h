/*
 * notify: the notification socket. Server -> client only: a new socket replays what
 * the user has not had (notify.sync, paged), then gets live deliveries from
 * deliver.notify.<user> and deliver.notify.all; frames the client sends get an error.
 * Loop thread only.
 */
#ifndef GW_NOTIFY_H
#define GW_NOTIFY_H

#include "gw.h"

/* deliver.notify.<user> or deliver.notify.all from the hand-off. */
void gw_notify_on_delivery(struct gw *gw, natsMsg *msg);

void gw_notify_on_reply(struct gw *gw, struct gw_conn *c, const Sb__Envelope *env);

#endif
