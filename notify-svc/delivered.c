/*
 * delivered: notify.delivered (publish, queue group notify-svc) -- gateways report
 * the notification ids they wrote to a user's sockets (a Delivered, or a
 * DeliveredBatch of one per user from a flush); the user's cursor moves up to the
 * highest, so the next sync does not replay them.
 *
 * Receipts come one per notification per socket, so paying an fsync each would cap
 * the service at the disk's sync rate. The handler only queues (user, max id) and
 * returns; a cursor thread with its own store takes everything queued, applies it in
 * one transaction, commits, and goes back for more -- while it commits, the next
 * group builds up (group commit). The queue is bounded: when it is full a receipt is
 * dropped and counted, which costs a replay the gateway de-duplicates, never a loss.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notify_store.h"
#include "notify_svc.h"
#include "sb_bus.h"
#include "sb_log.h"
#include "sb_msg.h"
#include "sb_util.h"

#define CURSOR_QUEUE_MAX (1u << 18)
#define CURSOR_RETRIES   5

struct advance {
	uint64_t user_id;
	uint64_t id;
};

struct notify_cursors {
	struct notify_svc *svc;
	struct notify_store *st; /* the cursor thread's */
	pthread_t thread;
	int started;
	pthread_mutex_t mu; /* guards everything below */
	pthread_cond_t cv;
	struct advance *q;
	size_t n, cap;
	int stopping;
	int joined;
};

/* Cursor thread: apply one group. 0 or -1 (rolled back). */
static int apply(struct notify_cursors *c, const struct advance *v, size_t n)
{
	if (notify_store_begin(c->st) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (notify_cursor_advance(c->st, v[i].user_id, v[i].id) < 0) {
			notify_store_rollback(c->st);
			return -1;
		}
	}
	if (notify_store_commit(c->st) < 0) {
		notify_store_rollback(c->st);
		return -1;
	}
	return 0;
}

static void *cursor_main(void *arg)
{
	struct notify_cursors *c = arg;
	struct advance *spare = NULL; /* the buffer handlers are not filling */
	size_t spare_cap = 0;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (c->n == 0 && !c->stopping)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->n == 0)
			break; /* stopping, and everything queued is applied */
		/* Swap buffers: handlers go on appending to the empty one meanwhile. */
		struct advance *batch = c->q;
		size_t n = c->n, batch_cap = c->cap;
		c->q = spare;
		c->cap = spare_cap;
		c->n = 0;
		pthread_mutex_unlock(&c->mu);

		int ok = 0;
		for (int attempt = 1; attempt <= CURSOR_RETRIES && !ok; attempt++) {
			ok = apply(c, batch, n) == 0;
			if (!ok && attempt < CURSOR_RETRIES) {
				struct timespec ts = {0, 100 * 1000000L * attempt};
				nanosleep(&ts, NULL);
			}
		}
		if (!ok)
			SB_ERROR("cursor_write_failed",
			         "receipts=%zu msg=\"dropped; those "
			         "notifications replay on next sync\"",
			         n);
		pthread_mutex_lock(&c->mu);
		spare = batch;
		spare_cap = batch_cap;
	}
	pthread_mutex_unlock(&c->mu);
	free(spare);
	return NULL;
}

int notify_cursors_create(struct notify_cursors **out, struct notify_svc *svc, const char *db_path)
{
	struct notify_cursors *c = calloc(1, sizeof *c);
	if (!c)
		return -1;
	c->svc = svc;
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c);
		return -1;
	}
	if (pthread_cond_init(&c->cv, NULL) != 0) {
		pthread_mutex_destroy(&c->mu);
		free(c);
		return -1;
	}
	if (notify_store_open(&c->st, db_path) < 0 ||
	    pthread_create(&c->thread, NULL, cursor_main, c) != 0) {
		notify_cursors_destroy(c);
		return -1;
	}
	c->started = 1;
	*out = c;
	return 0;
}

int notify_cursors_push(struct notify_cursors *c, uint64_t user_id, uint64_t id)
{
	pthread_mutex_lock(&c->mu);
	int rc = -1;
	if (!c->stopping && c->n < CURSOR_QUEUE_MAX) {
		if (c->n == c->cap) {
			size_t ncap = c->cap ? c->cap * 2 : 256;
			struct advance *nq = realloc(c->q, ncap * sizeof *nq);
			if (nq) {
				c->q = nq;
				c->cap = ncap;
			}
		}
		if (c->n < c->cap) {
			c->q[c->n++] = (struct advance){user_id, id};
			rc = 0;
			if (c->n == 1)
				pthread_cond_signal(&c->cv);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void notify_cursors_stop(struct notify_cursors *c)
{
	if (!c || !c->started)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = 1;
	pthread_cond_signal(&c->cv);
	int join = !c->joined;
	c->joined = 1;
	pthread_mutex_unlock(&c->mu);
	if (join)
		pthread_join(c->thread, NULL);
}

void notify_cursors_destroy(struct notify_cursors *c)
{
	if (!c)
		return;
	notify_cursors_stop(c);
	notify_store_destroy(c->st);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c->q);
	free(c);
}

/* The receipts of env: a Delivered (one user) or a DeliveredBatch (every user a
 * gateway wrote to in one flush). NULL with *why set when refused as a whole. */
static Sb__Delivered *const *receipts_of(Sb__Envelope *env, size_t *n, const char **why)
{
	Sb__Delivered *const *d = sb_envelope_receipts(env, n);
	if (!d) {
		*why = "malformed";
		return NULL;
	}
	for (size_t i = 0; i < *n; i++) {
		if (!d[i] || d[i]->user_id == 0 || d[i]->user_id > (uint64_t)INT64_MAX) {
			*why = "user_id is required";
			return NULL;
		}
	}
	return d;
}

/* libnats delivery thread. */
void notify_delivered_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	static _Atomic int64_t last_warn_ms;
	(void)nc;
	(void)sub;
	struct notify_svc *svc = closure;
	Sb__Envelope *env =
	    sb_envelope_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	const char *why = NULL;
	size_t n = 0;
	Sb__Delivered *const *d = receipts_of(env, &n, &why);
	if (!d) {
		int64_t now = sb_mono_ms(), prev = atomic_load(&last_warn_ms);
		if ((prev == 0 || now - prev >= 1000) &&
		    atomic_compare_exchange_strong(&last_warn_ms, &prev, now))
			SB_WARN("delivered_ignored", "reason=\"%s\"", why);
		goto done;
	}
	for (size_t r = 0; r < n; r++) {
		uint64_t max = 0;
		for (size_t i = 0; i < d[r]->n_ids; i++)
			if (d[r]->ids[i] > max)
				max = d[r]->ids[i];
		if (max == 0)
			continue; /* nothing delivered */
		sb_metric_inc(&svc->stats.receipts, 1);
		if (notify_cursors_push(svc->cursors, d[r]->user_id, max) < 0)
			sb_metric_inc(&svc->stats.receipts_dropped, 1);
	}
done:
	sb_envelope_free(env);
	sb_msg_free(msg);
}
