/*
 * gateway: terminates client WebSockets (SPEC §2) and speaks the bus (SPEC §3).
 * main wires the pieces: settings, the lws context (one service loop), the NATS
 * connection and its two gateway-wide subscriptions (the reply inbox and
 * auth.revoked), a signal thread that asks the loop to drain, and the teardown
 * order: stop bus delivery first, then destroy the lws context.
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "conn.h"
#include "busloop.h"
#include "handoff.h"
#include "users.h"
#include "http.h"
#include "keepalive.h"
#include "quota.h"
#include "preauth.h"
#include "receipts.h"
#include "requests.h"
#include "sb_config.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_token.h"
#include "sb_util.h"
#include "timer.h"
#include "ws.h"

static const char usage[] =
    "usage: gateway [options]\n\n"
    "Switchboard's WebSocket gateway: /ws/chat/ and /ws/notifications/ for clients,\n"
    "/healthz, /readyz and /metrics for operators, NATS behind.";

static void lws_log_line(int level, const char *line)
{
	/* lws 4.1 reports every adoption with a pre-read head at error level. */
	if (strstr(line, "adopt_socket_readbuf: calling service"))
		return;
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	sb_log_event(level == LLL_ERR ? SB_LOG_ERROR : SB_LOG_WARN, "lws", "msg=\"%.*s\"", (int)n,
	             line);
}

/* libnats threads: hand the message to the loop. */
static void on_inbox(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	gw_handoff_push(closure, GW_EV_REPLY, msg);
}

static void on_revoked(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	gw_handoff_push(closure, GW_EV_REVOKED, msg);
}

static void on_notify_all(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	gw_handoff_push(closure, GW_EV_DELIVER_NOTIFY, msg);
}

static void *signal_thread(void *arg)
{
	struct gw *gw = arg;
	int sig = sb_signal_wait();
	SB_INFO("signal", "signal=%d", sig);
	atomic_store(&gw->stop_requested, 1);
	pthread_mutex_lock(&gw->handoff.lock);
	if (!gw->ctx_gone)
		lws_cancel_service(gw->ctx);
	pthread_mutex_unlock(&gw->handoff.lock);
	return NULL;
}

