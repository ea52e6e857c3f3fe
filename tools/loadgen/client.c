/*
 * client: a worker's libwebsockets client loop.
 *
 * One lws context, one service loop, no threads. A 1 ms timer (the "tick") paces new
 * connections (--connect-rate, at most --connect-window handshakes in flight), follows
 * the phase the parent sets, and lets the scenario pace its sends. A scenario that
 * sends on a schedule (chat-rate) also gets the "pacer", a timerfd on the loop armed
 * for the next send due: lws' own timers wait in whole milliseconds, which put a
 * message up to 1-2 ms behind its schedule, and that lag into every latency timed
 * from the schedule. It is opt-in (--pace-timer): on this project's VM a wake-up per
 * message doubles the load generator's CPU, and the p99s it gave did not move one way
 * consistently (docs/benchmarks.md). Connections are
 * spread over 127.0.0.x source addresses (lws binds to the `iface` address) because one
 * source address has only ~28k ephemeral ports towards one server port. Each
 * connection's lws user data is its struct lg_conn in the worker's array, so lws
 * allocates nothing per connection for us.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "frames.h"
#include "lg.h"
#include "procstat.h"

#define TICK_US 1000
/* The pacer fires at most this often: a send due sooner than this after now waits for
 * it (at most 20,000 wake-ups a second, whatever the rate). */
#define PACE_MIN_NS 50000

int64_t lg_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct lg_worker *worker_of(struct lws *wsi)
{
	return lws_context_user(lws_get_context(wsi));
}

void lg_note_error(struct lg_errs *e, const char *text, size_t len)
{
	if (!text || !len) {
		text = "(no reason given)";
		len = strlen(text);
	}
	if (len > sizeof e->text[0] - 1)
		len = sizeof e->text[0] - 1;
	for (int i = 0; i < LG_MAX_ERRS; i++) {
		if (!e->text[i][0]) {
			memcpy(e->text[i], text, len);
			e->text[i][len] = 0;
		}
		if (!strncmp(e->text[i], text, len) && !e->text[i][len]) {
			e->count[i]++;
			return;
		}
	}
	e->other++;
}

static void note_error(struct lg_errs *e, const char *text)
{
	lg_note_error(e, text, text ? strlen(text) : 0);
}

void lg_conn_want_write(struct lg_conn *c)
{
	if (c->open && !c->writing) {
		c->writing = 1;
		lws_callback_on_writable(c->wsi);
	}
}

int lg_conn_write(struct lg_conn *c, unsigned char *buf_after_pre, size_t len)
{
	int n = lws_write(c->wsi, buf_after_pre, len, LWS_WRITE_TEXT);
	return n < (int)len ? -1 : 0;
}

/* No lws ping/validity timer per connection: lws 4.1 keeps every timer in one sorted
 * list, so each one costs an O(sockets) insertion whenever it is rearmed, which at tens
 * of thousands of sockets dominates the load generator. The server pings; lws answers. */
static const lws_retry_bo_t no_validity = {
    .secs_since_valid_ping = 0,
    .secs_since_valid_hangup = 0,
};

static void start_connect(struct lg_worker *w, struct lg_conn *c)
{
	char path[1024], host[160], src[32];
	const char *kind = c->kind == LG_CHAT ? "chat" : "notifications";
	uint64_t gi = w->first + (uint64_t)(c - w->conns);
	int t = (int)(gi % (uint64_t)w->o->ntargets);
	snprintf(path, sizeof path, "/ws/%s/?token=%s", kind, w->tokens->token[c->user]);
	snprintf(host, sizeof host, "%s:%d", w->o->host[t], w->o->port[t]);

	struct lws_client_connect_info ci;
	memset(&ci, 0, sizeof ci);
	ci.context = w->ctx;
	ci.address = w->o->host[t];
	ci.port = w->o->port[t];
	ci.path = path;
	ci.host = host;
	ci.userdata = c;
	ci.pwsi = &c->wsi;
	ci.retry_and_idle_policy = &no_validity;
	if (w->nsrc > 1 || w->src_first != 1) {
		/* spread over 127.0.0.src_first .. 127.0.0.(src_first + nsrc - 1) */
		snprintf(src, sizeof src, "127.0.0.%u",
		         (unsigned)w->src_first + (unsigned)(gi % (uint64_t)w->nsrc));
		ci.iface = src;
	}
	c->t_connect_ns = lg_now_ns();
	if (!atomic_load_explicit(&w->st->t_first_ns, memory_order_relaxed))
		atomic_store_explicit(&w->st->t_first_ns, c->t_connect_ns, memory_order_relaxed);
	lg_add(&w->st->attempted, 1);
	w->pending++;
	if (!lws_client_connect_via_info(&ci) && !c->closed) {
		/* failed before any callback could say so */
		c->closed = 1;
		w->pending--;
		lg_add(&w->st->failed, 1);
		note_error(&w->st->errs, "connect refused by lws (see its log)");
	}
}

