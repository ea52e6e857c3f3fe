/*
 * chat_receivers: cached "does this user exist" answers (see chat_receivers.h).
 *
 * A positive answer in the last third of its life is still served, and the user is
 * queued for a refresh that a look-up thread of our own asks auth-svc about: a user who
 * keeps receiving never expires on the hot path. A first look-up (chat_receivers_resolve)
 * goes to the same threads, ahead of nothing but the requests already queued, so a
 * writer never waits for auth-svc: several look-ups are out at once and each answer is
 * handed back through its done callback. The queue is a bounded ring; refreshes leave
 * half of it to first look-ups, and a refresh that finds no room simply lets its entry
 * expire.
 */
#include "chat_receivers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "chat_common.h"
#include "sb_bus.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"

#define QUEUE 4096
/* Refreshes stop queuing at half the ring: room stays for first look-ups. */
#define REFRESH_QUEUE_MAX (QUEUE / 2)
#define MAX_THREADS       16

struct slot {
	uint64_t user_id; /* 0 = empty (user ids start at 1) */
	int found;
	int refreshing;     /* queued for, or in, a refresh */
	int64_t refresh_ms; /* monotonic: past it a hit queues a refresh (positives only) */
	int64_t expires_ms; /* monotonic */
};

/* A look-up for a look-up thread: a refresh (done == NULL) or a first look-up. */
struct request {
	uint64_t user_id;
	chat_receiver_done_fn done;
	void *arg;
	const void *owner;
};

struct chat_receivers {
	struct chat_receivers_config cfg;
	pthread_mutex_t mu;  /* guards everything below */
	pthread_cond_t cond; /* a request was queued, or stopping */
	pthread_cond_t idle; /* a look-up thread finished a request */
	size_t mask;
	struct slot *slots;
	struct request queue[QUEUE]; /* a ring */
	size_t q_head, q_len;
	int stopping;
	int n_threads;
	pthread_t threads[MAX_THREADS];
	/* The owner of each thread's request while its done may still run, or NULL (also
	 * once chat_receivers_cancel let go of it); in_done: the thread is inside done. */
	const void *running[MAX_THREADS];
	int in_done[MAX_THREADS];
};

/* Under mu: remember an answer. */
static void store(struct chat_receivers *r, struct slot *s, uint64_t user_id, int status)
{
	int64_t now = sb_mono_ms();
	s->user_id = user_id;
	s->found = status == CHAT_RECEIVER_FOUND;
	s->refreshing = 0;
	if (s->found) {
		s->expires_ms = now + r->cfg.positive_ttl_ms;
		s->refresh_ms = now + r->cfg.positive_ttl_ms * 2 / 3;
	} else {
		s->expires_ms = now + r->cfg.negative_ttl_ms;
		s->refresh_ms = INT64_MAX;
	}
}

static size_t slot_of(const struct chat_receivers *r, uint64_t user_id)
{
	/* Fibonacci hashing: consecutive ids spread over the table. */
	return (size_t)((user_id * 0x9E3779B97F4A7C15ull) >> 32) & r->mask;
}

/* Under mu: queue a request. Returns 0, or -1 when the ring is full. */
static int enqueue(struct chat_receivers *r, const struct request *req)
{
	if (r->q_len >= QUEUE || r->stopping)
		return -1;
	r->queue[(r->q_head + r->q_len) % QUEUE] = *req;
	r->q_len++;
	pthread_cond_signal(&r->cond);
	return 0;
}

struct worker {
	struct chat_receivers *r;
	int index;
};

