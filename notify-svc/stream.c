/*
 * stream: the NOTIFY stream and the notify-svc consumer, created (or brought in line)
 * at start.
 *
 * Design: the stream is what makes injection durable while notify-svc is down, so
 * notify-svc owns its configuration: the stream is created when missing and updated
 * when its subjects, max age or duplicate window drifted (say after --retention
 * changed). The consumer is created explicitly with js_AddConsumer and then bound by
 * name, never created implicitly by a subscribe call: nats.c deletes a consumer it
 * created itself on unsubscribe, and this one must outlive every restart. Until
 * JetStream answers (the server is still starting, or was started without -js) we
 * retry with backoff, saying why, rather than exit: a supervisor restart loop would
 * not make it come up any sooner.
 */
#include <string.h>
#include <time.h>

#include "notify_svc.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"

#define NS_PER_MS           1000000LL
#define DUPLICATE_WINDOW_MS (2 * 60 * 1000LL)
#define ACK_WAIT_MS         NOTIFY_ACK_WAIT_MS
#define MAX_DELIVER         5
#define RETRY_MAX_MS        5000

static const char *stream_subjects[] = {SB_SUBJ_NOTIFY_SEND, SB_SUBJ_NOTIFY_SEND_JSON};
#define N_SUBJECTS ((int)(sizeof stream_subjects / sizeof stream_subjects[0]))

static void stream_config(jsStreamConfig *sc, int64_t retention_ms)
{
	jsStreamConfig_Init(sc);
	sc->Name = SB_NOTIFY_STREAM;
	sc->Description = "Switchboard notification injections (notify-svc consumes)";
	sc->Subjects = stream_subjects;
	sc->SubjectsLen = N_SUBJECTS;
	sc->Storage = js_FileStorage;
	sc->Retention = js_LimitsPolicy;
	sc->MaxAge = retention_ms * NS_PER_MS;
	/* The server refuses a duplicate window longer than the max age. */
	sc->Duplicates =
	    (retention_ms < DUPLICATE_WINDOW_MS ? retention_ms : DUPLICATE_WINDOW_MS) * NS_PER_MS;
}

/* 1 when the live stream differs from what we want in a way an update can fix. */
static int stream_drifted(const jsStreamConfig *have, const jsStreamConfig *want)
{
	if (have->MaxAge != want->MaxAge || have->Duplicates != want->Duplicates ||
	    have->SubjectsLen != want->SubjectsLen)
		return 1;
	for (int i = 0; i < want->SubjectsLen; i++) {
		int found = 0;
		for (int j = 0; j < have->SubjectsLen; j++)
			found |= strcmp(have->Subjects[j], want->Subjects[i]) == 0;
		if (!found)
			return 1;
	}
	return 0;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Sleep up to *wait_ms (doubling it for next time), in slices, unless stopped.
 * Returns -1 when stopped. */
static int backoff(int64_t *wait_ms, _Atomic int *stop)
{
	for (int64_t slept = 0; slept < *wait_ms; slept += 50) {
		if (atomic_load(stop))
			return -1;
		sleep_ms(50);
	}
	*wait_ms = *wait_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : *wait_ms * 2;
	return atomic_load(stop) ? -1 : 0;
}

/* One attempt at the stream. 0 ok, 1 retry later, -1 give up. */
static int ensure_stream(jsCtx *js, int64_t retention_ms, int64_t *created_ns)
{
	jsStreamConfig want;
	stream_config(&want, retention_ms);
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, js, SB_NOTIFY_STREAM, NULL, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
		s = js_AddStream(&si, js, &want, NULL, &jerr);
		if (s == NATS_OK)
			SB_INFO("stream_created", "stream=%s subjects=%s,%s max_age_ms=%lld",
			        SB_NOTIFY_STREAM, stream_subjects[0], stream_subjects[1],
			        (long long)retention_ms);
	} else if (s == NATS_OK && si->Config && stream_drifted(si->Config, &want)) {
		if (si->Config->Storage != js_FileStorage)
			SB_WARN("stream_not_file",
			        "stream=%s msg=\"stream uses memory storage; injections do not "
			        "survive a NATS restart (delete the stream to let notify-svc "
			        "recreate it)\"",
			        SB_NOTIFY_STREAM);
		jsStreamInfo_Destroy(si);
		si = NULL;
		s = js_UpdateStream(&si, js, &want, NULL, &jerr);
		if (s == NATS_OK)
			SB_INFO("stream_updated", "stream=%s max_age_ms=%lld", SB_NOTIFY_STREAM,
			        (long long)retention_ms);
	}
	if (s != NATS_OK) {
		int no_js = s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr ||
		            jerr == JSNotEnabledForAccountErr;
		SB_WARN(
		    "stream_unavailable", "stream=%s error=\"%s\" js_error=%d detail=\"%s\"%s",
		    SB_NOTIFY_STREAM, natsStatus_GetText(s), (int)jerr, nats_GetLastError(NULL),
		    no_js ? " hint=\"JetStream is not answering: is nats-server running with -js?\""
		          : "");
		jsStreamInfo_Destroy(si);
		/* A refused update (e.g. subjects taken by another stream) will not fix
		 * itself, but the operator may fix it while we wait: keep trying. */
		return 1;
	}
	*created_ns = si->Created;
	jsStreamInfo_Destroy(si);
	return 0;
}

