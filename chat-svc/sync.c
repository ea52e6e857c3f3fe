/*
 * sync: chat.sync.<p> -- one page of a receiver's undelivered backlog, or (resync) of
 * everything after an id: what a socket missed while its gateway's bus was down.
 *
 * Reads go to the partition's read-only SQLite handle: in WAL mode they see the last
 * commit and never wait for the writer's fsync. A page is bounded twice: by the
 * requested limit (0 -> 200, at most 1000) and by the server's max payload, since a
 * thousand long messages would not fit one NATS message; `more` tells the gateway to
 * ask again after the last id it got.
 */
#include <stdlib.h>

#include "chat_common.h"
#include "chat_store.h"
#include "chat_svc.h"
#include "sb_bus.h"
#include "sb_log.h"
#include "sb_msg.h"
#include "sb_util.h"

/* Room kept for the envelope around the messages. */
#define SYNC_ENVELOPE_SLACK 1024

static size_t payload_budget(natsConnection *nc)
{
	int64_t max = natsConnection_GetMaxPayload(nc);
	if (max <= 0)
		max = 1024 * 1024;
	return max > 2 * SYNC_ENVELOPE_SLACK ? (size_t)max - SYNC_ENVELOPE_SLACK
	                                     : SYNC_ENVELOPE_SLACK;
}

/* Returns how many messages went out (the rest wait for the next page). */
static size_t reply_page(struct chat_partition *part, natsConnection *nc, const char *reply,
                         const char *rid, const struct chat_msg *rows, size_t n, int more)
{
	Sb__ChatMessage *items = NULL;
	Sb__ChatMessage **ptrs = NULL;
	size_t budget = payload_budget(nc), used = 0, count = 0;
	if (n) {
		items = calloc(n, sizeof *items);
		ptrs = calloc(n, sizeof *ptrs);
		if (!items || !ptrs) {
			SB_ERROR("out_of_memory", "where=chat_sync");
			chat_reply_error(part->svc->bus, reply, rid,
			                 SB__ERROR_CODE__ERR_UNAVAILABLE,
			                 "chat service overloaded");
			goto done;
		}
	}
	for (size_t i = 0; i < n; i++) {
		Sb__ChatMessage *cm = &items[i];
		sb__chat_message__init(cm);
		cm->id = rows[i].id;
		cm->sender_id = rows[i].sender_id;
		cm->sender_name = (char *)rows[i].sender_name;
		cm->receiver_id = rows[i].receiver_id;
		cm->message = (char *)rows[i].body;
		cm->has_attachment = rows[i].attachment != NULL;
		if (rows[i].attachment)
			cm->attachment = (char *)rows[i].attachment;
		cm->timestamp_ms = rows[i].ts_ms;
		/* + tag and length prefix of the repeated field */
		size_t size = sb__chat_message__get_packed_size(cm) + 11;
		if (count > 0 && used + size > budget) {
			more = 1;
			break;
		}
		used += size;
		ptrs[count++] = cm;
	}
	Sb__SyncReply page = SB__SYNC_REPLY__INIT;
	page.n_messages = count;
	page.messages = ptrs;
	page.more = more;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	if (rid)
		env.request_id = (char *)rid;
	env.body_case = SB__ENVELOPE__BODY_SYNC_REPLY;
	env.sync_reply = &page;
	natsStatus s = sb_bus_publish(part->svc->bus, reply, NULL, &env);
	sb_metric_inc(&part->svc->synced, (int64_t)count);
	if (s != NATS_OK) {
		char safe[CHAT_RID_MAX];
		SB_WARN("sync_reply_failed", "request_id=%s messages=%zu error=\"%s\"",
		        chat_safe_rid(rid, safe), count, natsStatus_GetText(s));
	}
done:
	free(ptrs);
	free(items);
	return count;
}

/* libnats delivery thread. */
void chat_sync_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)sub;
	struct chat_partition *part = closure;
	struct chat_svc *svc = part->svc;
	const char *reply = natsMsg_GetReply(msg);
	Sb__Envelope *env =
	    sb_envelope_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	const char *rid = env ? env->request_id : NULL;
	struct chat_msg *rows = NULL;
	size_t n = 0;
	int more = 0;

	if (!reply || !*reply)
		goto done; /* nobody to answer */
	if (!env || env->body_case != SB__ENVELOPE__BODY_SYNC_REQUEST || !env->sync_request) {
		chat_reply_error(svc->bus, reply, rid, SB__ERROR_CODE__ERR_BAD_REQUEST,
		                 "malformed request");
		goto done;
	}
	const Sb__SyncRequest *req = env->sync_request;
	if (req->user_id == 0 || sb_partition(req->user_id, svc->partitions) != part->id) {
		chat_reply_error(svc->bus, reply, rid, SB__ERROR_CODE__ERR_BAD_REQUEST,
		                 req->user_id ? "user is not in this partition"
		                              : "user_id is required");
		goto done;
	}
	uint32_t limit = req->limit ? req->limit : CHAT_SYNC_DEFAULT_LIMIT;
	if (limit > CHAT_SYNC_MAX_LIMIT)
		limit = CHAT_SYNC_MAX_LIMIT;

	pthread_mutex_lock(&part->rd_lock);
	int rc = chat_store_list(part->rd, req->user_id, req->after_id, req->resync, limit, &rows,
	                         &n, &more);
	pthread_mutex_unlock(&part->rd_lock);
	if (rc < 0) {
		chat_reply_error(svc->bus, reply, rid, SB__ERROR_CODE__ERR_STORAGE,
		                 "messages could not be read");
		goto done;
	}
	size_t sent = reply_page(part, nc, reply, rid, rows, n, more);
	char safe[CHAT_RID_MAX];
	SB_DEBUG("sync", "request_id=%s user_id=%llu after_id=%llu resync=%d messages=%zu",
	         chat_safe_rid(rid, safe), (unsigned long long)req->user_id,
	         (unsigned long long)req->after_id, (int)req->resync, sent);
done:
	chat_msg_free_list(rows, n);
	sb_envelope_free(env);
	sb_msg_free(msg);
}