/* Once a second: a handshake older than --connect-timeout is abandoned here, whatever
 * lws's own timers think (one stuck server must not stall a run). */
static void expire_handshakes(struct lg_worker *w, int64_t now)
{
	if (now - w->last_expiry_ns < 1000000000LL)
		return;
	w->last_expiry_ns = now;
	int64_t limit = w->o->connect_timeout_s * 1000000000LL;
	for (uint32_t i = 0; i < w->next_connect; i++) {
		struct lg_conn *c = &w->conns[i];
		if (c->open || c->closed || now - c->t_connect_ns < limit)
			continue;
		c->closed = 1;
		w->pending--;
		lg_add(&w->st->failed, 1);
		note_error(&w->st->errs, "handshake timeout (load generator)");
		if (c->wsi)
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
	}
}

static void pace_connects(struct lg_worker *w, int64_t now)
{
	if (w->phase != LG_PHASE_CONNECT)
		return;
	expire_handshakes(w, now);
	uint64_t allowed = UINT64_MAX;
	if (w->connect_rate > 0) {
		if (!w->t_connect0_ns)
			w->t_connect0_ns = now;
		allowed =
		    (uint64_t)((now - w->t_connect0_ns) / 1000 * w->connect_rate / 1000000) + 1;
	}
	while (w->next_connect < w->nconns && w->pending < (uint32_t)w->o->connect_window &&
	       w->next_connect < allowed)
		start_connect(w, &w->conns[w->next_connect++]);
	if (w->next_connect == w->nconns && w->pending == 0 && !atomic_load(&w->st->ready))
		atomic_store(&w->st->ready, 1);
}

/* Final counts, then the results are marked final for the parent. */
static void finish(struct lg_worker *w)
{
	if (w->finished)
		return;
	w->finished = 1;
	if (w->sc->worker_finish)
		w->sc->worker_finish(w);
	w->st->cpu_ns = lg_self_cpu_ns();
	w->stopping = 1;
	atomic_store(&w->st->exited, 1);
}

static void arm(struct lg_worker *w, int64_t at)
{
	struct itimerspec its = {.it_value = {(time_t)(at / 1000000000LL), at % 1000000000LL}};
	if (timerfd_settime(w->pacer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		w->pacer_armed_ns = at;
}

void lg_pace_by(struct lg_worker *w, int64_t due_ns)
{
	if (w->pacer_fd < 0 || (w->pacer_armed_ns && w->pacer_armed_ns <= due_ns))
		return;
	int64_t soonest = lg_now_ns() + PACE_MIN_NS;
	arm(w, due_ns > soonest ? due_ns : soonest);
}

/* Let the scenario ask for the writes that are due, and arm the pacer for the next. */
static void pace(struct lg_worker *w, int64_t now)
{
	if (!w->sc->pace)
		return;
	int64_t next = w->sc->pace(w, now);
	if (w->pacer_fd < 0)
		return; /* no --pace-timer: the next tick looks again */
	if (next > 0 && next < now + PACE_MIN_NS)
		next = now + PACE_MIN_NS;
	if (next != w->pacer_armed_ns)
		arm(w, next); /* 0 disarms */
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
	struct lg_worker *w = lws_container_of(sul, struct lg_worker, tick);
	int64_t now = lg_now_ns();
	int phase = atomic_load(&w->sh->phase);
	if (phase != w->phase) {
		w->phase = phase;
		if (w->sc->on_phase)
			w->sc->on_phase(w);
	}
	if (phase == LG_PHASE_END) {
		finish(w);
		/* With an event library lws_service() runs the loop until the context is
		 * destroyed (the first destroy stops the loop, lg_worker_main's completes
		 * it). With poll() it returns after each wait: wake that wait. */
		if (strcmp(w->o->event_lib, "poll"))
			lws_context_destroy(w->ctx);
		else
			lws_cancel_service(w->ctx);
		return;
	}
	pace_connects(w, now);
	if (w->sc->on_tick)
		w->sc->on_tick(w, now);
	pace(w, now);
	lws_sul_schedule(w->ctx, 0, &w->tick, on_tick, TICK_US);
}

static void on_receive(struct lg_worker *w, struct lws *wsi, struct lg_conn *c, const char *in,
                       size_t len)
{
	size_t remaining = lws_remaining_packet_payload(wsi);
	int complete = lws_is_final_fragment(wsi) && remaining == 0;
	const char *data = in;
	size_t dlen = len;
	if (!complete || c->rx_len) {
		if (c->rx_len + len + remaining > LG_RX_MAX) {
			note_error(&w->st->errs, "server frame over 1 MiB");
			c->rx_len = 0;
			return;
		}
		char *grown = realloc(c->rx, c->rx_len + len + remaining + 1);
		if (!grown)
			return;
		c->rx = grown;
		memcpy(c->rx + c->rx_len, in, len);
		c->rx_len += (uint32_t)len;
		if (!complete)
			return;
		data = c->rx;
		dlen = c->rx_len;
	}
	lg_add(&w->st->frames_in, 1);
	w->sc->on_frame(w, c, data, dlen);
	if (c->rx) {
		free(c->rx);
		c->rx = NULL;
		c->rx_len = 0;
	}
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
	struct lg_conn *c = user;
	struct lg_worker *w;

	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		w = worker_of(wsi);
		if (!c || c->closed)
			break;
		c->closed = 1;
		w->pending--;
		lg_add(&w->st->failed, 1);
		note_error(&w->st->errs, in ? (const char *)in : NULL);
		break;
	case LWS_CALLBACK_CLIENT_ESTABLISHED: {
		if (c->closed) /* given up on by expire_handshakes */
			return -1;
		w = worker_of(wsi);
		int64_t now = lg_now_ns();
		c->wsi = wsi;
		c->open = 1;
		w->pending--;
		lg_add(&w->st->connected, 1);
		lg_hist_add(&w->st->connect_us, (now - c->t_connect_ns) / 1000);
		atomic_store_explicit(&w->st->t_last_ns, now, memory_order_relaxed);
		if (w->sc->on_open)
			w->sc->on_open(w, c);
		break;
	}
	case LWS_CALLBACK_CLIENT_RECEIVE:
		on_receive(worker_of(wsi), wsi, c, in, len);
		break;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		w = worker_of(wsi);
		c->writing = 0;
		if (w->sc->on_writeable && c->open)
			w->sc->on_writeable(w, c);
		break;
	case LWS_CALLBACK_CLIENT_CLOSED:
		w = worker_of(wsi);
		if (c && c->open) {
			c->open = 0;
			c->closed = 1;
			if (!w->stopping)
				lg_add(&w->st->dropped, 1);
		}
		break;
	case LWS_CALLBACK_WSI_DESTROY:
		if (c) {
			c->wsi = NULL;
			c->open = 0;
			free(c->rx);
			c->rx = NULL;
			c->rx_len = 0;
		}
		break;
	default:
		break;
	}
	return 0;
}

static int pacer_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len)
{
	(void)user;
	(void)in;
	(void)len;
	struct lg_worker *w = worker_of(wsi);
	if (reason == LWS_CALLBACK_RAW_CLOSE_FILE) {
		w->pacer_fd = -1; /* lws closed it: nothing arms it any more */
		return 0;
	}
	if (reason != LWS_CALLBACK_RAW_RX_FILE)
		return 0;
	uint64_t expirations;
	if (read(w->pacer_fd, &expirations, sizeof expirations) < 0)
		return 0; /* a re-arm raced the wake-up */
	w->pacer_armed_ns = 0;
	pace(w, lg_now_ns());
	return 0;
}

