/*
 * inject: the consumer of the NOTIFY stream (notify.send, notify.send.json).
 *
 * One loop on the main thread: fetch a batch -> parse each message -> refuse the bad
 * ones (Term: never redelivered, never blocking the messages behind) -> store the
 * good ones in ONE transaction (one fsync per batch) -> publish each row on
 * deliver.notify.<user>|all -> ack -> answer Sb-Reply. Acking only after the commit
 * and the publish is the whole durability argument: a crash anywhere before the ack
 * means JetStream redelivers, UNIQUE(stream_seq, user_id) turns the second store into
 * a look-up of the rows already there, and they are published again (gateways drop an
 * id a socket already has, so a repeat costs nothing).
 *
 * Fetching: when idle we wait in a one-message pull (it returns the moment something
 * arrives, so a notification is never held back for a batch to fill), then drain what
 * queued up meanwhile with no-wait pulls of up to NOTIFY_BATCH_MAX.
 *
 * Storage failures do not spend JetStream's delivery budget (max_deliver 5 would turn
 * a disk outage of a few seconds into silent loss): the batch in hand is retried here
 * with backoff, its ack deadlines kept alive with InProgress, and nothing new is
 * fetched meanwhile. Only when asked to stop with the batch still unstored is it
 * handed back with NakWithDelay.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notify_store.h"
#include "notify_svc.h"
#include "sb_bus.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"

#define NOTIFY_BATCH_MAX    256
#define IDLE_WAIT_MS        1000
#define DRAIN_WAIT_MS       500
#define PURGE_INTERVAL_MS   (3600 * 1000LL)
#define STATS_INTERVAL_MS   (60 * 1000LL)
#define CONSUMER_CHECK_MS   (10 * 1000LL)
#define PURGE_CHUNK         5000
#define RETRY_MIN_MS        100
#define RETRY_MAX_MS        5000
#define NAK_DELAY_MS        1000
#define REJECT_LOGS_PER_SEC 20
#define META_STREAM_CREATED "stream_created_ns"
#define MAX_REPLY_SUBJECT   255

/* One fetched message on its way through a batch. */
struct item {
	natsMsg *msg; /* owned by the fetched list; NULL once dealt with */
	uint64_t seq; /* stream sequence */
	int64_t ts_ms;
	enum notify_reject why;
	struct notify_injection inj;
	struct notify_row *rows; /* after storing: one per target, ascending id */
	size_t n_rows;
	int dup; /* stored by an earlier delivery */
};

struct notify_inject {
	struct notify_svc *svc;
	struct notify_store *st;
	jsCtx *js;
	natsSubscription *sub;
	int64_t next_purge_ms;
	int64_t next_stats_ms;
	uint64_t stats_seen; /* stored + rejected + duplicates at the last stats line */
	/* rejection log rate limit (main thread only) */
	int64_t reject_window_ms;
	int reject_logged;
	uint64_t reject_suppressed;
	struct item items[NOTIFY_BATCH_MAX];
};

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

int notify_inject_create(struct notify_inject **out, struct notify_svc *svc, const char *db_path)
{
	struct notify_inject *ni = calloc(1, sizeof *ni);
	if (!ni)
		return -1;
	ni->svc = svc;
	if (notify_store_open(&ni->st, db_path) < 0) {
		free(ni);
		return -1;
	}
	*out = ni;
	return 0;
}

void notify_inject_destroy(struct notify_inject *ni)
{
	if (!ni)
		return;
	/* Destroy, not Unsubscribe: the durable consumer must outlive us. */
	natsSubscription_Destroy(ni->sub);
	jsCtx_Destroy(ni->js);
	notify_store_destroy(ni->st);
	free(ni);
}

