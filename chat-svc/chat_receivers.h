/*
 * chat_receivers: "does user X exist?", answered by auth-svc and cached.
 *
 * A send to a user nobody registered must be refused, but asking auth-svc once per
 * message would put it on the hot path. Positive answers are cached for ~30 s and
 * negative ones for ~2 s (a user just added becomes reachable quickly). The cache is
 * a fixed-size direct-mapped table: bounded memory, O(1), a collision just costs one
 * more look-up. Failures to get an answer are never cached. A positive answer that is
 * still used is refreshed ahead of its expiry by the cache's own look-up threads, so
 * only a first send (or one after a long pause) needs auth-svc, and even that one need
 * not block its caller: chat_receivers_peek never waits, and chat_receivers_resolve has
 * a look-up thread answer and call back. chat-svc's writer parks the sends to a
 * receiver it does not know yet (send.c) instead of waiting, in series, for each.
 */
#ifndef CHAT_RECEIVERS_H
#define CHAT_RECEIVERS_H

#include <stddef.h>
#include <stdint.h>

enum chat_receiver_status {
	CHAT_RECEIVER_UNAVAILABLE = -1, /* nobody answered */
	CHAT_RECEIVER_UNKNOWN = 0,
	CHAT_RECEIVER_FOUND = 1,
	CHAT_RECEIVER_MISS = -2, /* chat_receivers_peek: not in the cache */
};

#define CHAT_RECEIVERS_THREADS_DEFAULT 4

/* Ask the authority about user_id. May block (up to its own timeout). Returns an
 * enum chat_receiver_status. request_id is for logs and may be NULL. */
typedef int (*chat_lookup_fn)(void *ctx, uint64_t user_id, const char *request_id);

struct chat_receivers_config {
	chat_lookup_fn lookup;
	void *lookup_ctx;
	int64_t positive_ttl_ms; /* e.g. 30000 */
	int64_t negative_ttl_ms; /* e.g. 2000 */
	size_t slots;            /* rounded up to a power of two, e.g. 16384 */
	int threads;             /* look-up threads; 0 = CHAT_RECEIVERS_THREADS_DEFAULT */
};

struct chat_receivers;

/* Returns 0 and sets *out, or -1. Starts the look-up threads, which call cfg->lookup
 * (so the look-up must be callable from several threads at once). */
int chat_receivers_create(struct chat_receivers **out, const struct chat_receivers_config *cfg);
/* Joins the look-up threads (after the look-ups in progress; queued ones are dropped
 * and their done never called). NULL is a no-op. */
void chat_receivers_destroy(struct chat_receivers *r);

/* Any thread; may block in the look-up on a cache miss (never while holding the
 * cache lock). Returns an enum chat_receiver_status. */
int chat_receivers_check(struct chat_receivers *r, uint64_t user_id, const char *request_id);

/* Any thread, never blocks: the cached answer (FOUND or UNKNOWN; a hit may queue a
 * refresh, as in check), or CHAT_RECEIVER_MISS. */
int chat_receivers_peek(struct chat_receivers *r, uint64_t user_id);

/* Called on a look-up thread once user_id has an answer (FOUND or UNKNOWN, already in
 * the cache, or UNAVAILABLE, which is not). Must not block for long. */
typedef void (*chat_receiver_done_fn)(void *arg, uint64_t user_id, int status);

/* Any thread, never blocks: have a look-up thread ask about user_id and call
 * done(arg, user_id, status). owner (not NULL) groups requests for
 * chat_receivers_cancel. Returns 0, or -1 when the queue is full or the cache is
 * stopping: done is then never called. */
int chat_receivers_resolve(struct chat_receivers *r, uint64_t user_id, chat_receiver_done_fn done,
                           void *arg, const void *owner);

/* Any thread but a look-up thread: drop owner's queued requests and let go of those
 * in progress (their done is never called; a done already running is waited for, a
 * look-up is not). No done of owner's runs after this returns. NULL r is a no-op. */
void chat_receivers_cancel(struct chat_receivers *r, const void *owner);

/* The chat_lookup_fn that asks auth-svc over the bus: ctx is a struct
 * chat_auth_lookup. Blocking request on auth.lookup; safe on a libnats delivery thread
 * because the reply arrives through the connection's own request inbox thread. */
struct sb_bus;
struct chat_auth_lookup {
	struct sb_bus *bus;
	int timeout_ms;
};
int chat_auth_lookup(void *ctx, uint64_t user_id, const char *request_id);

#endif
