/*
 * sb-relay: main wires the bare relay (see relay.h): settings, one lws context with
 * one service loop (epoll through libev by default, like the load generator), a signal
 * thread that raises a flag, a 100 ms timer on the loop that acts on it, and an exit
 * line.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listen.h"
#include "relay.h"
#include "sb_config.h"
#include "sb_log.h"
#include "sb_util.h"

static const char usage[] =
    "usage: sb-relay [options]\n\n"
    "The bare relay: a minimal WebSocket server speaking the chat shape of the client\n"
    "protocol with no bus and no storage, the bound Switchboard's benchmarks are quoted\n"
    "against. Users are taken from ?uid=N or from --tokens; nothing is verified.";

struct stopper {
	struct lws_context *ctx;
	lws_sorted_usec_list_t sul;
	int evlib;
	int stopped;
	_Atomic int stop;
};

/* signal thread: only raises the flag; the loop's timer acts on it */
static void *signal_thread(void *arg)
{
	struct stopper *s = arg;
	int sig = sb_signal_wait();
	SB_INFO("signal", "signal=%d", sig);
	atomic_store(&s->stop, 1);
	return NULL;
}

/* loop thread, every 100 ms. With an event library lws_service() runs until the
 * context is destroyed (this first destroy stops the loop; main completes it); with
 * poll() it returns after each wait. */
static void check_stop(lws_sorted_usec_list_t *sul)
{
	struct stopper *s = lws_container_of(sul, struct stopper, sul);
	if (!atomic_load(&s->stop)) {
		lws_sul_schedule(s->ctx, 0, &s->sul, check_stop, 100 * LWS_US_PER_MS);
		return;
	}
	s->stopped = 1;
	if (s->evlib)
		lws_context_destroy(s->ctx);
	else
		lws_cancel_service(s->ctx);
}

static void lws_log_line(int level, const char *line)
{
	size_t n = strlen(line);
	while (n && line[n - 1] == '\n')
		n--;
	sb_log_event(level == LLL_ERR ? SB_LOG_ERROR : SB_LOG_WARN, "lws", "msg=\"%.*s\"", (int)n,
	             line);
}

int main(int argc, char **argv)
{
	const char *listen = NULL, *tokens = NULL, *log_level = NULL, *event_lib = NULL;
	int64_t max_queue = 0;
	int reuse_port = 0;
	const struct sb_opt opts[] = {
	    {"listen", NULL, SB_OPT_STR, &listen, "127.0.0.1:8100", "address:port to serve"},
	    {"tokens", NULL, SB_OPT_STR, &tokens, "",
	     "token file (\"USER_ID TOKEN\" lines) mapping ?token= to a user"},
	    {"max-queue", NULL, SB_OPT_INT, &max_queue, "4096",
	     "frames queued for one socket before it is closed as a slow consumer"},
	    {"reuse-port", NULL, SB_OPT_BOOL, &reuse_port, "false",
	     "share the port with other relay processes (SO_REUSEPORT)"},
	    {"event-lib", NULL, SB_OPT_STR, &event_lib, "ev",
	     "lws event loop: ev (epoll via libev), uv (libuv) or poll"},
	    {"log-level", NULL, SB_OPT_STR, &log_level, "info", "debug, info, warn or error"},
	    {NULL, NULL, 0, NULL, NULL, NULL},
	};
	int argi = sb_config_parse(argc, argv, opts, usage);
	if (argi <= 0)
		return argi == 0 ? 0 : 2;
	if (argi < argc) {
		fprintf(stderr, "error: unexpected argument %s\n", argv[argi]);
		return 2;
	}
	char host[128];
	int port;
	if (sb_log_init("relay", log_level) < 0 ||
	    sb_parse_listen(listen, host, sizeof host, &port) < 0 || max_queue < 1 ||
	    (strcmp(event_lib, "ev") && strcmp(event_lib, "uv") && strcmp(event_lib, "poll"))) {
		fprintf(stderr, "error: bad --listen, --log-level, --max-queue or --event-lib "
		                "(see --help)\n");
		return 2;
	}
	struct relay *r = NULL;
	if (relay_create(&r, tokens, max_queue) < 0)
		return 1;

	sb_signal_block();
	lws_set_log_level(LLL_ERR, lws_log_line);
	const struct lws_protocols protocols[] = {
	    {"relay", relay_callback, relay_session_size(), 4096, 0, NULL, 0},
	    {RELAY_LISTEN_PROTOCOL, relay_listen_callback, 0, 0, 0, NULL, 0},
	    {NULL, NULL, 0, 0, 0, NULL, 0},
	};
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	/* --reuse-port: no lws listener; listen.c makes one that can be shared */
	info.port = reuse_port ? CONTEXT_PORT_NO_LISTEN_SERVER : port;
	info.iface = strcmp(host, "0.0.0.0") && *host ? host : NULL;
	info.protocols = protocols;
	info.user = r;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	if (!strcmp(event_lib, "ev"))
		info.options |= LWS_SERVER_OPTION_LIBEV;
	else if (!strcmp(event_lib, "uv"))
		info.options |= LWS_SERVER_OPTION_LIBUV;
	info.timeout_secs = 10;
	struct stopper stopper;
	memset(&stopper, 0, sizeof stopper);
	stopper.evlib = strcmp(event_lib, "poll") != 0;
	stopper.ctx = lws_create_context(&info);
	if (!stopper.ctx || (reuse_port && relay_listen_shared(stopper.ctx, host, port) < 0)) {
		SB_ERROR("listen_failed", "listen=%s", listen);
		if (stopper.ctx)
			lws_context_destroy(stopper.ctx);
		relay_destroy(r);
		return 1;
	}
	pthread_t sig_thread;
	pthread_create(&sig_thread, NULL, signal_thread, &stopper);
	lws_sul_schedule(stopper.ctx, 0, &stopper.sul, check_stop, 100 * LWS_US_PER_MS);
	SB_INFO("ready", "listen=%s event_lib=%s", listen, event_lib);

	while (!stopper.stopped)
		if (lws_service(stopper.ctx, 0))
			break;

	uint64_t in, out, conns;
	relay_stats(r, &in, &out, &conns);
	lws_context_destroy(stopper.ctx);
	relay_destroy(r);
	pthread_cancel(sig_thread);
	pthread_join(sig_thread, NULL);
	SB_INFO("stopped", "frames_in=%llu frames_out=%llu connections=%llu",
	        (unsigned long long)in, (unsigned long long)out, (unsigned long long)conns);
	return 0;
}
