/*
 * auth-svc main: wires configuration, the store, the bus and the three subject
 * handlers, then waits for SIGINT/SIGTERM.
 *
 * Design: signals are blocked in every thread and taken by one waiter thread, which
 * only raises a flag; so a SIGTERM that arrives while NATS is still unreachable ends
 * the connect loop, and one that arrives later wakes main. Shutdown order: drain the
 * subscriptions (in-flight requests are answered), close the connection, then close
 * the store nobody can reach any more.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "auth_db.h"
#include "auth_svc.h"
#include "sb_config.h"
#include "sb_http.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"

#define DRAIN_TIMEOUT_MS 3000

struct config {
	const char *nats;
	const char *data_dir;
	const char *log_level;
	const char *jwt_secret;
	const char *http_listen;
};

static const char usage[] =
    "usage: auth-svc [options]\n"
    "\n"
    "Switchboard token-auth service: owns users and tokens (SQLite <data-dir>/auth.db) and\n"
    "answers auth.verify, auth.lookup and auth.admin on NATS (queue group auth-svc).";

struct stopper {
	_Atomic int stop;
	int signal;
};

/* Thread: the signal waiter. The only thread that ever receives SIGINT/SIGTERM. */
static void *wait_for_signal(void *arg)
{
	struct stopper *sp = arg;
	sp->signal = sb_signal_wait();
	atomic_store(&sp->stop, 1);
	return NULL;
}

/* mkdir -p for the data directory. 0 / -1 (errno set). */
static int make_dirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0750) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0750) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static natsStatus subscribe(struct auth_svc *svc, natsSubscription **subs)
{
	static const struct {
		const char *subject;
		natsMsgHandler handler;
	} routes[] = {
	    {SB_SUBJ_AUTH_VERIFY, auth_handle_verify},
	    {SB_SUBJ_AUTH_LOOKUP, auth_handle_lookup},
	    {SB_SUBJ_AUTH_ADMIN, auth_handle_admin},
	};
	natsStatus s = NATS_OK;
	for (size_t i = 0; s == NATS_OK && i < 3; i++) {
		s = natsConnection_QueueSubscribe(&subs[i], svc->bus->nc, routes[i].subject,
		                                  SB_QUEUE_AUTH, routes[i].handler, svc);
		if (s != NATS_OK)
			SB_ERROR("subscribe_failed", "subject=%s error=\"%s\"", routes[i].subject,
			         natsStatus_GetText(s));
	}
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(svc->bus->nc, 5000);
	return s;
}

static void unsubscribe(natsSubscription **subs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (subs[i])
			natsSubscription_DrainTimeout(subs[i], DRAIN_TIMEOUT_MS);
	for (size_t i = 0; i < n; i++) {
		if (!subs[i])
			continue;
		natsStatus s = natsSubscription_WaitForDrainCompletion(subs[i], DRAIN_TIMEOUT_MS);
		if (s != NATS_OK)
			SB_WARN("drain_incomplete", "error=\"%s\"", natsStatus_GetText(s));
		natsSubscription_Destroy(subs[i]);
		subs[i] = NULL;
	}
}

int main(int argc, char **argv)
{
	struct config cfg;
	const struct sb_opt opts[] = {
	    {"nats", "SB_NATS_URL", SB_OPT_STR, &cfg.nats, "nats://127.0.0.1:4222",
	     "NATS server URL(s), comma-separated"},
	    {"data-dir", "SB_DATA_DIR", SB_OPT_STR, &cfg.data_dir, "./var",
	     "directory of the SQLite file auth.db (created if missing)"},
	    {"log-level", "SB_LOG_LEVEL", SB_OPT_STR, &cfg.log_level, "info",
	     "debug, info, warn or error"},
	    {"jwt-secret", "SB_JWT_SECRET", SB_OPT_STR, &cfg.jwt_secret, "",
	     "HS256 secret of Django simplejwt access tokens; empty = JWTs refused"},
	    {"http-listen", "SB_HTTP_LISTEN", SB_OPT_STR, &cfg.http_listen, "",
	     "HOST:PORT for /healthz, /readyz and /metrics; empty = off"},
	    {NULL, NULL, SB_OPT_STR, NULL, NULL, NULL},
	};
	int first = sb_config_parse(argc, argv, opts, usage);
	if (first == 0)
		return 0;
	if (first < 0)
		return 2;
	if (first < argc) {
		fprintf(stderr, "error: unexpected argument \"%s\" (see --help)\n", argv[first]);
		return 2;
	}
	if (sb_log_init("auth-svc", cfg.log_level) < 0) {
		fprintf(stderr, "error: unknown log level \"%s\"\n", cfg.log_level);
		return 2;
	}

	/* Before any thread exists, so every thread inherits the mask. */
	sb_signal_block();

	char path[PATH_MAX];
	if (make_dirs(cfg.data_dir) < 0) {
		SB_ERROR("data_dir", "path=%s error=\"%s\"", cfg.data_dir, strerror(errno));
		return 1;
	}
	if ((size_t)snprintf(path, sizeof path, "%s/auth.db", cfg.data_dir) >= sizeof path) {
		SB_ERROR("data_dir", "path=%s error=\"path too long\"", cfg.data_dir);
		return 1;
	}
	static struct auth_svc svc; /* lives until exit: the HTTP thread reads it */
	auth_metrics_init(&svc);
	svc.jwt_secret = cfg.jwt_secret;
	if (auth_store_open(&svc.store, path) < 0)
		return 1;
	struct sb_http *http = NULL;
	if (sb_http_start(&http, cfg.http_listen, &svc.bus, &svc.ready, &svc.metrics) < 0) {
		auth_store_close(svc.store);
		return 1;
	}

	struct stopper stopper = {0, 0};
	pthread_t waiter;
	if (pthread_create(&waiter, NULL, wait_for_signal, &stopper) != 0) {
		SB_ERROR("thread_failed", "what=signal_waiter");
		auth_store_close(svc.store);
		return 1;
	}

	natsSubscription *subs[3] = {NULL, NULL, NULL};
	int failed = 0;
	if (sb_bus_connect(&svc.bus, cfg.nats, "auth-svc", &stopper.stop) < 0) {
		failed = !atomic_load(&stopper.stop); /* else: told to stop while connecting */
	} else if (subscribe(&svc, subs) != NATS_OK) {
		SB_ERROR("subscribe_failed", "msg=\"could not subscribe and flush\"");
		failed = 1;
	} else {
		atomic_store(&svc.ready, 1);
		SB_INFO("ready",
		        "db=%s schema=%d subjects=auth.verify,auth.lookup,auth.admin "
		        "queue=%s",
		        path, auth_db_schema_version(), SB_QUEUE_AUTH);
	}
	if (!failed) {
		pthread_join(waiter, NULL);
		SB_INFO("stopping", "signal=%s", stopper.signal == SIGINT ? "SIGINT" : "SIGTERM");
	}

	atomic_store(&svc.ready, 0);
	unsubscribe(subs, 3);
	sb_http_stop(http); /* before the bus: /readyz reads it */
	sb_bus_destroy(svc.bus, 1000);
	auth_store_close(svc.store);
	if (failed) {
		/* The waiter is still parked in sigwait; exit takes it with the process. */
		SB_ERROR("stopped", "status=failed");
		return 1;
	}
	nats_CloseAndWait(1000);
	SB_INFO("stopped", NULL);
	return 0;
}