static void purge(struct notify_inject *ni)
{
	size_t deleted = 0;
	int64_t before = sb_now_ms() - ni->svc->retention_ms;
	if (notify_store_purge(ni->st, before, PURGE_CHUNK, &deleted) < 0)
		SB_WARN("purge_failed", "deleted=%zu", deleted);
	else if (deleted)
		SB_INFO("purged", "rows=%zu before_ms=%lld", deleted, (long long)before);
	sb_metric_inc(&ni->svc->stats.purged, (int64_t)(deleted));
	ni->next_purge_ms = sb_mono_ms() + PURGE_INTERVAL_MS;
}

/* Stream sequences only mean something within one incarnation of the stream. When it
 * was deleted and recreated, sequences restart at 1 and would collide with stored
 * ones: forget them (stored rows stay; only redelivery detection is reset). */
static int reconcile_stream(struct notify_inject *ni, int64_t created_ns)
{
	int64_t known = 0;
	int rc = notify_store_meta_get(ni->st, META_STREAM_CREATED, &known);
	if (rc == NOTIFY_STORE_ERR)
		return -1;
	if (rc == NOTIFY_STORE_OK && known == created_ns)
		return 0;
	if (notify_store_begin(ni->st) < 0)
		return -1;
	if ((rc == NOTIFY_STORE_OK && notify_store_forget_stream_seqs(ni->st) < 0) ||
	    notify_store_meta_set(ni->st, META_STREAM_CREATED, created_ns) < 0 ||
	    notify_store_commit(ni->st) < 0) {
		notify_store_rollback(ni->st);
		return -1;
	}
	if (rc == NOTIFY_STORE_OK)
		SB_WARN("stream_recreated",
		        "stream=%s msg=\"stream sequences restarted; stored "
		        "rows kept, redelivery detection reset\"",
		        SB_NOTIFY_STREAM);
	return 0;
}

int notify_inject_start(struct notify_inject *ni, _Atomic int *stop)
{
	if (!ni->js) {
		jsOptions jo;
		jsOptions_Init(&jo);
		jo.Wait = 5000;
		natsStatus s = natsConnection_JetStream(&ni->js, ni->svc->bus->nc, &jo);
		if (s != NATS_OK) {
			SB_ERROR("jetstream_context", "error=\"%s\"", natsStatus_GetText(s));
			return -1;
		}
	}
	int64_t created_ns = 0;
	if (notify_stream_ensure(ni->js, ni->svc->retention_ms, stop, &created_ns) < 0)
		return -1;
	if (reconcile_stream(ni, created_ns) < 0)
		return -1;
	purge(ni);
	ni->next_stats_ms = sb_mono_ms() + STATS_INTERVAL_MS;
	return notify_stream_subscribe(ni->js, &ni->sub);
}

/* ---- outcome replies (Sb-Reply header) ---- */

/* The subject a publisher asked the outcome on, or NULL. Must be a plain subject we
 * can publish to: no wildcards, no blanks, bounded. */
static const char *reply_subject(natsMsg *msg)
{
	const char *v = NULL;
	if (natsMsgHeader_Get(msg, SB_NOTIFY_REPLY_HEADER, &v) != NATS_OK || !v || !*v)
		return NULL;
	size_t n = strlen(v);
	if (n > MAX_REPLY_SUBJECT || strpbrk(v, " \t\r\n*>") || v[0] == '.' || v[n - 1] == '.' ||
	    strstr(v, ".."))
		return NULL;
	return v;
}

static void send_outcome(struct notify_inject *ni, natsMsg *msg, const struct item *it)
{
	const char *to = reply_subject(msg);
	if (!to)
		return;
	json_t *o = NULL;
	if (it->why == NOTIFY_OK) {
		json_t *ids = json_array();
		for (size_t i = 0; ids && i < it->n_rows; i++)
			json_array_append_new(ids, json_integer((json_int_t)it->rows[i].id));
		o = json_pack("{s:b, s:o}", "ok", 1, "ids", ids);
	} else {
		o = json_pack("{s:b, s:s}", "ok", 0, "error", notify_reject_text(it->why));
	}
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	natsStatus s =
	    text ? natsConnection_PublishString(ni->svc->bus->nc, to, text) : NATS_NO_MEMORY;
	if (s != NATS_OK)
		SB_WARN("outcome_not_sent", "seq=%llu error=\"%s\"", (unsigned long long)it->seq,
		        natsStatus_GetText(s));
	free(text);
}

