/*
 * sync: notify.sync (request/reply, queue group notify-svc) -- one page of what a
 * user's notification sockets have not had yet.
 *
 * The gateway asks when a notification socket connects (and again after the last id
 * of each page while `more` is set). The rule -- own rows and broadcasts above the
 * user's delivery cursor, broadcasts only from the user's first sync on, within the
 * retention window -- is the store's (notify_store.h). Reads go to the service's read
 * handle: in WAL mode they see the last commit and never wait for the consumer's
 * fsync. A page is bounded by the requested limit (0 -> 200, at most 1000) and by the
 * server's max payload; `more` says when to ask again.
 */
#include <stdlib.h>
#include <time.h>

#include "notify_store.h"
#include "notify_svc.h"
#include "sb_bus.h"
#include "sb_log.h"
#include "sb_msg.h"
#include "sb_util.h"

/* Room kept for the envelope around the notifications. */
#define SYNC_ENVELOPE_SLACK 1024

static void reply_error(struct sb_bus *bus, const char *reply, const char *rid, Sb__ErrorCode code,
                        const char *text)
{
	Sb__Error err = SB__ERROR__INIT;
	err.code = code;
	err.text = (char *)text;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	if (rid)
		env.request_id = (char *)rid;
	env.body_case = SB__ENVELOPE__BODY_ERROR;
	env.error = &err;
	natsStatus s = sb_bus_publish(bus, reply, NULL, &env);
	if (s != NATS_OK)
		SB_WARN("sync_reply_failed", "error=\"%s\"", natsStatus_GetText(s));
}

static size_t payload_budget(natsConnection *nc)
{
	int64_t max = natsConnection_GetMaxPayload(nc);
	if (max <= 0)
		max = 1024 * 1024;
	return max > 2 * SYNC_ENVELOPE_SLACK ? (size_t)max - SYNC_ENVELOPE_SLACK
	                                     : SYNC_ENVELOPE_SLACK;
}

/* Reply with as many rows as fit; returns how many went out. */
static size_t reply_page(struct notify_svc *svc, natsConnection *nc, const char *reply,
                         const char *rid, const struct notify_row *rows, size_t n, int more)
{
	Sb__Notification *items = NULL;
	Sb__Notification **ptrs = NULL;
	size_t budget = payload_budget(nc), used = 0, count = 0;
	if (n) {
		items = calloc(n, sizeof *items);
		ptrs = calloc(n, sizeof *ptrs);
		if (!items || !ptrs) {
			SB_ERROR("out_of_memory", "where=notify_sync");
			reply_error(svc->bus, reply, rid, SB__ERROR_CODE__ERR_UNAVAILABLE,
			            "notification service overloaded");
			goto done;
		}
	}
	for (size_t i = 0; i < n; i++) {
		Sb__Notification *m = &items[i];
		sb__notification__init(m);
		m->id = rows[i].id;
		m->user_id = rows[i].user_id;
		m->title = (char *)rows[i].title;
		m->message = (char *)rows[i].message;
		m->notification_type = (char *)rows[i].type;
		m->timestamp_ms = rows[i].ts_ms;
		/* + tag and length prefix of the repeated field */
		size_t size = sb__notification__get_packed_size(m) + 11;
		if (count > 0 && used + size > budget) {
			more = 1;
			break;
		}
		used += size;
		ptrs[count++] = m;
	}
	Sb__NotifySyncReply page = SB__NOTIFY_SYNC_REPLY__INIT;
	page.n_notifications = count;
	page.notifications = ptrs;
	page.more = more;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	if (rid)
		env.request_id = (char *)rid;
	env.body_case = SB__ENVELOPE__BODY_NOTIFY_SYNC_REPLY;
	env.notify_sync_reply = &page;
	natsStatus s = sb_bus_publish(svc->bus, reply, NULL, &env);
	if (s != NATS_OK)
		SB_WARN("sync_reply_failed", "notifications=%zu error=\"%s\"", count,
		        natsStatus_GetText(s));
done:
	free(ptrs);
	free(items);
	return count;
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* libnats delivery thread. */
void notify_sync_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)sub;
	struct notify_svc *svc = closure;
	uint64_t t0 = mono_us();
	const char *reply = natsMsg_GetReply(msg);
	Sb__Envelope *env =
	    sb_envelope_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	const char *rid = env ? env->request_id : NULL;
	struct notify_row *rows = NULL;
	size_t n = 0;
	int more = 0;

	sb_metric_inc(&svc->stats.syncs, 1);
	if (!reply || !*reply)
		goto done; /* nobody to answer */
	if (!env || env->body_case != SB__ENVELOPE__BODY_SYNC_REQUEST || !env->sync_request) {
		reply_error(svc->bus, reply, rid, SB__ERROR_CODE__ERR_BAD_REQUEST,
		            "malformed request");
		goto done;
	}
	const Sb__SyncRequest *req = env->sync_request;
	if (req->user_id == 0 || req->user_id > (uint64_t)INT64_MAX) {
		reply_error(svc->bus, reply, rid, SB__ERROR_CODE__ERR_BAD_REQUEST,
		            "user_id is required");
		goto done;
	}
	uint32_t limit = req->limit ? req->limit : NOTIFY_SYNC_DEFAULT_LIMIT;
	if (limit > NOTIFY_SYNC_MAX_LIMIT)
		limit = NOTIFY_SYNC_MAX_LIMIT;
	int64_t min_ts = sb_now_ms() - svc->retention_ms;

	pthread_mutex_lock(&svc->rd_lock);
	int rc = notify_store_sync(svc->rd, req->user_id, req->after_id, req->resync, min_ts, limit,
	                           &rows, &n, &more);
	pthread_mutex_unlock(&svc->rd_lock);
	if (rc < 0) {
		reply_error(svc->bus, reply, rid, SB__ERROR_CODE__ERR_STORAGE,
		            "notifications could not be read");
		goto done;
	}
	size_t sent = reply_page(svc, nc, reply, rid, rows, n, more);
	sb_metric_observe_us(&svc->stats.sync_seconds, mono_us() - t0);
	SB_DEBUG("sync", "user_id=%llu after_id=%llu resync=%d notifications=%zu more=%d",
	         (unsigned long long)req->user_id, (unsigned long long)req->after_id,
	         (int)req->resync, sent, more || sent < n);
done:
	notify_row_free_list(rows, n);
	sb_envelope_free(env);
	sb_msg_free(msg);
}