/* A look-up thread: blocking look-ups, one at a time, off the writers. */
static void *lookup_main(void *arg)
{
	struct worker *w = arg;
	struct chat_receivers *r = w->r;
	int me = w->index;
	free(w);
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (!r->q_len && !r->stopping)
			pthread_cond_wait(&r->cond, &r->mu);
		if (r->stopping)
			break;
		struct request req = r->queue[r->q_head];
		r->q_head = (r->q_head + 1) % QUEUE;
		r->q_len--;
		r->running[me] = req.owner;
		pthread_mutex_unlock(&r->mu);
		int status = r->cfg.lookup(r->cfg.lookup_ctx, req.user_id, NULL);
		pthread_mutex_lock(&r->mu);
		struct slot *s = &r->slots[slot_of(r, req.user_id)];
		if (status == CHAT_RECEIVER_UNAVAILABLE) {
			if (s->user_id == req.user_id)
				s->refreshing =
				    0; /* kept until it expires; the next hit tries again */
		} else if (req.done || s->user_id == req.user_id) {
			/* A refresh does not take a slot over from another user. */
			store(r, s, req.user_id, status);
		}
		if (req.done && r->running[me] == req.owner) { /* not cancelled meanwhile */
			/* Outside mu (done takes locks of its own), but marked: a cancel of
			 * this owner waits for it. */
			r->in_done[me] = 1;
			pthread_mutex_unlock(&r->mu);
			req.done(req.arg, req.user_id, status);
			pthread_mutex_lock(&r->mu);
			r->in_done[me] = 0;
		}
		r->running[me] = NULL;
		pthread_cond_broadcast(&r->idle);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static void stop_threads(struct chat_receivers *r)
{
	pthread_mutex_lock(&r->mu);
	r->stopping = 1;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->mu);
	for (int i = 0; i < r->n_threads; i++)
		pthread_join(r->threads[i], NULL);
	r->n_threads = 0;
}

static void free_receivers(struct chat_receivers *r)
{
	pthread_cond_destroy(&r->idle);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->mu);
	free(r->slots);
	free(r);
}

int chat_receivers_create(struct chat_receivers **out, const struct chat_receivers_config *cfg)
{
	struct chat_receivers *r = calloc(1, sizeof *r);
	if (!r)
		return -1;
	r->cfg = *cfg;
	size_t n = 1;
	while (n < cfg->slots && n < ((size_t)1 << 24))
		n <<= 1;
	r->mask = n - 1;
	r->slots = calloc(n, sizeof *r->slots);
	if (!r->slots || pthread_mutex_init(&r->mu, NULL) != 0) {
		free(r->slots);
		free(r);
		return -1;
	}
	if (pthread_cond_init(&r->cond, NULL) != 0) {
		pthread_mutex_destroy(&r->mu);
		free(r->slots);
		free(r);
		return -1;
	}
	if (pthread_cond_init(&r->idle, NULL) != 0) {
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->mu);
		free(r->slots);
		free(r);
		return -1;
	}
	int want = cfg->threads > 0 ? cfg->threads : CHAT_RECEIVERS_THREADS_DEFAULT;
	if (want > MAX_THREADS)
		want = MAX_THREADS;
	for (int i = 0; i < want; i++) {
		struct worker *w = malloc(sizeof *w);
		if (w) {
			w->r = r;
			w->index = i;
		}
		if (!w || pthread_create(&r->threads[i], NULL, lookup_main, w) != 0) {
			free(w);
			SB_ERROR("receivers_thread", "msg=\"cannot start thread\"");
			stop_threads(r);
			free_receivers(r);
			return -1;
		}
		r->n_threads = i + 1;
	}
	*out = r;
	return 0;
}

void chat_receivers_destroy(struct chat_receivers *r)
{
	if (!r)
		return;
	stop_threads(r);
	free_receivers(r);
}

/* Under mu: the cached answer for user_id, or CHAT_RECEIVER_MISS; a hit in its last
 * third queues a refresh. */
static int cached(struct chat_receivers *r, uint64_t user_id, int64_t now)
{
	struct slot *s = &r->slots[slot_of(r, user_id)];
	if (s->user_id != user_id || s->expires_ms <= now)
		return CHAT_RECEIVER_MISS;
	if (now >= s->refresh_ms && !s->refreshing && r->q_len < REFRESH_QUEUE_MAX) {
		struct request req = {user_id, NULL, NULL, NULL};
		if (enqueue(r, &req) == 0)
			s->refreshing = 1;
	}
	return s->found ? CHAT_RECEIVER_FOUND : CHAT_RECEIVER_UNKNOWN;
}

