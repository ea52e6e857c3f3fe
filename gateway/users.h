/*
 * users: the users that have sockets on this gateway, and their delivery
 * subscriptions (deliver.chat.<id>), held exactly while they have a socket here, so
 * NATS routes a user's messages only to the gateways that hold that user.
 * Loop thread only. Subscribe and unsubscribe are libnats calls that take the
 * connection's lock, which a reconnect attempt holds for up to 2 s: while the bus is
 * down (gw_bus_up), a first socket of a user is refused and a last one's unsubscribe
 * is put off until the bus is back. Until then that subscription may deliver to a user
 * who is gone (nobody to deliver to) or back with a second subscription (each socket
 * drops ids it already has, gw_conn_deliver).
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

/* With the bus up: the unsubscribes put off while it was down. Called when it is back
 * and by the once-a-second bus check. */
void gw_users_unsubscribe_deferred(struct gw *gw);

/* Teardown, after the bus is closed (which ended every subscription): free the
 * subscriptions still put off. */
void gw_users_destroy_deferred(struct gw *gw);

/* Call fn on every socket of every user (drain, revocation). */
void gw_users_foreach_conn(struct gw *gw, void (*fn)(struct gw *, struct gw_conn *, void *),
                           void *arg);

#endif