static const struct lws_protocols protocols[] = {
    /* tx_packet_size: lws sends at most this much per write; conn.c batches up to
     * GW_WRITE_BATCH_BYTES of queued frames into one */
    {"switchboard", gw_ws_callback, sizeof(struct gw_conn), 4096, 0, NULL,
     GW_WRITE_BATCH_BYTES + 16},
    {"sb-preauth", gw_preauth_callback, 0, 0, 0, NULL, 0},
    {"sb-busio", gw_busloop_callback, 0, 0, 0, NULL, 0},
    {"sb-timer", gw_timer_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int subscribe_gateway_subjects(struct gw *gw)
{
	char inbox[64];
	snprintf(inbox, sizeof inbox, "%s*", gw->inbox_prefix);
	/* With the bus socket on the loop, the loop takes replies off a synchronous
	 * subscription after each read (handoff.h); with TLS, libnats' threads hand them over. */
	gw->inbox_polled = gw->busio != NULL;
	natsStatus s =
	    gw->inbox_polled
	        ? natsConnection_SubscribeSync(&gw->inbox_sub, gw->bus->nc, inbox)
	        : natsConnection_Subscribe(&gw->inbox_sub, gw->bus->nc, inbox, on_inbox, gw);
	if (s == NATS_OK && !gw->inbox_polled)
		gw_handoff_track(gw, gw->inbox_sub);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(gw->inbox_sub, -1, -1);
	if (s == NATS_OK)
		s = natsConnection_Subscribe(&gw->revoked_sub, gw->bus->nc, SB_SUBJ_AUTH_REVOKED,
		                             on_revoked, gw);
	if (s == NATS_OK) {
		gw_handoff_track(gw, gw->revoked_sub);
		s = natsConnection_Subscribe(&gw->notify_all_sub, gw->bus->nc,
		                             SB_SUBJ_DELIVER_NOTIFY ".all", on_notify_all, gw);
	}
	if (s == NATS_OK) {
		gw_handoff_track(gw, gw->notify_all_sub);
		s = natsSubscription_SetPendingLimits(gw->notify_all_sub, -1, -1);
	}
	if (s != NATS_OK) {
		SB_ERROR("subscribe_failed", "error=\"%s\"", natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

/* After the bus is closed: the hand-off list goes once no delivery thread of libnats can
 * push to it. 1 then; 0 when one still could after 2 s: the list and gw must stay (a
 * leak rather than a free under a late push). */
static int end_handoff(struct gw *gw)
{
	if (gw_handoff_wait_untracked(gw, 2000) == 0) {
		gw_handoff_destroy(gw);
		return 1;
	}
	SB_WARN("handoff_busy", "msg=\"a subscription still delivering after 2 s\"");
	return 0;
}

/* A start that failed after the handoff list: release what was made (a sanitizer
 * build reports whatever an exit leaves behind). 1, the exit status. */
static int start_failed(struct gw *gw)
{
	gw->done = 1;          /* what lws closes now is meant to close */
	gw_busloop_detach(gw); /* a thread runs the bus socket for the close */
	natsSubscription_Destroy(gw->inbox_sub);
	natsSubscription_Destroy(gw->revoked_sub);
	natsSubscription_Destroy(gw->notify_all_sub);
	if (gw->bus) {
		sb_bus_close(gw->bus);
		sb_bus_destroy(gw->bus, 100);
	}
	gw_preauth_destroy(gw);
	gw_timer_destroy(gw);
	if (gw->ctx)
		lws_context_destroy(gw->ctx);
	int quiet = end_handoff(gw);
	gw_busloop_destroy(gw);
	free(gw->chat_seen);
	if (quiet)
		free(gw);
	return 1;
}

int main(int argc, char **argv)
{
	struct gw *gw = calloc(1, sizeof *gw);
	if (!gw)
		return 1;
	gw->timer_fd = -1;
	struct gw_config *cfg = &gw->cfg;
	const struct sb_opt opts[] = {
	    {"nats", "SB_NATS_URL", SB_OPT_STR, &cfg->nats_url, "nats://127.0.0.1:4222",
	     "NATS server URL(s), comma-separated"},
	    {"listen", "SB_LISTEN", SB_OPT_STR, &cfg->listen, "0.0.0.0:8000",
	     "address:port for WebSocket and HTTP"},
	    {"allowed-origins", "SB_ALLOWED_ORIGINS", SB_OPT_STR, &cfg->allowed_origins, "",
	     "comma list of browser origins allowed to connect; empty = any (requests "
	     "without Origin are always allowed)"},
	    {"tls-cert", "SB_TLS_CERT", SB_OPT_STR, &cfg->tls_cert, "",
	     "PEM certificate: serve wss:// and https://"},
	    {"tls-key", "SB_TLS_KEY", SB_OPT_STR, &cfg->tls_key, "",
	     "PEM private key for --tls-cert"},
	    {"max-frame-bytes", "SB_MAX_FRAME_BYTES", SB_OPT_INT, &cfg->max_frame_bytes, "65536",
	     "largest client frame; larger closes with 1009"},
	    {"max-message-chars", "SB_MAX_MESSAGE_CHARS", SB_OPT_INT, &cfg->max_message_chars,
	     "4096", "longest chat message in characters"},
	    {"request-timeout-ms", "SB_REQUEST_TIMEOUT_MS", SB_OPT_INT, &cfg->request_timeout_ms,
	     "2000", "wait for a chat-svc answer before retrying"},
	    {"request-retries", "SB_REQUEST_RETRIES", SB_OPT_INT, &cfg->request_retries, "1",
	     "retries of a chat request (same idempotency key) before the client gets an "
	     "error"},
	    {"auth-timeout-ms", "SB_AUTH_TIMEOUT_MS", SB_OPT_INT, &cfg->auth_timeout_ms, "1000",
	     "wait for auth-svc on a handshake; no answer = 503"},
	    {"partitions", "SB_PARTITIONS", SB_OPT_INT, &cfg->partitions, "1",
	     "number of chat partitions, 1-4096 (must match chat-svc)"},
	    {"max-queue", "SB_MAX_QUEUE", SB_OPT_INT, &cfg->max_queue, "4096",
	     "frames queued for one socket before it is closed as a slow consumer (1008)"},
	    {"ping-interval", "SB_PING_INTERVAL", SB_OPT_INT, &cfg->ping_interval_s, "30",
	     "seconds of silence before the gateway pings a client"},
	    {"idle-timeout", "SB_IDLE_TIMEOUT", SB_OPT_INT, &cfg->idle_timeout_s, "75",
	     "seconds of silence (no pong) before a client is dropped"},
	    {"drain-timeout-ms", "SB_DRAIN_TIMEOUT_MS", SB_OPT_INT, &cfg->drain_timeout_ms, "10000",
	     "on SIGTERM, longest wait for in-flight acknowledgements and for clients to "
	     "confirm what they were sent (their PONG)"},
	    {"reuse-port", "SB_REUSE_PORT", SB_OPT_BOOL, &cfg->reuse_port, "false",
	     "share --listen with other gateway processes on this host (SO_REUSEPORT: the "
	     "kernel spreads new connections over them); plain text only"},
	    {"event-lib", "SB_EVENT_LIB", SB_OPT_STR, &cfg->event_lib, "ev",
	     "event loop: ev (epoll through libev, lws' evlib plugin) or poll (lws' own "
	     "poll(), which costs O(sockets) per wake-up)"},
	    {"rate-limit", "SB_RATE_LIMIT", SB_OPT_INT, &cfg->rate_per_sec, "50",
	     "chat frames per second per socket (0 = unlimited); over it: \"rate limit "
	     "exceeded\", and 1008 after 100 refused in a row"},
	    {"rate-burst", "SB_RATE_BURST", SB_OPT_INT, &cfg->rate_burst, "200",
	     "frames a socket may send at once before the rate applies"},
	    {"max-conns-per-user", "SB_MAX_CONNS_PER_USER", SB_OPT_INT, &cfg->max_conns_per_user,
	     "32", "sockets one user may hold on this gateway (0 = no cap); over it: 429"},
	    {"max-failed-handshakes", "SB_MAX_FAILED_HANDSHAKES", SB_OPT_INT,
	     &cfg->max_failed_per_ip, "100",
	     "refused handshakes per client IP per minute before 429 (0 = no cap)"},
	    {"log-level", "SB_LOG_LEVEL", SB_OPT_STR, &cfg->log_level, "info",
	     "debug, info, warn or error"},
	    {NULL, NULL, 0, NULL, NULL, NULL},
	};
	int argi = sb_config_parse(argc, argv, opts, usage);
	if (argi <= 0) {
		free(gw);
		return argi == 0 ? 0 : 2;
	}
	if (argi < argc) {
		fprintf(stderr, "error: unexpected argument %s (see --help)\n", argv[argi]);
		free(gw);
		return 2;
	}
	if (sb_log_init("gateway", cfg->log_level) < 0) {
		fprintf(stderr, "error: --log-level must be debug, info, warn or error\n");
		free(gw);
		return 2;
	}
	char host[128];
	int port;
	if (sb_parse_listen(cfg->listen, host, sizeof host, &port) < 0) {
		fprintf(stderr, "error: --listen expects HOST:PORT, got \"%s\"\n", cfg->listen);
		free(gw);
		return 2;
	}
	if (cfg->partitions < 1 || cfg->partitions > 4096 || cfg->max_frame_bytes < 128 ||
	    cfg->max_message_chars < 1 || cfg->request_timeout_ms < 1 || cfg->max_queue < 1 ||
	    cfg->request_retries < 0) {
		fprintf(stderr, "error: numeric settings out of range (see --help)\n");
		free(gw);
		return 2;
	}
	if (strcmp(cfg->event_lib, "ev") && strcmp(cfg->event_lib, "poll")) {
		fprintf(stderr, "error: --event-lib takes ev or poll\n");
		free(gw);
		return 2;
	}
	if (cfg->reuse_port && *cfg->tls_cert) {
		fprintf(stderr, "error: --reuse-port works in plain text only (terminate TLS at "
		                "the balancer)\n");
		free(gw);
		return 2;
	}
	if (!!*cfg->tls_cert != !!*cfg->tls_key) {
		fprintf(stderr, "error: --tls-cert and --tls-key go together\n");
		free(gw);
		return 2;
	}

	uint8_t rnd[8];
	RAND_bytes(rnd, sizeof rnd);
	memcpy(gw->instance, "gw", 2);
	sb_hex(rnd, sizeof rnd, gw->instance + 2);
	snprintf(gw->inbox_prefix, sizeof gw->inbox_prefix, "_INBOX.%s.", gw->instance);

	gw_http_metrics_init(gw);
	gw_receipts_init(gw);
	sb_signal_block();
	lws_set_log_level(getenv("SB_LWS_DEBUG") ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO
	                                         : LLL_ERR,
	                  lws_log_line);
	gw->chat_seen = calloc((size_t)cfg->partitions * 2, sizeof *gw->chat_seen);
	if (!gw->chat_seen || gw_handoff_init(gw) < 0) {
		free(gw->chat_seen);
		free(gw);
		return 1;
	}
	gw->chat_gap_floor = gw->chat_seen + cfg->partitions;

	/* No lws validity timers: keepalive.c pings and times out idle sockets. */
	static const uint32_t backoff[] = {1000};
	lws_retry_bo_t retry = {
	    .retry_ms_table = backoff,
	    .retry_ms_table_count = 1,
	};
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	/* Plain text: preauth.c listens and accepts; with TLS lws does. */
	int tls = *cfg->tls_cert != 0;
	info.port = tls ? port : CONTEXT_PORT_NO_LISTEN_SERVER;
	info.iface = strcmp(host, "0.0.0.0") && *host ? host : NULL;
	info.protocols = protocols;
	info.user = gw;
	info.retry_and_idle_policy = &retry;
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
	gw->evlib = !strcmp(cfg->event_lib, "ev");
	if (gw->evlib)
		info.options |= LWS_SERVER_OPTION_LIBEV;
	if (tls) {
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = cfg->tls_cert;
		info.ssl_private_key_filepath = cfg->tls_key;
	}
	info.timeout_secs = 10;
	gw->pre_epfd = -1;
	gw->pre_lfd = -1;
	gw->ctx = lws_create_context(&info);
	if (!gw->ctx) {
		SB_ERROR("listen_failed", "listen=%s", cfg->listen);
		return start_failed(gw);
	}
	gw->vhost = lws_get_vhost_by_name(gw->ctx, "default");
	if (!gw->vhost || gw_timer_init(gw) < 0) {
		SB_ERROR("timer_init", NULL);
		return start_failed(gw);
	}
	if (!tls &&
	    (gw_preauth_init(gw) < 0 || gw_preauth_listen(gw, host, port, cfg->reuse_port) < 0)) {
		SB_ERROR("listen_failed", "listen=%s", cfg->listen);
		return start_failed(gw);
	}
	/* With TLS, lws reads the handshake and auth.c asks auth-svc with a blocking request
	 * from the loop, which the loop itself would have to write and read: there the
	 * bus keeps libnats' own threads. */
	if ((!tls && (gw_busloop_create(gw) < 0 || gw_busloop_attach(gw) < 0)) ||
	    sb_bus_open(&gw->bus, cfg->nats_url, gw->instance, gw->busio) < 0 ||
	    subscribe_gateway_subjects(gw) < 0)
		return start_failed(gw);
	gw_ws_watch_reconnects(gw);
	gw_keepalive_start(gw);
	gw_busloop_start_checks(gw);
	gw_timer_lag_start(gw);
	pthread_t sig_thread;
	pthread_create(&sig_thread, NULL, signal_thread, gw);
	SB_INFO("ready", "listen=%s instance=%s tls=%s event_lib=%s reuse_port=%d", cfg->listen,
	        gw->instance, tls ? "on" : "off", cfg->event_lib, cfg->reuse_port);

	while (!gw->done)
		if (lws_service(gw->ctx, 0) < 0)
			break;

	/* Teardown: stop bus delivery, then the lws context, then the bus. The loop no
	 * longer runs the bus socket: a thread does, for the last publishes and the close. */
	gw_busloop_detach(gw);
	if (gw_bus_up(gw)) {
		natsSubscription_Unsubscribe(gw->inbox_sub);
		natsSubscription_Unsubscribe(gw->revoked_sub);
		natsSubscription_Unsubscribe(gw->notify_all_sub);
		gw_receipts_flush(gw);
		natsConnection_FlushTimeout(gw->bus->nc, 1000);
	} else {
		/* Each of those would wait for libnats' reconnect attempt (up to 2 s), past
		 * the 5 s a shutdown has; the close below ends the subscriptions. */
		SB_WARN("bus_down_at_exit", "requests_waiting=%zu", gw->reqs_unpublished);
	}
	sb_bus_close(gw->bus);
	pthread_mutex_lock(&gw->handoff.lock);
	gw->ctx_gone = 1;
	pthread_mutex_unlock(&gw->handoff.lock);
	gw_requests_destroy_all(gw);
	gw_keepalive_stop(gw);
	gw_timer_lag_stop(gw);
	gw_receipts_stop(gw);
	gw_preauth_destroy(gw);
	gw_timer_destroy(gw);
	lws_context_destroy(gw->ctx);
	gw_users_destroy_deferred(gw);
	natsSubscription_Destroy(gw->inbox_sub);
	natsSubscription_Destroy(gw->revoked_sub);
	natsSubscription_Destroy(gw->notify_all_sub);
	gw_receipts_destroy(gw);
	gw_quota_destroy(gw);
	sb_bus_destroy(gw->bus, 100);
	int quiet = end_handoff(gw);
	gw_busloop_destroy(gw);
	pthread_cancel(sig_thread);
	pthread_join(sig_thread, NULL);
	/* No nats_Close: it stops libnats' garbage collector first, and a subscription that
	 * its delivery thread frees after that (natsConnection_Destroy does not join them)
	 * puts the messages it still held on the collector's list, which nats_Close then
	 * forgets (LeakSanitizer: two natsMsg_create, direct + indirect, seen in CI). The
	 * process exits next; the collector runs until then. */
	SB_INFO("stopped", NULL);
	free(gw->pending.user_name);
	free(gw->flush);
	free(gw->chat_seen);
	if (quiet)
		free(gw);
	return 0;
}
