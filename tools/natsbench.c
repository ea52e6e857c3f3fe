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
 * Both use libnats' own threads. --send-asap and --global-delivery set the libnats
 * options of the same names on every connection, to show what they change (without
 * send-asap libnats leaves a publish to its flusher thread, which adds up to a
 * millisecond to a round trip that is otherwise tens of microseconds).
 *
 * --rate R runs a third measurement instead, "paced": the bus as the services use it,
 * nothing else. Requests leave open-loop at R a second for --seconds, each timed from
 * when it was due (as sb-loadgen's chat-rate times a message), through the services'
 * own bus I/O (common/sb_busio.h): the requester is one thread that reads and writes its
 * socket between timer ticks, as the gateway's loop does, and the responder one thread
 * that reads a synchronous subscription and flushes its replies once per turn, as
 * chat-svc's writer does. Its p99 at 5,000/s is what a chat message's bus round trip
 * costs on this machine before any storage, JSON or WebSocket work.
 * The payload carries its send (or due) time, so latency needs no table. Result: JSON
 * on stdout.
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "procstat.h"
#include "sb_busio.h"
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

/* --- paced: the services' bus I/O at a fixed offered rate --- */

/* One connection read and written by a thread of ours (sb_busio), with one
 * synchronous subscription that thread polls. */
struct busconn {
	struct sb_busio *io;
	natsConnection *nc;
	natsSubscription *sub;
};

static natsStatus busconn_open(struct busconn *c, const char *url, const char *subject)
{
	natsOptions *opts = NULL;
	if (sb_busio_create(&c->io) < 0)
		return NATS_NO_MEMORY;
	natsStatus s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(opts, url);
	if (s == NATS_OK)
		s = sb_busio_configure(c->io, opts);
	if (s == NATS_OK)
		s = natsConnection_Connect(&c->nc, opts);
	natsOptions_Destroy(opts);
	if (s == NATS_OK)
		s = natsConnection_SubscribeSync(&c->sub, c->nc, subject);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(c->sub, -1, -1);
	return s;
}

static void busconn_close(struct busconn *c)
{
	if (c->sub) {
		natsSubscription_Unsubscribe(c->sub);
		natsSubscription_Destroy(c->sub);
	}
	if (c->nc && c->io)
		sb_busio_start_thread(c->io); /* someone must run the socket while it closes */
	natsConnection_Destroy(c->nc);
	sb_busio_destroy(c->io);
}

/* Hand each message the subscription holds now to fn; returns how many. */
static int busconn_drain(struct busconn *c, void (*fn)(struct busconn *, natsMsg *, void *),
                         void *arg)
{
	int pending = 0, n = 0;
	if (natsSubscription_GetPending(c->sub, &pending, NULL) != NATS_OK)
		return 0;
	natsMsg *msg = NULL;
	while (pending-- > 0 && natsSubscription_NextMsg(&msg, c->sub, 0) == NATS_OK) {
		fn(c, msg, arg);
		natsMsg_Destroy(msg);
		n++;
	}
	return n;
}

struct responder {
	struct busconn c;
	pthread_t thread;
	int started;
	_Atomic int stop;
	_Atomic uint64_t errors; /* replies libnats refused */
};

static void echo_one(struct busconn *c, natsMsg *msg, void *arg)
{
	struct responder *r = arg;
	const char *reply = natsMsg_GetReply(msg);
	if (reply && natsConnection_Publish(c->nc, reply, natsMsg_GetData(msg),
	                                    natsMsg_GetDataLength(msg)) != NATS_OK)
		atomic_fetch_add(&r->errors, 1);
}

/* chat-svc's writer without the writer: read, answer, one flush per turn. */
static void *responder_run(void *arg)
{
	struct responder *r = arg;
	sb_busio_own(r->c.io);
	while (!atomic_load(&r->stop)) {
		sb_busio_dispatch(r->c.io, 50);
		busconn_drain(&r->c, echo_one, r);
		sb_busio_flush(r->c.io);
	}
	return NULL;
}

struct paced {
	int64_t t0, step_ns;
	uint64_t replies;
	struct lg_hist *lat;
};

static void record_reply(struct busconn *c, natsMsg *msg, void *arg)
{
	(void)c;
	struct paced *p = arg;
	int64_t due;
	if (natsMsg_GetDataLength(msg) < (int)sizeof due)
		return;
	memcpy(&due, natsMsg_GetData(msg), sizeof due);
	lg_hist_add(p->lat, (now_ns() - due) / 1000);
	p->replies++;
}

/* The requester: the gateway's loop without the WebSockets. A timer tick publishes
 * every request that has come due; the socket is read when it has something; what the
 * turn published leaves in one write before the thread sleeps again. */
static json_t *run_paced(const char *url, const char *subject, const char *reply_subject,
                         int64_t payload, int64_t rate, int64_t seconds)
{
	struct responder r = {0};
	struct busconn q = {0};
	struct paced p = {.step_ns = 1000000000LL / rate, .lat = calloc(1, sizeof *p.lat)};
	char *buf = calloc(1, (size_t)payload);
	int ep = -1, tfd = -1;
	json_t *out = json_null();
	natsStatus s = p.lat && buf ? NATS_OK : NATS_NO_MEMORY;
	if (s == NATS_OK)
		s = busconn_open(&r.c, url, subject);
	if (s == NATS_OK) {
		r.started = pthread_create(&r.thread, NULL, responder_run, &r) == 0;
		if (!r.started)
			s = NATS_SYS_ERROR;
	}
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(r.c.nc, 5000); /* the echo subscription is in */
	if (s != NATS_OK) {
		fprintf(stderr, "error: paced responder: %s\n", natsStatus_GetText(s));
		goto out;
	}
	/* The reply subscription's SUB leaves on the loop's first turn, ahead of the first
	 * request (a connection's protocol is handled in order): no flush round trip. */
	if ((s = busconn_open(&q, url, reply_subject)) != NATS_OK) {
		fprintf(stderr, "error: paced requester: %s\n", natsStatus_GetText(s));
		goto out;
	}
	sb_busio_own(q.io);
	ep = epoll_create1(EPOLL_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct epoll_event evt = {.events = EPOLLIN, .data.u32 = 0}, evb = evt;
	evb.data.u32 = 1;
	if (ep < 0 || tfd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &evt) < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, sb_busio_fd(q.io), &evb) < 0) {
		perror("paced: epoll/timerfd");
		goto out;
	}
	const uint64_t total = (uint64_t)rate * (uint64_t)seconds;
	p.t0 = now_ns() + 100000000LL; /* the first tick in 100 ms: both sides settled */
	struct itimerspec its = {
	    .it_value = {p.t0 / 1000000000LL, p.t0 % 1000000000LL},
	    .it_interval = {p.step_ns / 1000000000LL, p.step_ns % 1000000000LL},
	};
	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
		perror("paced: timerfd_settime");
		goto out;
	}
	int64_t sys0[3] = {0}, sys1[3] = {0};
	int have_sys = lg_sys_cpu(&sys0[0], &sys0[1], &sys0[2]) == 0;
	int64_t self0 = lg_self_cpu_ns();
	const int64_t drain_end = p.t0 + seconds * 1000000000LL + 2000000000LL;
	uint64_t sent = 0, publish_errors = 0;
	int64_t last_progress = now_ns();
	while (p.replies < total && now_ns() < drain_end) {
		struct epoll_event ev[2];
		int n = epoll_wait(ep, ev, 2, 100);
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u32 == 1) {
				sb_busio_dispatch(q.io, 0);
				busconn_drain(&q, record_reply, &p);
				continue;
			}
			uint64_t ticks = 0;
			if (read(tfd, &ticks, sizeof ticks) != sizeof ticks)
				continue;
			/* Every request due by now; a late tick publishes the ones it missed, each
			 * still timed from its own due time. */
			int64_t now = now_ns();
			while (sent < total && p.t0 + (int64_t)sent * p.step_ns <= now) {
				int64_t due = p.t0 + (int64_t)sent * p.step_ns;
				memcpy(buf, &due, sizeof due);
				if (natsConnection_PublishRequest(q.nc, subject, reply_subject, buf,
				                                  (int)payload) != NATS_OK)
					publish_errors++;
				sent++;
			}
			if (sent == total)
				timerfd_settime(tfd, 0, &(struct itimerspec){0}, NULL);
		}
		sb_busio_flush(q.io);
		if (now_ns() - last_progress >= 1000000000LL) {
			last_progress = now_ns();
			fprintf(stderr, "natsbench: paced %llu sent, %llu replies\n",
			        (unsigned long long)sent, (unsigned long long)p.replies);
		}
	}
	int64_t t_end = now_ns();
	int64_t self1 = lg_self_cpu_ns();
	have_sys = have_sys && lg_sys_cpu(&sys1[0], &sys1[1], &sys1[2]) == 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	double secs = (double)(t_end - p.t0) / 1e9;
	out = json_pack(
	    "{s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:o}", "mode", "paced", "offered_per_s", (json_int_t)rate,
	    "seconds", (json_int_t)seconds, "requests", (json_int_t)sent, "replies",
	    (json_int_t)p.replies, "lost", (json_int_t)(sent - p.replies), "per_s",
	    secs > 0 ? (double)p.replies / secs : 0.0, "latency_us", lg_hist_json(p.lat));
	json_t *cpu =
	    json_pack("{s:f,s:I,s:f}", "window_s", secs, "cpus", (json_int_t)ncpu, "self_pct",
	              secs > 0 ? 100.0 * (double)(self1 - self0) / 1e9 / secs : 0.0);
	lg_sys_cpu_json(cpu, sys0, have_sys ? sys1 : sys0);
	json_object_set_new(out, "cpu", cpu);
	uint64_t errors = publish_errors + atomic_load(&r.errors);
	json_object_set_new(out, "publish_errors", json_integer((json_int_t)errors));
	/* every request sent and answered: anything else is a broken bus, not a slow one */
	json_object_set_new(out, "ok", json_boolean(errors == 0 && p.replies == sent));
	if (errors || p.replies != sent)
		fprintf(stderr,
		        "error: paced: %llu of %llu requests unanswered, %llu publish errors\n",
		        (unsigned long long)(sent - p.replies), (unsigned long long)sent,
		        (unsigned long long)errors);
