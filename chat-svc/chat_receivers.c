/*
 * chat_receivers: cached "does this user exist" answers (see chat_receivers.h).
 *
 * A positive answer in the last third of its life is still served, and the user is
 * queued for a refresh that a thread of our own asks auth-svc about: a user who keeps
 * receiving never expires on the hot path. Before, every receiver's entry ran out once
 * every 30 s and the next send to them blocked the delivery thread, and every message
 * queued behind it, for one auth round trip (a p99 of the 5,000 msg/s bench). The
 * refresh queue is a bounded ring; when it is full an entry simply expires as before.
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

#define REFRESH_QUEUE 1024

struct slot {
	uint64_t user_id; /* 0 = empty (user ids start at 1) */
	int found;
	int refreshing;     /* queued for, or in, a refresh */
	int64_t refresh_ms; /* monotonic: past it a hit queues a refresh (positives only) */
	int64_t expires_ms; /* monotonic */
};

struct chat_receivers {
	struct chat_receivers_config cfg;
	pthread_mutex_t mu; /* guards everything below */
	pthread_cond_t cond;
	size_t mask;
	struct slot *slots;
	uint64_t queue[REFRESH_QUEUE]; /* user ids to refresh, a ring */
	size_t q_head, q_len;
	int stopping;
	pthread_t thread;
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

/* The refresh thread: blocking look-ups, one at a time, off the delivery threads. */
static void *refresh_main(void *arg)
{
	struct chat_receivers *r = arg;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (!r->q_len && !r->stopping)
			pthread_cond_wait(&r->cond, &r->mu);
		if (r->stopping)
			break;
		uint64_t user_id = r->queue[r->q_head];
		r->q_head = (r->q_head + 1) % REFRESH_QUEUE;
		r->q_len--;
		pthread_mutex_unlock(&r->mu);
		int status = r->cfg.lookup(r->cfg.lookup_ctx, user_id, NULL);
		pthread_mutex_lock(&r->mu);
		struct slot *s = &r->slots[slot_of(r, user_id)];
		if (s->user_id != user_id)
			continue; /* taken over by another user meanwhile */
		if (status == CHAT_RECEIVER_UNAVAILABLE)
			s->refreshing = 0; /* kept until it expires; the next hit tries again */
		else
			store(r, s, user_id, status);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
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
	if (pthread_create(&r->thread, NULL, refresh_main, r) != 0) {
		SB_ERROR("receivers_thread", "msg=\"cannot start thread\"");
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->mu);
		free(r->slots);
		free(r);
		return -1;
	}
	*out = r;
	return 0;
}

void chat_receivers_destroy(struct chat_receivers *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stopping = 1;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->mu);
	free(r->slots);
	free(r);
}

int chat_receivers_check(struct chat_receivers *r, uint64_t user_id, const char *request_id)
{
	if (user_id == 0)
		return CHAT_RECEIVER_UNKNOWN;
	size_t i = slot_of(r, user_id);
	int64_t now = sb_mono_ms();
	pthread_mutex_lock(&r->mu);
	struct slot *s = &r->slots[i];
	if (s->user_id == user_id && s->expires_ms > now) {
		int found = s->found;
		if (now >= s->refresh_ms && !s->refreshing && r->q_len < REFRESH_QUEUE) {
			s->refreshing = 1;
			r->queue[(r->q_head + r->q_len) % REFRESH_QUEUE] = user_id;
			r->q_len++;
			pthread_cond_signal(&r->cond);
		}
		pthread_mutex_unlock(&r->mu);
		return found ? CHAT_RECEIVER_FOUND : CHAT_RECEIVER_UNKNOWN;
	}
	pthread_mutex_unlock(&r->mu);

	int status = r->cfg.lookup(r->cfg.lookup_ctx, user_id, request_id);
	if (status == CHAT_RECEIVER_UNAVAILABLE)
		return status;
	pthread_mutex_lock(&r->mu);
	store(r, &r->slots[i], user_id, status);
	pthread_mutex_unlock(&r->mu);
	return status;
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
