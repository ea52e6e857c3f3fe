/*
 * notify: notification sockets, see notify.h. A broadcast is rendered once and the
 * same buffer is queued on every notification socket of this gateway.
 */
#include "notify.h"

#include "backlog.h"
#include "conn.h"
#include "frame.h"
#include "render.h"
#include "requests.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "users.h"

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
	gw_backlog_note_notify_id(gw, n->id);
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
		gw_backlog_failed(gw, c);
		return;
	}
	const Sb__NotifySyncReply *sr = env->notify_sync_reply;
	for (size_t i = 0; i < sr->n_notifications; i++) {
		struct gw_buf *b = gw_render_notify(sr->notifications[i]);
		if (b)
			gw_backlog_queue(gw, c, b);
		gw_buf_unref(b);
	}
	gw_backlog_page_done(gw, c, sr->more && sr->n_notifications > 0);
}
