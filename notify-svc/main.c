/*
 * notify-svc: consumes the notification stream, stores, fans out, replays backlogs.
 *
 * main only wires: configuration, the three store handles (consumer, sync reads,
 * cursor writer) on <data-dir>/notify.db, the bus, the JetStream stream and consumer,
 * the notify.sync / notify.delivered subscriptions; then it runs the consumer loop
 * itself until SIGINT/SIGTERM. Signals are taken by a thread of our own that only
 * raises a flag, so a shutdown request is seen while NATS or JetStream is still being
 * waited for, too. Shutdown order loses nothing: finish the batch in hand (stored and
 * acked), drain the subscriptions (pending syncs answered, receipts queued), let the
 * cursor writer commit what is queued, flush the bus, close the files.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "notify_store.h"
#include "notify_svc.h"
#include "sb_bus.h"
#include "sb_config.h"
#include "sb_http.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"

#define DRAIN_TIMEOUT_MS 2000 /* the whole shutdown must fit in 5 s */
#define FLUSH_TIMEOUT_MS 1000

struct config {
	const char *nats_url;
	const char *data_dir;
	const char *retention;
	const char *log_level;
	const char *http_listen;
	int64_t max_title_bytes;
	int64_t max_message_bytes;
	int64_t max_targets;
};

static const char usage[] =
    "usage: notify-svc [options]\n"
    "\n"
    "Switchboard notification service. Consumes injections from the JetStream stream\n"
    "NOTIFY (notify.send: protobuf sb.NotifyRequest; notify.send.json: JSON), stores\n"
    "them in <data-dir>/notify.db, publishes them on deliver.notify.<user_id> or\n"
    "deliver.notify.all, and answers notify.sync and notify.delivered (queue group\n"
    "notify-svc).";

struct signal_waiter {
	pthread_t thread;
	_Atomic int stop; /* the signal number once one arrived */
};

/* Thread: the only one that ever receives SIGINT/SIGTERM. */
static void *signal_main(void *arg)
{
	struct signal_waiter *sw = arg;
	atomic_store(&sw->stop, sb_signal_wait());
	return NULL;
}

/* mkdir -p. 0 / -1 (errno set). */
static int mkdir_p(const char *dir)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(path, 0750) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(path, 0750) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int check_config(const struct config *c, int64_t *retention_s)
{
	if (sb_parse_duration(c->retention, retention_s) < 0 || *retention_s < 1 ||
	    *retention_s > 3650LL * 86400) {
		fprintf(stderr,
		        "error: --retention must be a duration from 1s to 3650d "
		        "(e.g. 7d, 12h, 90m), got \"%s\"\n",
		        c->retention);
		return -1;
	}
	if (c->max_title_bytes < 1 || c->max_title_bytes > 65536) {
		fprintf(stderr, "error: --max-title-bytes must be 1..65536\n");
		return -1;
	}
	if (c->max_message_bytes < 1 || c->max_message_bytes > 1024 * 1024) {
		fprintf(stderr, "error: --max-message-bytes must be 1..1048576\n");
		return -1;
	}
	if (c->max_targets < 1 || c->max_targets > 100000) {
		fprintf(stderr, "error: --max-targets must be 1..100000\n");
		return -1;
	}
	if (!*c->data_dir) {
		fprintf(stderr, "error: --data-dir is empty\n");
		return -1;
	}
	return 0;
}