static int ensure_consumer(jsCtx *js)
{
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s =
	    js_GetConsumerInfo(&ci, js, SB_NOTIFY_STREAM, SB_NOTIFY_CONSUMER, NULL, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
		jsConsumerConfig cc;
		jsConsumerConfig_Init(&cc);
		cc.Durable = SB_NOTIFY_CONSUMER;
		cc.Description = "notify-svc: stores, fans out and acks injections";
		cc.AckPolicy = js_AckExplicit;
		cc.DeliverPolicy = js_DeliverAll;
		cc.AckWait = ACK_WAIT_MS * NS_PER_MS;
		cc.MaxDeliver = MAX_DELIVER;
		s = js_AddConsumer(&ci, js, SB_NOTIFY_STREAM, &cc, NULL, &jerr);
		if (s == NATS_OK)
			SB_INFO("consumer_created",
			        "stream=%s consumer=%s ack_wait_ms=%lld "
			        "max_deliver=%d",
			        SB_NOTIFY_STREAM, SB_NOTIFY_CONSUMER, ACK_WAIT_MS, MAX_DELIVER);
	}
	if (s != NATS_OK) {
		SB_WARN("consumer_unavailable",
		        "consumer=%s error=\"%s\" js_error=%d detail=\"%s\"", SB_NOTIFY_CONSUMER,
		        natsStatus_GetText(s), (int)jerr, nats_GetLastError(NULL));
		jsConsumerInfo_Destroy(ci);
		return 1;
	}
	if (ci->Config && ci->Config->DeliverSubject && *ci->Config->DeliverSubject) {
		SB_ERROR("consumer_wrong_kind",
		         "consumer=%s msg=\"a push consumer of this name exists; delete it so "
		         "notify-svc can create its pull consumer\"",
		         SB_NOTIFY_CONSUMER);
		jsConsumerInfo_Destroy(ci);
		return -1;
	}
	if (ci->Config && (ci->Config->AckWait != ACK_WAIT_MS * NS_PER_MS ||
	                   ci->Config->MaxDeliver != MAX_DELIVER))
		SB_WARN("consumer_config",
		        "consumer=%s ack_wait_ns=%lld max_deliver=%lld "
		        "msg=\"differs from the defaults; kept as it is\"",
		        SB_NOTIFY_CONSUMER, (long long)ci->Config->AckWait,
		        (long long)ci->Config->MaxDeliver);
	jsConsumerInfo_Destroy(ci);
	return 0;
}

/* A previous instance that died mid-batch leaves messages delivered but unacked; they
 * come back only when their ack wait expires, and anything fetched before that would
 * overtake them. So when the consumer has acks pending at start, wait one ack wait
 * (interruptible) and the redeliveries keep stream order. */
static void await_redeliveries(jsCtx *js, _Atomic int *stop)
{
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	if (js_GetConsumerInfo(&ci, js, SB_NOTIFY_STREAM, SB_NOTIFY_CONSUMER, NULL, &jerr) !=
	    NATS_OK)
		return;
	int64_t pending = (int64_t)ci->NumAckPending;
	jsConsumerInfo_Destroy(ci);
	if (pending <= 0)
		return;
	SB_INFO("await_redeliveries", "pending=%lld wait_ms=%lld", (long long)pending,
	        (long long)(ACK_WAIT_MS + 500));
	int64_t deadline = sb_mono_ms() + ACK_WAIT_MS + 500;
	while (sb_mono_ms() < deadline && !(stop && atomic_load(stop))) {
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int notify_stream_ensure(jsCtx *js, int64_t retention_ms, _Atomic int *stop, int64_t *created_ns)
{
	int64_t wait = 100;
	for (;;) {
		int rc = ensure_stream(js, retention_ms, created_ns);
		if (rc == 0)
			rc = ensure_consumer(js);
		if (rc == 0)
			await_redeliveries(js, stop);
		if (rc <= 0)
			return rc;
		if (backoff(&wait, stop) < 0)
			return -1;
	}
}

int notify_stream_subscribe(jsCtx *js, natsSubscription **sub)
{
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = SB_NOTIFY_STREAM;
	so.Consumer = SB_NOTIFY_CONSUMER;
	jsErrCode jerr = 0;
	natsStatus s = js_PullSubscribe(sub, js, NULL, SB_NOTIFY_CONSUMER, NULL, &so, &jerr);
	if (s != NATS_OK) {
		SB_ERROR("subscribe_failed", "consumer=%s error=\"%s\" js_error=%d detail=\"%s\"",
		         SB_NOTIFY_CONSUMER, natsStatus_GetText(s), (int)jerr,
		         nats_GetLastError(NULL));
		return -1;
	}
	return 0;
}
