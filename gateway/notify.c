/*
 * notify: notification sockets, see notify.h. A broadcast is rendered once and the
 * same buffer is queued on every notification socket of this gateway.
 */
#include "notify.h"

#include "conn.h"
#include "frame.h"
#include "render.h"
#include "requests.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "users.h"

#define SYNC_PAGE 500

static void request_sync(struct gw *gw, struct gw_conn *c)
{
	Sb__SyncRequest sr = SB__SYNC_REQUEST__INIT;
	sr.user_id = c->user_id;
	sr.after_id = c->last_id;
	sr.limit = SYNC_PAGE;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	env.body_case = SB__ENVELOPE__BODY_SYNC_REQUEST;
	env.sync_request = &sr;
	if (gw_request_start(gw, c, GW_REQ_NOTIFY_SYNC, SB_SUBJ_NOTIFY_SYNC, &env) < 0)
		gw_notify_on_failure(gw, c);
}

void gw_notify_on_open(struct gw *gw, struct gw_conn *c)
{
	c->syncing = 1;
	request_sync(gw, c);
}

static void deliver_to_all(struct gw *gw, struct gw_conn *c, void *arg)
{
	if (c->kind == GW_NOTIFY)
		gw_conn_deliver(gw, c, arg);
}

void gw_notify_on_delivery(struct gw *gw, natsMsg *msg)
{
	Sb__Envelope *env =
	    sb_envelope_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	if (!env || env->body_case != SB__ENVELOPE__BODY_NOTIFICATION) {
		SB_WARN("bad_delivery", "subject=%s", natsMsg_GetSubject(msg));
		sb_envelope_free(env);
		return;
	}
	const Sb__Notification *n = env->notification;
	struct gw_buf *b = gw_render_notify(n);
	if (b) {
		if (n->user_id == 0) {
			gw_users_foreach_conn(gw, deliver_to_all, b);
		} else {
			struct gw_user *u = gw_users_find(gw, n->user_id);
			for (struct gw_conn *c = u ? u->notify : NULL; c; c = c->next_of_user)
				gw_conn_deliver(gw, c, b);
		}
		gw_buf_unref(b);
	}
	sb_envelope_free(env);
}

void gw_notify_on_reply(struct gw *gw, struct gw_conn *c, const Sb__Envelope *env)
{
	if (env->body_case != SB__ENVELOPE__BODY_NOTIFY_SYNC_REPLY) {
		gw_notify_on_failure(gw, c);
		return;
	}
	const Sb__NotifySyncReply *sr = env->notify_sync_reply;
	for (size_t i = 0; i < sr->n_notifications; i++) {
		const Sb__Notification *n = sr->notifications[i];
		if (n->id <= c->last_id)
			continue;
		struct gw_buf *b = gw_render_notify(n);
		if (!b)
			continue;
		c->last_id = n->id;
		gw->m.backlog_replayed++;
		gw_conn_send(gw, c, b);
		gw_buf_unref(b);
	}
	if (sr->more && sr->n_notifications > 0)
		request_sync(gw, c);
	else
		gw_conn_end_sync(gw, c);
}

void gw_notify_on_failure(struct gw *gw, struct gw_conn *c)
{
	(void)gw;
	/* Without the backlog the socket would silently miss notifications: close with
	 * 1011 so the client reconnects (with its own backoff) and the replay is retried. */
	SB_WARN("notify_sync_failed", "user=%llu conn=%llu", (unsigned long long)c->user_id,
	        (unsigned long long)c->conn_id);
	gw_conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "backlog unavailable");
}
