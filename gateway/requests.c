/*
 * requests: the correlation table (a tsearch tree keyed by corr) and retry timers.
 * See requests.h. Timeouts are not one lws timer per request: lws keeps timers in one
 * sorted list (O(n) to insert), and every request of a kind has the same timeout, so
 * appending to a FIFO keeps it in deadline order and one timer for the earliest head
 * serves them all.
 */
#include "requests.h"

#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "backlog.h"
#include "busloop.h"
#include "chat.h"
#include "notify.h"
#include "preauth.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"
#include "timer.h"

static int cmp_req(const void *a, const void *b)
{
	const struct gw_req *x = a, *y = b;
	return x->corr < y->corr ? -1 : x->corr > y->corr;
}

static void on_timeouts(lws_sorted_usec_list_t *sul);

static lws_dll2_owner_t *fifo_of(struct gw *gw, const struct gw_req *r)
{
	return &gw->req_timeouts[r->kind == GW_REQ_VERIFY];
}

static struct gw_req *head_of(lws_dll2_owner_t *fifo)
{
	lws_dll2_t *d = lws_dll2_get_head(fifo);
	return d ? lws_container_of(d, struct gw_req, timeouts) : NULL;
}

/* Schedule the one timer for the earliest deadline, unless it already fires by then. */
static void arm(struct gw *gw)
{
	if (gw->req_sweeping)
		return; /* on_timeouts re-arms when it is done */
	int64_t at = 0;
	for (int i = 0; i < 2; i++) {
		struct gw_req *h = head_of(&gw->req_timeouts[i]);
		if (h && (!at || h->deadline_us < at))
			at = h->deadline_us;
	}
	if (!at || (gw->req_sul_at_us && gw->req_sul_at_us <= at))
		return;
	int64_t now = sb_mono_us();
	gw->req_sul_at_us = at;
	gw_timer_schedule(gw, &gw->req_sul, on_timeouts, at > now ? (lws_usec_t)(at - now) : 1);
}

static void set_deadline(struct gw *gw, struct gw_req *r)
{
	int64_t ms =
	    r->kind == GW_REQ_VERIFY ? gw->cfg.auth_timeout_ms : gw->cfg.request_timeout_ms;
	lws_dll2_remove(&r->timeouts);
	r->deadline_us = sb_mono_us() + ms * 1000;
	lws_dll2_add_tail(&r->timeouts, fifo_of(gw, r));
	arm(gw);
}

/* A request the bus could not take yet. Sends keep their socket's order: a send made
 * while an earlier one of its socket waits, waits too, and gw_requests_publish_waiting
 * publishes in corr order. */
static void mark_unpublished(struct gw *gw, struct gw_req *r)
{
	if (r->unpublished)
		return;
	r->unpublished = 1;
	gw->reqs_unpublished++;
	if (r->conn && r->kind == GW_REQ_SEND)
		r->conn->unpublished_sends++;
}

static void mark_published(struct gw *gw, struct gw_req *r)
{
	if (!r->unpublished)
		return;
	r->unpublished = 0;
	gw->reqs_unpublished--;
	if (r->conn && r->kind == GW_REQ_SEND)
		r->conn->unpublished_sends--;
}

static void req_free(struct gw *gw, struct gw_req *r)
{
	mark_published(gw, r);
	lws_dll2_remove(&r->timeouts);
	tdelete(r, &gw->reqs, cmp_req);
	if (r->conn) {
		if (r->prev_of_conn)
			r->prev_of_conn->next_of_conn = r->next_of_conn;
		else
			r->conn->reqs = r->next_of_conn;
		if (r->next_of_conn)
			r->next_of_conn->prev_of_conn = r->prev_of_conn;
		if (r->kind == GW_REQ_SEND)
			r->conn->inflight_sends--;
	}
	free(r->payload);
	free(r);
	gw->reqs_inflight--;
}

