/*
 * chat: client chat frames -> chat.send requests, replies -> client frames, and the
 * backlog replay on connect. See chat.h.
 */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

#include "backlog.h"
#include "conn.h"
#include "frame.h"
#include "render.h"
#include "requests.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"
#include "users.h"

#define MAX_INFLIGHT_SENDS 256

static void partition_subject(struct gw *gw, const char *base, uint64_t user, char *out,
                              size_t size)
{
	snprintf(out, size, "%s.%u", base, sb_partition(user, (uint32_t)gw->cfg.partitions));
}

void gw_chat_on_frame(struct gw *gw, struct gw_conn *c, const char *data, size_t len)
{
	struct gw_chat_frame f;
	const char *err = gw_frame_parse_chat(data, len, (size_t)gw->cfg.max_message_chars, &f);
	if (err) {
		gw_conn_send_error(gw, c, err);
		return;
	}
	if (c->inflight_sends >= MAX_INFLIGHT_SENDS) {
		json_decref(f.root);
		gw_conn_send_error(gw, c, GW_E_OVERLOADED);
		return;
	}
	/* Unique (a random instance id and a counter) and increasing in byte order, so
	 * chat-svc's unique index on it grows at its right edge: one page per commit,
	 * not one per sender. */
	char key[80];
	snprintf(key, sizeof key, "%s:%016llx", gw->instance, (unsigned long long)++gw->send_seq);
	Sb__ChatSend cs = SB__CHAT_SEND__INIT;
	cs.idempotency_key = key;
	cs.sender_id = c->user_id;
	cs.sender_name = c->user_name;
	cs.receiver_id = f.receiver_id;
	cs.message = (char *)f.message;
	if (f.attachment) {
		cs.attachment = (char *)f.attachment;
		cs.has_attachment = 1;
	}
	Sb__Envelope env = SB__ENVELOPE__INIT;
	env.request_id = key;
	env.body_case = SB__ENVELOPE__BODY_CHAT_SEND;
	env.chat_send = &cs;
	char subj[64];
	partition_subject(gw, SB_SUBJ_CHAT_SEND, f.receiver_id, subj, sizeof subj);
	int rc = gw_request_start(gw, c, GW_REQ_SEND, subj, &env);
	json_decref(f.root);
	if (rc < 0)
		gw_conn_send_error(gw, c, GW_E_UNAVAILABLE);
}

void gw_chat_on_delivery(struct gw *gw, natsMsg *msg)
{
	Sb__Envelope *env =
	    sb_envelope_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	if (!env || env->body_case != SB__ENVELOPE__BODY_CHAT_MESSAGE) {
		SB_WARN("bad_delivery", "subject=%s", natsMsg_GetSubject(msg));
		sb_envelope_free(env);
		return;
	}
	gw_backlog_note_chat_id(gw, env->chat_message->id);
	struct gw_user *u = gw_users_find(gw, env->chat_message->receiver_id);
	if (u && u->chat) {
		struct gw_buf *b = gw_render_chat_message(env->chat_message);
		if (b) {
			for (struct gw_conn *c = u->chat; c; c = c->next_of_user)
				gw_conn_deliver(gw, c, b);
			gw_buf_unref(b);
		}
	}
	sb_envelope_free(env);
}

static void on_send_reply(struct gw *gw, struct gw_conn *c, const Sb__Envelope *env)
{
	if (env->body_case == SB__ENVELOPE__BODY_CHAT_SENT) {
		struct gw_buf *b = gw_render_message_sent(env->chat_sent);
		gw->m.messages_acked++;
		gw_backlog_note_chat_id(gw, env->chat_sent->id);
		gw_conn_send(gw, c, b);
		gw_buf_unref(b);
		return;
	}
	const char *sentence = GW_E_UNAVAILABLE;
	if (env->body_case == SB__ENVELOPE__BODY_ERROR) {
		switch (env->error->code) {
		case SB__ERROR_CODE__ERR_UNKNOWN_RECEIVER:
			sentence = GW_E_UNKNOWN_RECEIVER;
			break;
		case SB__ERROR_CODE__ERR_STORAGE:
			sentence = GW_E_STORAGE;
			break;
		case SB__ERROR_CODE__ERR_BAD_REQUEST:
			/* The gateway checked the frame: what chat-svc still refuses is its own
			 * byte limit, or a setting the two disagree on (--partitions). */
			if (env->error->text && !strcmp(env->error->text, "message is too long"))
				sentence = GW_E_MESSAGE_TOO_LONG;
			else
				SB_ERROR("send_bad_request",
				         "text=\"%s\" msg=\"check that "
				         "--partitions and the limits match chat-svc's\"",
				         env->error->text ? env->error->text : "");
			break;
		default:
			sentence = GW_E_UNAVAILABLE;
		}
		SB_INFO("send_refused", "user=%llu code=%d text=\"%s\"",
		        (unsigned long long)c->user_id, env->error->code, env->error->text);
	}
	gw_conn_send_error(gw, c, sentence);
}

static void on_sync_reply(struct gw *gw, struct gw_conn *c, const Sb__Envelope *env)
{
	if (env->body_case != SB__ENVELOPE__BODY_SYNC_REPLY) {
		gw_backlog_failed(gw, c);
		return;
	}
	const Sb__SyncReply *sr = env->sync_reply;
	for (size_t i = 0; i < sr->n_messages; i++) {
		struct gw_buf *b = gw_render_chat_message(sr->messages[i]);
		if (b)
			gw_backlog_queue(gw, c, b);
		gw_buf_unref(b);
	}
	gw_backlog_page_done(gw, c, sr->more && sr->n_messages > 0);
}

void gw_chat_on_reply(struct gw *gw, struct gw_conn *c, enum gw_req_kind kind,
                      const Sb__Envelope *env)
{
	if (kind == GW_REQ_SEND)
		on_send_reply(gw, c, env);
	else
		on_sync_reply(gw, c, env);
}

void gw_chat_on_failure(struct gw *gw, struct gw_conn *c, enum gw_req_kind kind)
{
	if (kind == GW_REQ_SEND)
		gw_conn_send_error(gw, c, GW_E_UNAVAILABLE);
	else
		gw_backlog_failed(gw, c);
}
