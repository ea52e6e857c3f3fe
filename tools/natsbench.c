/*
 * sb-natsbench: the raw NATS request/reply rate on this machine, the floor under
 * every chat message (gateway -> chat-svc -> gateway is one request/reply, plus the
 * deliver.chat publish).
 *
 * An echo responder on its own connection answers every request with its payload.
 * Two measurements, each on its own requester connection:
 *   sync   one blocking natsConnection_Request at a time: the round-trip time (what
 *          any code that waits for a reply pays per request);
 *   async  a window of W requests in flight, published with a reply subject; each
 *          reply (on the subscription's thread) publishes the next one. The rate this
 *          reaches is what correlated, non-blocking requests can do.
 * The payload carries its send time, so latency needs no table. --send-asap and
 * --global-delivery set the libnats options of the same names on every connection, to
 * show what they change (the services use global delivery and, so far, no send-asap:
 * libnats then leaves a publish to its flusher thread, which adds up to a millisecond
 * to a round trip that is otherwise tens of microseconds). Result: JSON on stdout.
 */
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "sb_config.h"

struct bench {
	natsConnection *req;
	char subject[64], reply[64];
	int64_t payload;
	_Atomic int running;
	_Atomic uint64_t sent, received;
	int64_t t_stop_ns;
	struct lg_hist lat; /* written by the reply subscription's thread only */
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_echo(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)sub;
	(void)closure;
	const char *reply = natsMsg_GetReply(msg);
	if (reply)
		natsConnection_Publish(nc, reply, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
	natsMsg_Destroy(msg);
}

static natsStatus publish_one(struct bench *b)
{
	char buf[65536];
	int64_t t = now_ns();
	memcpy(buf, &t, sizeof t);
	atomic_fetch_add(&b->sent, 1);
	return natsConnection_PublishRequest(b->req, b->subject, b->reply, buf, (int)b->payload);
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	struct bench *b = closure;
	int64_t t;
	if (natsMsg_GetDataLength(msg) >= (int)sizeof t) {
		memcpy(&t, natsMsg_GetData(msg), sizeof t);
		lg_hist_add(&b->lat, (now_ns() - t) / 1000);
	}
	atomic_fetch_add(&b->received, 1);
	natsMsg_Destroy(msg);
	if (atomic_load(&b->running))
		publish_one(b);
}

static natsStatus connect_to(natsConnection **nc, const char *url, int asap, int global)
{
	natsOptions *opts = NULL;
	natsStatus s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(opts, url);
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(opts, asap != 0);
	if (s == NATS_OK)
		s = natsOptions_UseGlobalMessageDelivery(opts, global != 0);
	if (s == NATS_OK)
		s = natsConnection_Connect(nc, opts);
	natsOptions_Destroy(opts);
	return s;
}

static json_t *result(const char *mode, uint64_t n, double secs, const struct lg_hist *h)
{
	return json_pack("{s:s,s:I,s:f,s:f,s:o}", "mode", mode, "requests", (json_int_t)n,
	                 "seconds", secs, "per_s", secs > 0 ? (double)n / secs : 0.0, "latency_us",
	                 lg_hist_json(h));
}

static json_t *run_sync(natsConnection *nc, const char *subject, int64_t payload, double seconds)
{
	struct lg_hist *h = calloc(1, sizeof *h);
	char *buf = calloc(1, (size_t)payload);
	if (!h || !buf) {
		free(h);
		free(buf);
		return json_null();
	}
	uint64_t n = 0;
	int64_t t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9);
	while (now_ns() < end) {
		natsMsg *reply = NULL;
		int64_t t = now_ns();
		if (natsConnection_Request(&reply, nc, subject, buf, (int)payload, 1000) != NATS_OK)
			break;
		lg_hist_add(h, (now_ns() - t) / 1000);
		natsMsg_Destroy(reply);
		n++;
	}
	json_t *r = result("sync", n, (double)(now_ns() - t0) / 1e9, h);
	free(h);
	free(buf);
	return r;
}

