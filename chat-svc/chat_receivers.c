/*
 * chat_receivers: cached "does this user exist" answers (see chat_receivers.h).
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

struct slot {
	uint64_t user_id; /* 0 = empty (user ids start at 1) */
	int found;
	int64_t expires_ms; /* monotonic */
};

struct chat_receivers {
	struct chat_receivers_config cfg;
	pthread_mutex_t mu; /* guards slots */
	size_t mask;
	struct slot *slots;
};

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
	*out = r;
	return 0;
}

void chat_receivers_destroy(struct chat_receivers *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r->slots);
	free(r);
}

static size_t slot_of(const struct chat_receivers *r, uint64_t user_id)
{
	/* Fibonacci hashing: consecutive ids spread over the table. */
	return (size_t)((user_id * 0x9E3779B97F4A7C15ull) >> 32) & r->mask;
}

int chat_receivers_check(struct chat_receivers *r, uint64_t user_id, const char *request_id)
{
	if (user_id == 0)
		return CHAT_RECEIVER_UNKNOWN;
	size_t i = slot_of(r, user_id);
	int64_t now = sb_mono_ms();
	pthread_mutex_lock(&r->mu);
	struct slot s = r->slots[i];
	pthread_mutex_unlock(&r->mu);
	if (s.user_id == user_id && s.expires_ms > now)
		return s.found ? CHAT_RECEIVER_FOUND : CHAT_RECEIVER_UNKNOWN;

	int status = r->cfg.lookup(r->cfg.lookup_ctx, user_id, request_id);
	if (status == CHAT_RECEIVER_UNAVAILABLE)
		return status;
	int64_t ttl =
	    status == CHAT_RECEIVER_FOUND ? r->cfg.positive_ttl_ms : r->cfg.negative_ttl_ms;
	pthread_mutex_lock(&r->mu);
	r->slots[i].user_id = user_id;
	r->slots[i].found = status == CHAT_RECEIVER_FOUND;
	r->slots[i].expires_ms = sb_mono_ms() + ttl;
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