/* 0 when published; -1 when r waits (unpublished) for the bus or for an earlier send. */
static int publish(struct gw *gw, struct gw_req *r)
{
	/* While the bus is down libnats may hold the connection through a reconnect
	 * attempt: nothing is handed to it. */
	int behind =
	    r->kind == GW_REQ_SEND && r->conn && !r->unpublished && r->conn->unpublished_sends > 0;
	if (!gw_bus_up(gw) || behind) {
		mark_unpublished(gw, r);
		return -1;
	}
	char reply[96];
	snprintf(reply, sizeof reply, "%s%llu", gw->inbox_prefix, (unsigned long long)r->corr);
	natsStatus s = natsConnection_PublishRequest(gw->bus->nc, r->subject, reply, r->payload,
	                                             (int)r->payload_len);
	if (s != NATS_OK) {
		mark_unpublished(gw, r);
		return -1;
	}
	mark_published(gw, r);
	return 0;
}

static void on_timeout(struct gw *gw, struct gw_req *r)
{
	gw->m.request_timeouts++;
	if (r->kind == GW_REQ_VERIFY) {
		gw_preauth_on_verdict(gw, r->pre, NULL);
		req_free(gw, r);
		return;
	}
	if (r->conn && r->tries <= gw->cfg.request_retries && gw_bus_up(gw)) {
		r->tries++;
		SB_WARN("request_retry", "subject=%s corr=%llu try=%d unpublished=%d", r->subject,
		        (unsigned long long)r->corr, r->tries, r->unpublished);
		if (r->unpublished)
			gw_requests_publish_waiting(gw); /* r with the others, in order */
		else
			publish(gw, r);
		set_deadline(gw, r);
		return;
	}
	char bus[128];
	gw_busloop_describe(gw, bus, sizeof bus);
	SB_WARN("request_failed", "subject=%s corr=%llu tries=%d %s", r->subject,
	        (unsigned long long)r->corr, r->tries, bus);
	if (r->conn && r->kind == GW_REQ_NOTIFY_SYNC)
		gw_backlog_failed(gw, r->conn);
	else if (r->conn)
		gw_chat_on_failure(gw, r->conn, r->kind);
	req_free(gw, r);
}

static void on_timeouts(lws_sorted_usec_list_t *sul)
{
	struct gw *gw = lws_container_of(sul, struct gw, req_sul);
	gw->req_sul_at_us = 0;
	gw->req_sweeping = 1;
	int64_t now = sb_mono_us();
	for (int i = 0; i < 2; i++) {
		/* a retry goes back to the tail with a later deadline: this ends */
		struct gw_req *h;
		while ((h = head_of(&gw->req_timeouts[i])) && h->deadline_us <= now)
			on_timeout(gw, h);
	}
	gw->req_sweeping = 0;
	arm(gw);
}

/* A request in the correlation table, not yet published. NULL when out of memory. */
static struct gw_req *req_new(struct gw *gw, enum gw_req_kind kind, const char *subject,
                              const Sb__Envelope *env)
{
	struct gw_req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	if (sb_envelope_pack(env, &r->payload, &r->payload_len) < 0) {
		free(r);
		return NULL;
	}
	r->corr = ++gw->next_corr;
	r->kind = kind;
	r->tries = 1;
	r->started_us = sb_mono_us();
	snprintf(r->subject, sizeof r->subject, "%s", subject);
	if (!tsearch(r, &gw->reqs, cmp_req)) {
		free(r->payload);
		free(r);
		return NULL;
	}
	gw->reqs_inflight++;
	return r;
}

/* A publish that fails while the bus is down is retried by the timer. */
static void req_send(struct gw *gw, struct gw_req *r)
{
	publish(gw, r);
	set_deadline(gw, r);
}

int gw_request_start(struct gw *gw, struct gw_conn *c, enum gw_req_kind kind, const char *subject,
                     const Sb__Envelope *env)
{
	struct gw_req *r = req_new(gw, kind, subject, env);
	if (!r)
		return -1;
	r->conn = c;
	r->next_of_conn = c->reqs;
	if (c->reqs)
		c->reqs->prev_of_conn = r;
	c->reqs = r;
	if (kind == GW_REQ_SEND)
		c->inflight_sends++;
	req_send(gw, r);
	return 0;
}