int chat_receivers_peek(struct chat_receivers *r, uint64_t user_id)
{
	if (user_id == 0)
		return CHAT_RECEIVER_UNKNOWN;
	int64_t now = sb_mono_ms();
	pthread_mutex_lock(&r->mu);
	int status = cached(r, user_id, now);
	pthread_mutex_unlock(&r->mu);
	return status;
}

int chat_receivers_check(struct chat_receivers *r, uint64_t user_id, const char *request_id)
{
	int status = chat_receivers_peek(r, user_id);
	if (status != CHAT_RECEIVER_MISS)
		return status;
	status = r->cfg.lookup(r->cfg.lookup_ctx, user_id, request_id);
	if (status == CHAT_RECEIVER_UNAVAILABLE)
		return status;
	pthread_mutex_lock(&r->mu);
	store(r, &r->slots[slot_of(r, user_id)], user_id, status);
	pthread_mutex_unlock(&r->mu);
	return status;
}

int chat_receivers_resolve(struct chat_receivers *r, uint64_t user_id, chat_receiver_done_fn done,
                           void *arg, const void *owner)
{
	if (!done || !owner)
		return -1;
	struct request req = {user_id, done, arg, owner};
	pthread_mutex_lock(&r->mu);
	int rc = enqueue(r, &req);
	pthread_mutex_unlock(&r->mu);
	return rc;
}

void chat_receivers_cancel(struct chat_receivers *r, const void *owner)
{
	if (!r || !owner)
		return;
	pthread_mutex_lock(&r->mu);
	/* Drop the owner's queued requests, keeping the others in order. */
	size_t kept = 0;
	for (size_t i = 0; i < r->q_len; i++) {
		struct request req = r->queue[(r->q_head + i) % QUEUE];
		if (req.owner != owner)
			r->queue[(r->q_head + kept++) % QUEUE] = req;
	}
	r->q_len = kept;
	/* A look-up of the owner's in progress is let go of (its answer still fills the
	 * cache; its done is not called), so this never waits for auth-svc: only for a
	 * done already running. */
	for (;;) {
		int busy = 0;
		for (int i = 0; i < r->n_threads; i++) {
			if (r->running[i] != owner)
				continue;
			if (r->in_done[i])
				busy = 1;
			else
				r->running[i] = NULL;
		}
		if (!busy)
			break;
		pthread_cond_wait(&r->idle, &r->mu);
	}
	pthread_mutex_unlock(&r->mu);
}

/* Any thread that may block (libnats delivery threads here). */
int chat_auth_lookup(void *ctx, uint64_t user_id, const char *request_id)
{
	static _Atomic int64_t last_warn_ms;
	struct chat_auth_lookup *a = ctx;
	Sb__UserLookup lookup = SB__USER_LOOKUP__INIT;
	lookup.user_id = user_id;
	Sb__Envelope req = SB__ENVELOPE__INIT;
	if (request_id)
		req.request_id = (char *)request_id;
	req.body_case = SB__ENVELOPE__BODY_USER_LOOKUP;
	req.user_lookup = &lookup;
	Sb__Envelope *reply = NULL;
	natsStatus s = sb_bus_request(a->bus, SB_SUBJ_AUTH_LOOKUP, &req, a->timeout_ms, &reply);
	int status = CHAT_RECEIVER_UNAVAILABLE;
	if (s == NATS_OK && reply->body_case == SB__ENVELOPE__BODY_USER_INFO)
		status = reply->user_info->found ? CHAT_RECEIVER_FOUND : CHAT_RECEIVER_UNKNOWN;
	if (status == CHAT_RECEIVER_UNAVAILABLE && chat_log_allow(&last_warn_ms, 1000)) {
		char rid[CHAT_RID_MAX];
		SB_WARN("auth_lookup_failed", "request_id=%s user_id=%llu error=\"%s\"",
		        chat_safe_rid(request_id, rid), (unsigned long long)user_id,
		        s == NATS_OK ? "unexpected reply" : natsStatus_GetText(s));
	}
	sb_envelope_free(reply);
	return status;
}