/* ---- classification ---- */

static void log_reject(struct notify_inject *ni, const struct item *it, const char *subject,
                       int len)
{
	int64_t now = sb_mono_ms();
	if (now - ni->reject_window_ms >= 1000) {
		ni->reject_window_ms = now;
		ni->reject_logged = 0;
	}
	if (ni->reject_logged >= REJECT_LOGS_PER_SEC) {
		ni->reject_suppressed++;
		return;
	}
	ni->reject_logged++;
	SB_WARN("notify_rejected",
	        "reason=\"%s\" code=%s seq=%llu subject=%s bytes=%d "
	        "suppressed=%llu",
	        notify_reject_text(it->why), notify_reject_name(it->why),
	        (unsigned long long)it->seq, subject, len,
	        (unsigned long long)ni->reject_suppressed);
	ni->reject_suppressed = 0;
}

/* Parse one fetched message into it. Refusals are settled here (Term + outcome);
 * returns 1 when the item goes on to be stored, else 0. */
static int classify(struct notify_inject *ni, natsMsg *msg, struct item *it)
{
	memset(it, 0, sizeof *it);
	it->msg = msg;
	jsMsgMetaData *meta = NULL;
	if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
		/* Not a JetStream message (cannot happen on a pull subscription): nothing
		 * to ack; leave it. */
		SB_WARN("notify_unexpected", "subject=%s msg=\"no JetStream metadata\"",
		        natsMsg_GetSubject(msg));
		it->msg = NULL;
		return 0;
	}
	it->seq = meta->Sequence.Stream;
	it->ts_ms = meta->Timestamp / 1000000;
	jsMsgMetaData_Destroy(meta);

	const char *subject = natsMsg_GetSubject(msg);
	const void *data = natsMsg_GetData(msg);
	int len = natsMsg_GetDataLength(msg);
	const struct notify_limits *lim = &ni->svc->limits;
	if (subject && strcmp(subject, SB_SUBJ_NOTIFY_SEND_JSON) == 0)
		it->why = notify_inject_parse_json(data, (size_t)len, lim, &it->inj);
	else if (subject && strcmp(subject, SB_SUBJ_NOTIFY_SEND) == 0)
		it->why = notify_inject_parse_proto(data, (size_t)len, lim, &it->inj);
	else
		it->why = NOTIFY_E_SUBJECT;

	if (it->why == NOTIFY_OK)
		return 1;
	if (it->why == NOTIFY_E_NOMEM) {
		SB_ERROR("out_of_memory", "where=inject seq=%llu", (unsigned long long)it->seq);
		natsMsg_NakWithDelay(msg, NAK_DELAY_MS, NULL);
		it->msg = NULL;
		return 0;
	}
	sb_metric_inc(&ni->svc->stats.rejected[it->why], 1);
	log_reject(ni, it, subject ? subject : "-", len);
	natsStatus s = natsMsg_Term(msg, NULL);
	if (s != NATS_OK)
		SB_WARN("term_failed", "seq=%llu error=\"%s\"", (unsigned long long)it->seq,
		        natsStatus_GetText(s));
	send_outcome(ni, msg, it);
	it->msg = NULL;
	return 0;
}

/* ---- storing ---- */

static void free_rows(struct item *it)
{
	notify_row_free_list(it->rows, it->n_rows);
	it->rows = NULL;
	it->n_rows = 0;
	it->dup = 0;
}

