/*
 * relay: the bare relay, Switchboard's upper bound. A minimal libwebsockets server
 * that speaks the client protocol's chat shape and nothing more: no bus, no storage,
 * no auth service, no JSON library. Each {"receiver_id":N,"message":"..."} frame is
 * answered at once with a message_sent-shaped ack and copied, as a
 * chat_message-shaped frame, onto every chat socket of user N. Whatever Switchboard
 * does beyond this (validation, NATS hops, SQLite, delivery bookkeeping) is the
 * difference between its figures and the relay's, measured by the same load
 * generator on the same machine in the same run.
 *
 * Who is who: the user id comes from the uid=N query parameter when present, else
 * from looking the token=T parameter up in the --tokens file ("USER_ID TOKEN" lines,
 * the load generator's own input). Nothing is verified: never expose a relay.
 * /ws/notifications/ sockets are accepted and stay silent (so `idle` runs against it).
 */
#ifndef RELAY_H
#define RELAY_H

#include <libwebsockets.h>
#include <stdint.h>

struct relay;

/* Build the relay's state: the token table (path may be NULL or empty) and a frame
 * queue ceiling per socket. 0 and *out set, or -1 after printing why. */
int relay_create(struct relay **out, const char *tokens_path, int64_t max_queue);

/* NULL is a no-op. Call after lws_context_destroy. */
void relay_destroy(struct relay *r);

/* The lws protocol callback; the context's user pointer must be the struct relay. */
int relay_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

/* Size of the per-session data relay_callback expects. */
size_t relay_session_size(void);

/* Counters for the exit line. */
void relay_stats(const struct relay *r, uint64_t *frames_in, uint64_t *frames_out, uint64_t *conns);

#endif
