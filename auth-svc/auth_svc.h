/*
 * auth_svc: the running service as the subject handlers see it, and the handlers.
 *
 * Design: one handler file per subject (handle_verify.c, handle_lookup.c,
 * handle_admin.c); each decodes an Envelope, asks auth_store, and replies with an
 * Envelope carrying the request's request_id. The handlers run on libnats delivery
 * threads, possibly concurrently; they share only `struct auth_svc`, whose fields are
 * set before the first subscription and never change, and the store, which locks.
 */
#ifndef AUTH_SVC_H
#define AUTH_SVC_H

#include <nats/nats.h>

#include "auth_store.h"
#include "sb_bus.h"
#include "sb_metrics.h"

struct auth_svc {
	struct sb_bus *bus;
	struct auth_store *store;
	_Atomic int ready;
	const char *jwt_secret;    /* HS256 secret; empty = JWTs refused */
	struct sb_metrics metrics; /* served on /metrics (--http-listen) */
	struct sb_metric verify_ok, verify_refused, verify_errors, lookups, admin_requests;
	struct sb_metric request_seconds;
};

/* Register the metrics above with svc->metrics. */
void auth_metrics_init(struct auth_svc *svc);

/* libnats message callbacks; closure is the struct auth_svc. Each takes ownership of
 * msg and destroys it. Thread: libnats delivery threads. */
void auth_handle_verify(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
void auth_handle_lookup(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
void auth_handle_admin(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);

/* Decode msg's payload; NULL when it is not an Envelope. Free with sb_envelope_free. */
Sb__Envelope *auth_decode(natsMsg *msg);

/* Reply to msg with `reply`, copying req's request_id into it (req may be NULL). A
 * failure is logged with `event`; there is nobody else to tell. */
void auth_reply(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req, Sb__Envelope *reply,
                const char *event);

/* Reply with an Error envelope (for callers that asked for something else). */
void auth_reply_error(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req,
                      Sb__ErrorCode code, const char *text);

/* req's request_id made safe for a logfmt value (at most 64 of [A-Za-z0-9._:-], else
 * '_'; "-" when absent), in buf. Returns buf. */
#define AUTH_RID_BUF 65
const char *auth_log_rid(const Sb__Envelope *req, char buf[AUTH_RID_BUF]);

/* The first 8 hex digits of a token hash, for log lines (never the token). */
#define AUTH_HASH_PREFIX_BUF 9
const char *auth_log_hash(const uint8_t hash[SB_TOKEN_HASH_LEN], char buf[AUTH_HASH_PREFIX_BUF]);

#endif