/* Inside the batch transaction. 0 or -1. */
static int store_item(struct notify_inject *ni, struct item *it)
{
	int rc = notify_store_find_seq(ni->st, it->seq, &it->rows, &it->n_rows);
	if (rc == NOTIFY_STORE_OK) {
		it->dup = 1;
		return 0;
	}
	if (rc != NOTIFY_STORE_NOT_FOUND)
		return -1;
	size_t n = it->inj.all ? 1 : it->inj.n_user_ids;
	it->rows = calloc(n, sizeof *it->rows);
	if (!it->rows) {
		SB_ERROR("out_of_memory", "where=inject_rows rows=%zu", n);
		return -1;
	}
	it->n_rows = n;
	int dup_rows = 0;
	for (size_t i = 0; i < n; i++) {
		struct notify_row *r = &it->rows[i];
		r->user_id = it->inj.all ? 0 : it->inj.user_ids[i];
		r->title = it->inj.title;
		r->message = it->inj.message;
		r->type = it->inj.type;
		r->ts_ms = it->ts_ms;
		rc = notify_store_insert(ni->st, it->seq, r);
		if (rc == NOTIFY_STORE_ERR)
			return -1;
		dup_rows |= rc == NOTIFY_STORE_DUP;
	}
	if (dup_rows) {
		/* Cannot happen (an injection's rows commit together), but if it did the
		 * stored rows are the truth: answer with them. */
		free_rows(it);
		if (notify_store_find_seq(ni->st, it->seq, &it->rows, &it->n_rows) !=
		    NOTIFY_STORE_OK)
			return -1;
		it->dup = 1;
	}
	return 0;
}

/* Store every pending item in one transaction. 0, or -1 with everything rolled back
 * and no item holding rows. */
static int store_batch(struct notify_inject *ni, struct item **pending, size_t n)
{
	if (notify_store_begin(ni->st) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (store_item(ni, pending[i]) < 0)
			goto fail;
	}
	if (notify_store_commit(ni->st) < 0)
		goto fail;
	return 0;
fail:
	notify_store_rollback(ni->st);
	for (size_t i = 0; i < n; i++)
		free_rows(pending[i]);
	return -1;
}

/* ---- after the commit ---- */

/* Publish one row on deliver.notify.<user>|all. */
static natsStatus publish_row(struct notify_inject *ni, const struct item *it,
                              const struct notify_row *r)
{
	char subject[64], rid[40];
	if (r->user_id)
		snprintf(subject, sizeof subject, "%s.%llu", SB_SUBJ_DELIVER_NOTIFY,
		         (unsigned long long)r->user_id);
	else
		snprintf(subject, sizeof subject, "%s.all", SB_SUBJ_DELIVER_NOTIFY);
	snprintf(rid, sizeof rid, "notify-%llu", (unsigned long long)it->seq);
	Sb__Notification n = SB__NOTIFICATION__INIT;
	n.id = r->id;
	n.user_id = r->user_id;
	n.title = (char *)r->title;
	n.message = (char *)r->message;
	n.notification_type = (char *)r->type;
	n.timestamp_ms = r->ts_ms;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	env.request_id = rid;
	env.body_case = SB__ENVELOPE__BODY_NOTIFICATION;
	env.notification = &n;
	return sb_bus_publish(ni->svc->bus, subject, NULL, &env);
}

