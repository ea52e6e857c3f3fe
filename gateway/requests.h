/*
 * requests: asynchronous, correlated bus requests from the loop thread. Each request
 * is published with reply subject "<inbox_prefix><corr>" (one wildcard inbox
 * subscription per gateway) and a timer; a timeout republishes the same bytes (the
 * envelope carries an idempotency key, so chat-svc stores a retried send once) until
 * --request-retries is spent, then the owner is told it failed. While the bus is down
 * nothing is handed to libnats (busloop.h gw_bus_up): a request waits, unpublished,
 * until the bus is back or its timeout. Loop thread only.
 */
#ifndef GW_REQUESTS_H
#define GW_REQUESTS_H

#include "gw.h"

/* Publish env on subject as a request for socket c (c may not be NULL). Returns 0, or -1
 * when it could not even be queued (the caller reports the error). */
int gw_request_start(struct gw *gw, struct gw_conn *c, enum gw_req_kind kind, const char *subject,
                     const Sb__Envelope *env);

/* Ask auth-svc to verify the token of a handshake waiting in preauth.c. One try,
 * bounded by --auth-timeout-ms; the answer (or NULL) goes to gw_preauth_on_verdict. */
int gw_request_start_verify(struct gw *gw, struct gw_pre *pre, const Sb__Envelope *env);

/* A reply arrived on the inbox (from the hand-off). Takes nothing; msg stays the
 * caller's. Dispatches to the chat module. */
void gw_requests_on_reply(struct gw *gw, natsMsg *msg);

/* The bus is up (again): publish, in the order they were made, the requests that
 * waited for it (made while it was down, or sends behind such a send of their socket);
 * those whose socket has gone are dropped. Called when the bus is back, by the
 * once-a-second bus check, and by a waiting request's timeout. */
void gw_requests_publish_waiting(struct gw *gw);

/* The socket is closing: its requests finish silently. */
void gw_requests_detach_conn(struct gw_conn *c);

/* Number of requests in flight (for draining). */
size_t gw_requests_inflight(struct gw *gw);

/* Cancel every timer and free every request (shutdown). */
void gw_requests_destroy_all(struct gw *gw);

#endif
