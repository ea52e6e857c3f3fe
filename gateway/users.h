/*
 * users: the users that have sockets on this gateway, and their delivery
 * subscriptions (deliver.chat.<id>), held exactly while they have a socket here, so
 * NATS routes a user's messages only to the gateways that hold that user.
 * Loop thread only (subscribe/unsubscribe are libnats calls that do not block).
 */
#ifndef GW_USERS_H
#define GW_USERS_H

#include "gw.h"

struct gw_user *gw_users_find(struct gw *gw, uint64_t id);

/* Attach socket c (c->user_id, c->kind set) to its user, subscribing on first use.
 * Returns 0, or -1 when out of memory / the subscription failed. */
int gw_users_attach(struct gw *gw, struct gw_conn *c);

/* Detach c; the last socket of a user drops the user and its subscriptions. */
void gw_users_detach(struct gw *gw, struct gw_conn *c);

/* Call fn on every socket of every user (drain, revocation). */
void gw_users_foreach_conn(struct gw *gw, void (*fn)(struct gw *, struct gw_conn *, void *),
                           void *arg);

#endif