static void finish_item(struct notify_inject *ni, struct item *it)
{
	natsStatus s = NATS_OK;
	for (size_t i = 0; s == NATS_OK && i < it->n_rows; i++)
		s = publish_row(ni, it, &it->rows[i]);
	if (s != NATS_OK) {
		/* Stored but not (fully) published: let JetStream bring it back; the
		 * redelivery finds the rows and publishes them again. */
		SB_WARN("publish_failed", "seq=%llu error=\"%s\"", (unsigned long long)it->seq,
		        natsStatus_GetText(s));
		natsMsg_NakWithDelay(it->msg, NAK_DELAY_MS, NULL);
		it->msg = NULL;
		return;
	}
	sb_metric_inc(&ni->svc->stats.published, (int64_t)(it->n_rows));
	if (it->dup) {
		sb_metric_inc(&ni->svc->stats.duplicates, 1);
	} else {
		sb_metric_inc(&ni->svc->stats.stored, 1);
		sb_metric_inc(&ni->svc->stats.rows, (int64_t)(it->n_rows));
	}
	s = natsMsg_Ack(it->msg, NULL);
	if (s != NATS_OK) /* redelivered after ack_wait, then recognised as a duplicate */
		SB_WARN("ack_failed", "seq=%llu error=\"%s\"", (unsigned long long)it->seq,
		        natsStatus_GetText(s));
	SB_DEBUG("notify_stored", "seq=%llu rows=%zu first_id=%llu duplicate=%d broadcast=%d",
	         (unsigned long long)it->seq, it->n_rows,
	         (unsigned long long)(it->n_rows ? it->rows[0].id : 0), it->dup, it->inj.all);
	send_outcome(ni, it->msg, it);
	it->msg = NULL;
}

/* Storage is failing: keep the batch, keep its ack deadlines alive, retry with
 * backoff until it commits or we are told to stop. 0 once stored, -1 when stopped
 * (the batch was handed back with NakWithDelay). */
static int store_with_retry(struct notify_inject *ni, struct item **pending, size_t n,
                            _Atomic int *stop)
{
	int64_t wait = RETRY_MIN_MS;
	int64_t last_progress = sb_mono_ms();
	for (int attempt = 1;; attempt++) {
		if (store_batch(ni, pending, n) == 0)
			return 0;
		sb_metric_inc(&ni->svc->stats.store_failures, 1);
		SB_ERROR("store_failed", "batch=%zu attempt=%d retry_ms=%lld", n, attempt,
		         (long long)wait);
		for (int64_t slept = 0; slept < wait && !atomic_load(stop); slept += 50) {
			sleep_ms(50);
			if (sb_mono_ms() - last_progress >= NOTIFY_ACK_WAIT_MS / 3) {
				/* reset the server's redelivery timer well within the ack wait */
				for (size_t i = 0; i < n; i++)
					natsMsg_InProgress(pending[i]->msg, NULL);
				last_progress = sb_mono_ms();
			}
		}
		if (atomic_load(stop)) {
			for (size_t i = 0; i < n; i++) {
				natsMsg_NakWithDelay(pending[i]->msg, NAK_DELAY_MS, NULL);
				pending[i]->msg = NULL;
			}
			SB_WARN("batch_returned",
			        "batch=%zu msg=\"not stored; handed back to "
			        "JetStream for redelivery\"",
			        n);
			return -1;
		}
		wait = wait * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : wait * 2;
	}
}

static void process_batch(struct notify_inject *ni, natsMsgList *list, _Atomic int *stop)
{
	struct item *pending[NOTIFY_BATCH_MAX];
	size_t n = 0;
	int count = list->Count > NOTIFY_BATCH_MAX ? NOTIFY_BATCH_MAX : list->Count;
	for (int i = 0; i < count; i++)
		if (classify(ni, list->Msgs[i], &ni->items[i]))
			pending[n++] = &ni->items[i];
	uint64_t t0 = mono_us();
	if (n > 0 && store_with_retry(ni, pending, n, stop) == 0) {
		sb_metric_observe_us(&ni->svc->stats.batch_seconds, mono_us() - t0);
		for (size_t i = 0; i < n; i++)
			finish_item(ni, pending[i]);
	}
	for (int i = 0; i < count; i++) {
		free_rows(&ni->items[i]);
		notify_injection_clear(&ni->items[i].inj);
	}
}

/* ---- the loop ---- */

/* Rebind after the consumer (or the stream) vanished under us. */
static void rebind(struct notify_inject *ni, _Atomic int *stop)
{
	SB_WARN("consumer_rebind", "consumer=%s", SB_NOTIFY_CONSUMER);
	natsSubscription_Destroy(ni->sub);
	ni->sub = NULL;
	while (!atomic_load(stop)) {
		if (notify_inject_start(ni, stop) == 0)
			return;
		natsSubscription_Destroy(ni->sub);
		ni->sub = NULL;
		sleep_ms(1000);
	}
}