static json_t *run_async(struct bench *b, int64_t window, double seconds)
{
	natsSubscription *sub = NULL;
	natsStatus s = natsConnection_Subscribe(&sub, b->req, b->reply, on_reply, b);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(sub, -1, -1);
	if (s == NATS_OK)
		s = natsConnection_Flush(b->req);
	if (s != NATS_OK) {
		fprintf(stderr, "error: subscribe: %s\n", natsStatus_GetText(s));
		natsSubscription_Destroy(sub);
		return json_null();
	}
	atomic_store(&b->running, 1);
	int64_t t0 = now_ns();
	for (int64_t i = 0; i < window; i++)
		publish_one(b);
	natsConnection_Flush(b->req);
	while (now_ns() - t0 < (int64_t)(seconds * 1e9))
		usleep(10000);
	atomic_store(&b->running, 0);
	double secs = (double)(now_ns() - t0) / 1e9;
	uint64_t n = atomic_load(&b->received);
	/* let the window drain so the subscription can go */
	for (int i = 0; i < 200 && atomic_load(&b->received) < atomic_load(&b->sent); i++)
		usleep(10000);
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	json_t *r = result("async", n, secs, &b->lat);
	json_object_set_new(r, "window", json_integer(window));
	return r;
}

int main(int argc, char **argv)
{
	const char *url = NULL;
	int64_t payload = 0, window = 0, sync_s = 0, async_s = 0;
	int asap = 0, global = 0;
	const struct sb_opt opts[] = {
	    {"nats", NULL, SB_OPT_STR, &url, "nats://127.0.0.1:4222", "NATS server URL"},
	    {"payload", NULL, SB_OPT_INT, &payload, "128", "bytes per request (8..65536)"},
	    {"window", NULL, SB_OPT_INT, &window, "64", "async: requests in flight"},
	    {"sync-seconds", NULL, SB_OPT_INT, &sync_s, "2", "seconds of one-at-a-time requests"},
	    {"seconds", NULL, SB_OPT_INT, &async_s, "5", "seconds of windowed requests"},
	    {"send-asap", NULL, SB_OPT_BOOL, &asap, "false",
	     "libnats: write every publish at once instead of through the flusher thread"},
	    {"global-delivery", NULL, SB_OPT_BOOL, &global, "false",
	     "libnats: deliver messages on the shared thread pool (as the services do)"},
	    {NULL, NULL, 0, NULL, NULL, NULL},
	};
	int argi = sb_config_parse(argc, argv, opts,
	                           "usage: sb-natsbench [options]\n\n"
	                           "Raw NATS request/reply rate and latency against an echo "
	                           "responder; JSON on stdout.");
	if (argi <= 0)
		return argi == 0 ? 0 : 2;
	if (payload < 8 || payload > 65536 || window < 1 || window > 100000 || sync_s < 0 ||
	    async_s < 1 || async_s > 600 || sync_s > 600) {
		fprintf(stderr, "error: options out of range (see --help)\n");
		return 2;
	}
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
		rnd = (uint32_t)now_ns();
	struct bench *b = calloc(1, sizeof *b);
	if (!b)
		return 1;
	b->payload = payload;
	snprintf(b->subject, sizeof b->subject, "sbbench.echo.%08x", rnd);
	snprintf(b->reply, sizeof b->reply, "sbbench.reply.%08x", rnd);

	natsConnection *responder = NULL, *syncer = NULL;
	natsSubscription *echo = NULL;
	natsStatus s = connect_to(&responder, url, asap, global);
	if (s == NATS_OK)
		s = connect_to(&syncer, url, asap, global);
	if (s == NATS_OK)
		s = connect_to(&b->req, url, asap, global);
	if (s == NATS_OK)
		s = natsConnection_Subscribe(&echo, responder, b->subject, on_echo, NULL);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(echo, -1, -1);
	if (s == NATS_OK)
		s = natsConnection_Flush(responder);
	if (s != NATS_OK) {
		fprintf(stderr, "error: NATS %s: %s\n", url, natsStatus_GetText(s));
		return 1;
	}
	json_t *out = json_object();
	json_object_set_new(out, "nats", json_string(url));
	json_object_set_new(out, "payload_bytes", json_integer(payload));
	json_object_set_new(out, "send_asap", json_boolean(asap));
	json_object_set_new(out, "global_delivery", json_boolean(global));
	fprintf(stderr, "natsbench: %llds one at a time...\n", (long long)sync_s);
	if (sync_s > 0)
		json_object_set_new(out, "sync",
		                    run_sync(syncer, b->subject, payload, (double)sync_s));
	fprintf(stderr, "natsbench: %llds with %lld in flight...\n", (long long)async_s,
	        (long long)window);
	json_object_set_new(out, "async", run_async(b, window, (double)async_s));
	json_dumpf(out, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(out);

	natsSubscription_Unsubscribe(echo);
	natsSubscription_Destroy(echo);
	natsConnection_Destroy(b->req);
	natsConnection_Destroy(syncer);
	natsConnection_Destroy(responder);
	nats_Close();
	free(b);
	return 0;
}
