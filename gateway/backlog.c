/*
 * backlog: paged backlog replay shared by chat and notification sockets, see backlog.h.
 */
#include "backlog.h"

#include <string.h>

#include "conn.h"
#include "frame.h"
#include "render.h"
#include "requests.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"

#define PAGE 500

void gw_backlog_note_chat_id(struct gw *gw, uint64_t id)
{
	uint64_t *seen = &gw->chat_seen[id % (uint64_t)gw->cfg.partitions];
	if (id > *seen)
		*seen = id;
}

void gw_backlog_note_notify_id(struct gw *gw, uint64_t id)
{
	if (id > gw->notify_seen)
		gw->notify_seen = id;
}

void gw_backlog_mark_gap(struct gw *gw)
{
	memcpy(gw->chat_gap_floor, gw->chat_seen,
	       (size_t)gw->cfg.partitions * sizeof *gw->chat_gap_floor);
	gw->notify_gap_floor = gw->notify_seen;
}

static int page_in_flight(const struct gw_conn *c)
{
	for (const struct gw_req *r = c->reqs; r; r = r->next_of_conn)
		if (r->kind == GW_REQ_SYNC || r->kind == GW_REQ_NOTIFY_SYNC)
			return 1;
	return 0;
}

void gw_backlog_after_gap(struct gw *gw, struct gw_conn *c)
{
	c->after_gap = 1;
	if (page_in_flight(c))
		c->sync_again = 1; /* its answer may predate the gap */
	else
		gw_backlog_start(gw, c);
}

void gw_backlog_start(struct gw *gw, struct gw_conn *c)
{
	c->syncing = 1;
	Sb__SyncRequest sr = SB__SYNC_REQUEST__INIT;
	sr.user_id = c->user_id;
	sr.after_id = c->last_id;
	uint32_t part = sb_partition(c->user_id, (uint32_t)gw->cfg.partitions);
	uint64_t floor = c->kind == GW_CHAT ? gw->chat_gap_floor[part] : gw->notify_gap_floor;
	if (c->after_gap && floor) {
		/* Everything after the gap began, delivered elsewhere or not; without a floor
		 * (nothing came from the service before) the backlog has to do. */
		sr.resync = 1;
		if (floor > sr.after_id)
			sr.after_id = floor;
	}
	/* A page must fit in the socket's queue, or the replay itself would trip the
	 * slow-consumer cap on a small --max-queue. */
	int64_t fit = gw->cfg.max_queue / 2 > 1 ? gw->cfg.max_queue / 2 : 1;
	sr.limit = (uint32_t)(fit < PAGE ? fit : PAGE);
	Sb__Envelope env = SB__ENVELOPE__INIT;
	env.body_case = SB__ENVELOPE__BODY_SYNC_REQUEST;
	env.sync_request = &sr;
	char subj[64];
	enum gw_req_kind kind;
	if (c->kind == GW_CHAT) {
		snprintf(subj, sizeof subj, SB_SUBJ_CHAT_SYNC ".%u", part);
		kind = GW_REQ_SYNC;
	} else {
		snprintf(subj, sizeof subj, SB_SUBJ_NOTIFY_SYNC);
		kind = GW_REQ_NOTIFY_SYNC;
	}
	if (gw_request_start(gw, c, kind, subj, &env) < 0)
		gw_backlog_failed(gw, c);
}

void gw_backlog_queue(struct gw *gw, struct gw_conn *c, struct gw_buf *b)
{
	if (b->id <= c->last_id)
		return;
	c->last_id = b->id;
	gw->m.backlog_replayed++;
	gw_conn_send(gw, c, b);
}

void gw_backlog_page_done(struct gw *gw, struct gw_conn *c, int more)
{
	if (!more && c->sync_again) {
		c->sync_again = 0;
		gw_backlog_start(gw, c);
	} else if (!more) {
		c->after_gap = 0;
		gw_conn_end_sync(gw, c);
	} else if ((int64_t)c->q_len > gw->cfg.max_queue / 4)
		c->backlog_deferred = 1; /* gw_backlog_resume, once the client has read */
	else
		gw_backlog_start(gw, c);
}

void gw_backlog_resume(struct gw *gw, struct gw_conn *c)
{
	if (c->backlog_deferred && (int64_t)c->q_len <= gw->cfg.max_queue / 4) {
		c->backlog_deferred = 0;
		gw_backlog_start(gw, c);
	}
}

void gw_backlog_failed(struct gw *gw, struct gw_conn *c)
{
	SB_WARN("backlog_failed", "user=%llu conn=%llu endpoint=%s", (unsigned long long)c->user_id,
	        (unsigned long long)c->conn_id, c->kind == GW_CHAT ? "chat" : "notifications");
	if (c->kind == GW_CHAT)
		gw_conn_send_error(gw, c, GW_E_UNAVAILABLE);
	gw_conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "backlog unavailable");
}