static void maybe_stats(struct notify_inject *ni)
{
	if (sb_mono_ms() < ni->next_stats_ms)
		return;
	ni->next_stats_ms = sb_mono_ms() + STATS_INTERVAL_MS;
	struct notify_stats *st = &ni->svc->stats;
	uint64_t seen = 0;
	struct sb_metric *watched[] = {&st->stored, &st->duplicates, &st->syncs, &st->receipts,
	                               &st->store_failures};
	for (size_t i = 0; i < sizeof watched / sizeof watched[0]; i++)
		seen += (uint64_t)atomic_load(&watched[i]->value);
	for (int i = 1; i < NOTIFY_E_COUNT; i++)
		seen += (uint64_t)atomic_load(&st->rejected[i].value);
	if (seen != ni->stats_seen)
		notify_stats_log(ni->svc, "stats");
	ni->stats_seen = seen;
}

/* Is our consumer still there? A deleted consumer (or stream) makes pulls simply time
 * out, so when idle we ask now and then. 1 when it is known to be gone. */
static int consumer_gone(struct notify_inject *ni)
{
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s =
	    js_GetConsumerInfo(&ci, ni->js, SB_NOTIFY_STREAM, SB_NOTIFY_CONSUMER, NULL, &jerr);
	jsConsumerInfo_Destroy(ci);
	SB_DEBUG("consumer_check", "status=\"%s\" js_error=%d", natsStatus_GetText(s), (int)jerr);
	return s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr;
}

void notify_inject_run(struct notify_inject *ni, _Atomic int *stop)
{
	int idle = 1;
	int errors = 0;
	int64_t next_check = sb_mono_ms() + CONSUMER_CHECK_MS;
	while (!atomic_load(stop)) {
		if (!ni->sub) {
			rebind(ni, stop);
			continue;
		}
		natsMsgList list = {NULL, 0};
		jsErrCode jerr = 0;
		natsStatus s;
		if (idle) {
			s = natsSubscription_Fetch(&list, ni->sub, 1, IDLE_WAIT_MS, &jerr);
		} else {
			jsFetchRequest req;
			jsFetchRequest_Init(&req);
			req.Batch = NOTIFY_BATCH_MAX;
			req.NoWait = true;
			req.Expires = (int64_t)DRAIN_WAIT_MS * 1000000;
			s = natsSubscription_FetchRequest(&list, ni->sub, &req);
		}
		int check = 0;
		if (s == NATS_OK && list.Count > 0) {
			process_batch(ni, &list, stop);
			idle = 0;
			errors = 0;
		} else if (s == NATS_OK || s == NATS_TIMEOUT || s == NATS_NOT_FOUND) {
			idle = 1;
			errors = 0;
			check = sb_mono_ms() >= next_check;
		} else {
			/* Disconnected (libnats reconnects by itself), or the consumer is gone. */
			idle = 1;
			if (errors++ % 10 == 0)
				SB_WARN("fetch_failed", "error=\"%s\" js_error=%d detail=\"%s\"",
				        natsStatus_GetText(s), (int)jerr, nats_GetLastError(NULL));
			sleep_ms(errors < 10 ? 100 * errors : 1000);
			check = atomic_load(&ni->svc->bus->connected);
		}
		natsMsgList_Destroy(&list);
		if (check) {
			next_check = sb_mono_ms() + CONSUMER_CHECK_MS;
			if (consumer_gone(ni)) {
				natsSubscription_Destroy(ni->sub);
				ni->sub = NULL; /* rebound at the top of the loop */
			}
		}
		if (sb_mono_ms() >= ni->next_purge_ms)
			purge(ni);
		maybe_stats(ni);
	}
}