int gw_request_start_verify(struct gw *gw, struct gw_pre *pre, const Sb__Envelope *env)
{
	struct gw_req *r = req_new(gw, GW_REQ_VERIFY, SB_SUBJ_AUTH_VERIFY, env);
	if (!r)
		return -1;
	r->pre = pre;
	req_send(gw, r);
	return 0;
}

void gw_requests_on_reply(struct gw *gw, natsMsg *msg)
{
	const char *subj = natsMsg_GetSubject(msg);
	size_t plen = strlen(gw->inbox_prefix);
	uint64_t corr;
	if (strncmp(subj, gw->inbox_prefix, plen) != 0 ||
	    sb_parse_u64(subj + plen, UINT64_MAX, &corr) < 0)
		return;
	struct gw_req key = {.corr = corr};
	void *found = tfind(&key, &gw->reqs, cmp_req);
	if (!found)
		return; /* late reply to a request already answered or abandoned */
	struct gw_req *r = *(struct gw_req **)found;
	Sb__Envelope *env =
	    sb_envelope_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	if (!env) {
		SB_WARN("bad_reply", "subject=%s", r->subject);
		return; /* let the timer retry */
	}
	sb_metric_observe_us(&gw->request_seconds[r->kind],
	                     (uint64_t)(sb_mono_us() - r->started_us));
	if (r->kind == GW_REQ_VERIFY)
		gw_preauth_on_verdict(gw, r->pre, env);
	else if (r->conn && r->kind == GW_REQ_NOTIFY_SYNC)
		gw_notify_on_reply(gw, r->conn, env);
	else if (r->conn)
		gw_chat_on_reply(gw, r->conn, r->kind, env);
	sb_envelope_free(env);
	req_free(gw, r);
}

struct waiting {
	struct gw_req **list;
	size_t len, cap;
};

static void collect_waiting(const void *node, VISIT which, void *closure)
{
	struct waiting *w = closure;
	struct gw_req *r = *(struct gw_req *const *)node;
	if ((which == postorder || which == leaf) && r->unpublished && w->len < w->cap)
		w->list[w->len++] = r;
}

void gw_requests_publish_waiting(struct gw *gw)
{
	if (!gw->reqs_unpublished || !gw_bus_up(gw))
		return;
	struct waiting w = {malloc(gw->reqs_unpublished * sizeof *w.list), 0, gw->reqs_unpublished};
	if (!w.list)
		return;                         /* their timeouts try again */
	twalk_r(gw->reqs, collect_waiting, &w); /* in corr order: the order they were made */
	size_t published = 0, dropped = 0;
	for (size_t i = 0; i < w.len; i++) {
		struct gw_req *r = w.list[i];
		if (!r->conn && r->kind != GW_REQ_VERIFY) {
			/* Its socket is gone before it left: nobody would hear the answer, and
			 * nothing was acknowledged. */
			req_free(gw, r);
			dropped++;
			continue;
		}
		if (publish(gw, r) < 0)
			break; /* the bus went down again: the rest keep waiting, in order */
		set_deadline(gw, r);
		published++;
	}
	free(w.list);
	SB_INFO("requests_published_late", "published=%zu dropped=%zu waiting=%zu", published,
	        dropped, gw->reqs_unpublished);
}

void gw_requests_detach_conn(struct gw_conn *c)
{
	for (struct gw_req *r = c->reqs; r;) {
		struct gw_req *next = r->next_of_conn;
		r->conn = NULL;
		r->next_of_conn = r->prev_of_conn = NULL;
		r = next;
	}
	c->reqs = NULL;
	c->inflight_sends = 0;
	c->unpublished_sends = 0;
}

size_t gw_requests_inflight(struct gw *gw)
{
	return gw->reqs_inflight;
}

void gw_requests_destroy_all(struct gw *gw)
{
	lws_sul_cancel(&gw->req_sul);
	gw->req_sul_at_us = 0;
	gw->req_sweeping = 1; /* nothing re-arms */
	while (gw->reqs) {
		struct gw_req *r = *(struct gw_req **)gw->reqs;
		r->conn = NULL;
		req_free(gw, r);
	}
}