static int subscribe(struct notify_svc *svc, natsSubscription **subs)
{
	static const struct {
		const char *subject;
		natsMsgHandler handler;
	} routes[2] = {
	    {SB_SUBJ_NOTIFY_SYNC, notify_sync_on_msg},
	    {SB_SUBJ_NOTIFY_DELIVERED, notify_delivered_on_msg},
	};
	for (int i = 0; i < 2; i++) {
		natsStatus s =
		    natsConnection_QueueSubscribe(&subs[i], svc->bus->nc, routes[i].subject,
		                                  SB_QUEUE_NOTIFY, routes[i].handler, svc);
		if (s != NATS_OK) {
			SB_ERROR("subscribe_failed", "subject=%s error=\"%s\"", routes[i].subject,
			         natsStatus_GetText(s));
			return -1;
		}
	}
	natsStatus s = natsConnection_FlushTimeout(svc->bus->nc, 5000);
	if (s != NATS_OK) {
		SB_ERROR("subscribe_failed", "msg=\"subscriptions not confirmed\" error=\"%s\"",
		         natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

/* Returns 1 when every subscription drained (no handler can still be running). */
static int drain(natsSubscription **subs, int n)
{
	int complete = 1;
	for (int i = 0; i < n; i++)
		if (subs[i])
			natsSubscription_DrainTimeout(subs[i], DRAIN_TIMEOUT_MS);
	for (int i = 0; i < n; i++) {
		if (!subs[i])
			continue;
		natsStatus s = natsSubscription_WaitForDrainCompletion(subs[i], DRAIN_TIMEOUT_MS);
		if (s != NATS_OK || natsSubscription_DrainCompletionStatus(subs[i]) != NATS_OK) {
			SB_WARN("drain_incomplete", "error=\"%s\"", natsStatus_GetText(s));
			complete = 0;
		}
	}
	return complete;
}

int main(int argc, char **argv)
{
	struct config cfg = {0};
	const struct sb_opt opts[] = {
	    {"nats", "SB_NATS_URL", SB_OPT_STR, &cfg.nats_url, "nats://127.0.0.1:4222",
	     "NATS server URL(s), comma-separated"},
	    {"data-dir", "SB_DATA_DIR", SB_OPT_STR, &cfg.data_dir, "./var",
	     "directory of notify.db (created if missing)"},
	    {"retention", "SB_RETENTION", SB_OPT_STR, &cfg.retention, "7d",
	     "how long notifications are kept for offline users (and in the stream)"},
	    {"max-title-bytes", "SB_MAX_TITLE_BYTES", SB_OPT_INT, &cfg.max_title_bytes, "256",
	     "longest accepted title, in bytes of UTF-8"},
	    {"max-message-bytes", "SB_MAX_NOTIFY_BYTES", SB_OPT_INT, &cfg.max_message_bytes, "4096",
	     "longest accepted message, in bytes of UTF-8"},
	    {"max-targets", "SB_MAX_TARGETS", SB_OPT_INT, &cfg.max_targets, "1000",
	     "most user ids in one injection"},
	    {"log-level", "SB_LOG_LEVEL", SB_OPT_STR, &cfg.log_level, "info",
	     "debug, info, warn or error"},
	    {"http-listen", "SB_HTTP_LISTEN", SB_OPT_STR, &cfg.http_listen, "",
	     "HOST:PORT for /healthz, /readyz and /metrics; empty = off"},
	    {NULL, NULL, SB_OPT_STR, NULL, NULL, NULL},
	};
	int argi = sb_config_parse(argc, argv, opts, usage);
	if (argi == 0)
		return 0;
	if (argi < 0)
		return 2;
	if (argi < argc) {
		fprintf(stderr, "error: unexpected argument \"%s\" (see --help)\n", argv[argi]);
		return 2;
	}
	int64_t retention_s = 0;
	if (check_config(&cfg, &retention_s) < 0)
		return 2;
	if (sb_log_init("notify-svc", cfg.log_level) < 0) {
		fprintf(stderr, "error: unknown --log-level \"%s\"\n", cfg.log_level);
		return 2;
	}

	/* Before any thread exists, so that every thread inherits the mask. */
	sb_signal_block();
	static struct signal_waiter sw;
	if (pthread_create(&sw.thread, NULL, signal_main, &sw) != 0) {
		SB_ERROR("startup", "msg=\"cannot start the signal thread\"");
		return 1;
	}

	char path[PATH_MAX];
	if (mkdir_p(cfg.data_dir) < 0) {
		SB_ERROR("data_dir", "path=%s error=\"%s\"", cfg.data_dir, strerror(errno));
		return 1;
	}
	if ((size_t)snprintf(path, sizeof path, "%s/notify.db", cfg.data_dir) >= sizeof path) {
		SB_ERROR("data_dir", "path=%s error=\"path too long\"", cfg.data_dir);
		return 1;
	}

	static struct notify_svc svc; /* lives until exit: the HTTP thread reads it */
	notify_stats_init(&svc.stats);
	svc.limits = (struct notify_limits){
	    .max_title_bytes = (size_t)cfg.max_title_bytes,
	    .max_message_bytes = (size_t)cfg.max_message_bytes,
	    .max_type_bytes = NOTIFY_MAX_TYPE_BYTES,
	    .max_targets = (size_t)cfg.max_targets,
	};
	svc.retention_ms = retention_s * 1000;
	if (pthread_mutex_init(&svc.rd_lock, NULL) != 0)
		return 1;
	struct sb_http *http = NULL;
	if (sb_http_start(&http, cfg.http_listen, &svc.bus, &svc.ready, &svc.stats.reg) < 0)
		return 1;

	/* The stores before the bus: a bad data dir fails at once, not after NATS came up.
	 * The consumer's store is opened first: it runs the migrations. */
	struct notify_inject *ni = NULL;
	natsSubscription *subs[2] = {NULL, NULL};
	int failed = 1;
	/* The sync handle's only write is a user's first delivery cursor. Not fsynced: one
	 * fsync per first connect capped a connect storm at what the disk syncs per second
	 * (notify.sync timed out behind it). The row reaches the disk with the consumer's
	 * next commit (same WAL file) or a checkpoint; a crashed process loses nothing, a
	 * power cut at worst a cursor, which the next sync recreates. */
	if (notify_inject_create(&ni, &svc, path) < 0 || notify_store_open(&svc.rd, path) < 0 ||
	    notify_store_relax_sync(svc.rd) < 0 ||
	    notify_cursors_create(&svc.cursors, &svc, path) < 0)
		goto out;
	/* Sync and receipts each get a delivery thread: a slow page never delays
	 * receipts, and the other way round. */
	nats_SetMessageDeliveryPoolSize(2);
	if (sb_bus_connect(&svc.bus, cfg.nats_url, "notify-svc", &sw.stop) < 0 ||
	    notify_inject_start(ni, &sw.stop) < 0) {
		failed = !atomic_load(&sw.stop); /* else: told to stop while waiting */
		goto out;
	}
	if (subscribe(&svc, subs) < 0)
		goto out;
	int64_t max_payload = natsConnection_GetMaxPayload(svc.bus->nc);
	size_t largest = notify_limits_max_payload(&svc.limits);
	if (max_payload > 0 && largest > (size_t)max_payload)
		SB_WARN("config",
		        "msg=\"the longest acceptable injection may exceed the server's "
		        "max_payload\" max_payload=%lld worst_case=%zu",
		        (long long)max_payload, largest);
	SB_INFO("ready",
	        "db=%s stream=%s consumer=%s subjects=%s,%s,%s,%s queue=%s retention_s=%lld "
	        "max_title_bytes=%lld max_message_bytes=%lld max_targets=%lld",
	        path, SB_NOTIFY_STREAM, SB_NOTIFY_CONSUMER, SB_SUBJ_NOTIFY_SEND,
	        SB_SUBJ_NOTIFY_SEND_JSON, SB_SUBJ_NOTIFY_SYNC, SB_SUBJ_NOTIFY_DELIVERED,
	        SB_QUEUE_NOTIFY, (long long)retention_s, (long long)cfg.max_title_bytes,
	        (long long)cfg.max_message_bytes, (long long)cfg.max_targets);
	failed = 0;
	atomic_store(&svc.ready, 1);

	notify_inject_run(ni, &sw.stop);
	atomic_store(&svc.ready, 0);
	SB_INFO("stopping", "signal=%s", atomic_load(&sw.stop) == SIGINT ? "SIGINT" : "SIGTERM");

out:;
	int drained = drain(subs, 2);
	notify_cursors_stop(svc.cursors);
	notify_inject_destroy(ni);
	if (svc.bus)
		natsConnection_FlushTimeout(svc.bus->nc, FLUSH_TIMEOUT_MS);
	if (drained) {
		for (int i = 0; i < 2; i++)
			natsSubscription_Destroy(subs[i]);
	}
	sb_http_stop(http); /* before the bus goes: /readyz reads it */
	sb_bus_destroy(svc.bus, FLUSH_TIMEOUT_MS);
	if (drained) {
		/* No handler can run any more: the stores they use may go. */
		notify_cursors_destroy(svc.cursors);
		notify_store_destroy(svc.rd);
		pthread_mutex_destroy(&svc.rd_lock);
		nats_CloseAndWait(FLUSH_TIMEOUT_MS);
	}
	notify_stats_log(&svc, "stats");
	if (failed) {
		/* The signal thread is still parked in sigwait; exit takes it along. */
		SB_ERROR("stopped", "status=failed");
		return 1;
	}
	SB_INFO("stopped", NULL);
	return 0;
}
