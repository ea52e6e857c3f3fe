/*
 * sb_bus: the NATS connection every service shares, and the envelope codec.
 *
 * A connection reconnects forever by itself; messages are delivered on libnats'
 * shared delivery pool (natsOptions_UseGlobalMessageDelivery) so that thousands of
 * per-user subscriptions do not cost a thread each. Callbacks therefore run on
 * libnats threads, never on a service's own loop.
 */
#ifndef SB_BUS_H
#define SB_BUS_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "switchboard.pb-c.h"

struct sb_busio;

struct sb_bus {
	natsConnection *nc;
	_Atomic int connected;  /* 1 while the connection is up (for /readyz) */
	_Atomic int reconnects; /* how many times the connection came back */
	char name[64];
	/* libnats runs the disconnected/closed callbacks on its own thread, even after
	 * natsConnection_Close returns: destroy waits for "closed" before freeing. */
	pthread_mutex_t lock;
	pthread_cond_t closed_cond;
	int closed;
	int closing; /* our own close: a disconnect is not news */
	/* Optional (sb_bus_watch; under `lock`): called on a libnats thread when the
	 * connection drops (0) or is back (1). */
	void (*state_cb)(void *arg, int connected);
	void *state_arg;
	struct sb_busio *own_io; /* sb_bus_connect's I/O thread */
};

/* Connect to `url` (comma-separated list allowed) as client `name`. When the server is
 * not reachable, retries with backoff (0.1 s doubling to 2 s) until it is or until
 * *stop becomes non-zero (stop may be NULL). The socket's reads and writes run on one
 * thread of the connection's own (sb_busio.h), not on libnats' reader and flusher.
 * Returns 0 and sets *out, or -1. */
int sb_bus_connect(struct sb_bus **out, const char *url, const char *name, _Atomic int *stop);

/* Like sb_bus_connect but never waits: when the server is not reachable yet, libnats
 * keeps trying in the background (subscriptions made meanwhile are sent on connect) and
 * bus->connected turns 1 when it succeeds. For the gateway, which must serve /healthz
 * and answer /readyz 503 while the bus is down. With io, the socket's reads and writes
 * run wherever the caller dispatches io (the gateway: its loop); NULL keeps libnats'
 * reader and flusher threads. Returns 0 and sets *out, or -1. */
int sb_bus_open(struct sb_bus **out, const char *url, const char *name, struct sb_busio *io);

/* Call cb(arg, 0|1) on a libnats thread whenever the connection drops or is back. Any
 * thread, after sb_bus_open (libnats' threads may already run). */
void sb_bus_watch(struct sb_bus *bus, void (*cb)(void *arg, int connected), void *arg);

/* One bounded connection attempt, no reconnection: for command-line tools, which
 * must fail fast. Returns the natsStatus; *out set on NATS_OK. */
natsStatus sb_bus_connect_once(struct sb_bus **out, const char *url, const char *name,
                               int timeout_ms);

/* Close the connection (stops every subscription's deliveries) without freeing, so
 * the caller can tear down what callbacks touch before sb_bus_destroy. */
void sb_bus_close(struct sb_bus *bus);

/* Flush, drain subscriptions (bounded by timeout_ms) and free. NULL is a no-op. */
void sb_bus_destroy(struct sb_bus *bus, int timeout_ms);

/* Serialise an envelope into a malloc'd buffer. Returns 0 or -1 (out of memory). */
int sb_envelope_pack(const Sb__Envelope *env, uint8_t **buf, size_t *len);

/* Decode bytes into an envelope; free with sb_envelope_free. NULL when malformed. */
Sb__Envelope *sb_envelope_unpack(const void *data, size_t len);
void sb_envelope_free(Sb__Envelope *env);

/* The delivery receipts an envelope carries: a Delivered (one user) or a DeliveredBatch
 * (one per user, what a gateway wrote in one flush). Sets *n; NULL when env carries
 * neither (or is NULL). Entries may be NULL in a malformed batch: callers validate. */
Sb__Delivered *const *sb_envelope_receipts(const Sb__Envelope *env, size_t *n);

/* Publish an envelope on subject (reply may be NULL). Returns a natsStatus. */
natsStatus sb_bus_publish(struct sb_bus *bus, const char *subject, const char *reply,
                          const Sb__Envelope *env);

/* Blocking request/reply for threads that may block (CLI tools, bus callbacks in
 * services). *reply is set on NATS_OK and must be freed with sb_envelope_free.
 * NATS_TIMEOUT / NATS_NO_RESPONDERS when nobody answered. Never call this on the
 * gateway's event loop. */
natsStatus sb_bus_request(struct sb_bus *bus, const char *subject, const Sb__Envelope *env,
                          int timeout_ms, Sb__Envelope **reply);

/* Reply to a request message with an envelope (no-op when msg has no reply subject). */
natsStatus sb_bus_reply(struct sb_bus *bus, natsMsg *msg, const Sb__Envelope *env);

#endif