out:
	if (tfd >= 0)
		close(tfd);
	if (ep >= 0)
		close(ep);
	if (r.started) {
		atomic_store(&r.stop, 1);
		pthread_join(r.thread, NULL);
	}
	busconn_close(&q);
	busconn_close(&r.c);
	free(p.lat);
	free(buf);
	return out;
}

int main(int argc, char **argv)
{
	const char *url = NULL;
	int64_t payload = 0, window = 0, sync_s = 0, async_s = 0, rate = 0;
	int asap = 0, global = 0;
	const struct sb_opt opts[] = {
	    {"nats", NULL, SB_OPT_STR, &url, "nats://127.0.0.1:4222", "NATS server URL"},
	    {"payload", NULL, SB_OPT_INT, &payload, "128", "bytes per request (8..65536)"},
	    {"window", NULL, SB_OPT_INT, &window, "64", "async: requests in flight"},
	    {"sync-seconds", NULL, SB_OPT_INT, &sync_s, "2", "seconds of one-at-a-time requests"},
	    {"seconds", NULL, SB_OPT_INT, &async_s, "5", "seconds of windowed (or paced) requests"},
	    {"rate", NULL, SB_OPT_INT, &rate, "0",
	     "paced: R requests a second through the services' bus I/O, timed from when each "
	     "was due, instead of the sync and async runs (0: off)"},
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
	    async_s < 1 || async_s > 600 || sync_s > 600 || rate < 0 || rate > 1000000) {
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

	if (rate > 0) {
		char reply[64];
		snprintf(reply, sizeof reply, "sbbench.paced.%08x", rnd);
		fprintf(stderr, "natsbench: %llds at %lld requests/s, paced...\n",
		        (long long)async_s, (long long)rate);
		json_t *out = run_paced(url, b->subject, reply, payload, rate, async_s);
		int ok = json_is_object(out);
		if (ok) {
			ok = json_is_true(json_object_get(out, "ok"));
			json_object_set_new(out, "nats", json_string(url));
			json_object_set_new(out, "payload_bytes", json_integer(payload));
			json_dumpf(out, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
			fputc('\n', stdout);
		}
		json_decref(out);
		nats_Close();
		free(b);
		return ok ? 0 : 1;
	}

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