static const struct lws_protocols protocols[] = {
    {"lg", callback, 0, 4096, 0, NULL, 0},
    {"lg-pacer", pacer_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* The pacer's timerfd, adopted into the loop (lws closes it with the context). */
static int pacer_start(struct lg_worker *w)
{
	w->pacer_fd = -1;
	if (!w->sc->pace || !w->o->pace_timer)
		return 0;
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct lws_vhost *vh = lws_get_vhost_by_name(w->ctx, "default");
	lws_sock_file_fd_type u;
	u.filefd = fd;
	if (fd < 0 || !vh ||
	    !lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u, "lg-pacer", NULL)) {
		fprintf(stderr, "worker %d: cannot start the pacer timer\n", w->idx);
		/* a descriptor lws failed to adopt may still be its to close: the worker
		 * exits now, so leave it */
		return -1;
	}
	w->pacer_fd = fd;
	return 0;
}

static void lws_log_line(int level, const char *line)
{
	(void)level;
	fprintf(stderr, "lws: %s", line);
}

int lg_worker_main(struct lg_worker *w)
{
	lws_set_log_level(LLL_ERR, lws_log_line);
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.user = w;
	info.timeout_secs = (unsigned)w->o->connect_timeout_s;
	info.connect_timeout_secs = (unsigned)w->o->connect_timeout_s;
	/* (no fd_limit_per_thread: with it set, lws 4.1 finds a socket's wsi by a linear
	 * search over every socket instead of indexing a table by fd) */
	/* poll() costs O(sockets) per wake-up; libev and libuv use epoll */
	if (!strcmp(w->o->event_lib, "ev"))
		info.options |= LWS_SERVER_OPTION_LIBEV;
	else if (!strcmp(w->o->event_lib, "uv"))
		info.options |= LWS_SERVER_OPTION_LIBUV;
	w->ctx = lws_create_context(&info);
	if (!w->ctx) {
		fprintf(stderr, "worker %d: lws_create_context failed\n", w->idx);
		return 1;
	}
	if (pacer_start(w) < 0) {
		lws_context_destroy(w->ctx);
		return 1;
	}
	w->phase = LG_PHASE_CONNECT;
	lws_sul_schedule(w->ctx, 0, &w->tick, on_tick, 1);
	while (!w->finished)
		if (lws_service(w->ctx, 0))
			break;
	finish(w);
	lws_context_destroy(w->ctx);
	return 0;
}
