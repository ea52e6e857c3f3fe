/*
 * chat-svc: validates, stores, acknowledges, delivers and replays chat messages.
 *
 * main only wires: configuration, one chat_partition per owned partition (SQLite file,
 * group-commit writer, subscriptions), the bus and the receiver cache, then waits for
 * SIGINT/SIGTERM and shuts down in the order that loses nothing: drain subscriptions,
 * let the writers commit and answer what is queued, flush the bus, close the files.
 * Signals are taken by one thread of our own so that a shutdown request is also seen
 * while the bus is still being connected.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat_receivers.h"
#include "chat_svc.h"
#include "sb_bus.h"
#include "sb_config.h"
#include "sb_http.h"
#include "sb_log.h"
#include "sb_util.h"

#define MAX_PARTITIONS   4096
#define DRAIN_TIMEOUT_MS 2500 /* the whole shutdown must fit in 5 s */
#define FLUSH_TIMEOUT_MS 1000
#define POSITIVE_TTL_MS  30000
#define NEGATIVE_TTL_MS  2000
#define RECEIVER_SLOTS   16384

struct config {
	const char *nats_url;
	const char *data_dir;
	const char *owned;
	const char *log_level;
	int64_t partitions;
	int64_t auth_timeout_ms;
	int64_t max_message_bytes;
	int64_t batch_max;
	const char *http_listen;
};

struct signal_waiter {
	pthread_t thread;
	_Atomic int stop; /* the signal number once one arrived */
	sem_t sem;
};

static void *signal_main(void *arg)
{
	struct signal_waiter *sw = arg;
	int sig = sb_signal_wait();
	atomic_store(&sw->stop, sig);
	sem_post(&sw->sem);
	return NULL;
}

static int parse_uint(const char *s, const char *end, uint32_t *out)
{
	if (s == end || end - s > 9)
		return -1;
	uint32_t v = 0;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (uint32_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/* "all", or a comma list of partitions and ranges ("0,2,4-7"), each < P, no repeats.
 * Sets a malloc'd ascending array. Returns 0 or -1 (message printed). */
static int parse_owned(const char *spec, uint32_t partitions, uint32_t **out, size_t *n)
{
	unsigned char *mine = calloc(partitions, 1);
	uint32_t *list = calloc(partitions, sizeof *list);
	if (!mine || !list)
		goto fail;
	if (strcmp(spec, "all") == 0) {
		memset(mine, 1, partitions);
	} else {
		const char *p = spec;
		while (*p) {
			const char *comma = strchr(p, ',');
			const char *end = comma ? comma : p + strlen(p);
			const char *dash = memchr(p, '-', (size_t)(end - p));
			uint32_t lo, hi;
			if (parse_uint(p, dash ? dash : end, &lo) < 0 ||
			    (dash ? parse_uint(dash + 1, end, &hi) : (hi = lo, 0)) < 0 || lo > hi ||
			    hi >= partitions) {
				fprintf(
				    stderr,
				    "error: --owned: bad entry in \"%s\" (partitions are 0..%u)\n",
				    spec, partitions - 1);
				goto fail;
			}
			for (uint32_t i = lo; i <= hi; i++) {
				if (mine[i]) {
					fprintf(stderr,
					        "error: --owned: partition %u listed twice\n", i);
					goto fail;
				}
				mine[i] = 1;
			}
			p = comma ? comma + 1 : end;
		}
	}
	size_t count = 0;
	for (uint32_t i = 0; i < partitions; i++)
		if (mine[i])
			list[count++] = i;
	if (count == 0) {
		fprintf(stderr, "error: --owned: no partition\n");
		goto fail;
	}
	free(mine);
	*out = list;
	*n = count;
	return 0;
fail:
	free(mine);
	free(list);
	return -1;
}

static int mkdir_p(const char *dir)
{
	char path[4096];
	if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
		return -1;
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

static int check_config(const struct config *c)
{
	if (c->partitions < 1 || c->partitions > MAX_PARTITIONS) {
		fprintf(stderr, "error: --partitions must be 1..%d\n", MAX_PARTITIONS);
		return -1;
	}
	if (c->auth_timeout_ms < 10 || c->auth_timeout_ms > 60000) {
		fprintf(stderr, "error: --auth-timeout-ms must be 10..60000\n");
		return -1;
	}
	if (c->max_message_bytes < 1 || c->max_message_bytes > 16 * 1024 * 1024) {
		fprintf(stderr, "error: --max-message-bytes must be 1..16777216\n");
		return -1;
	}
	if (c->batch_max < 1 || c->batch_max > 8192) {
		fprintf(stderr, "error: --batch-max must be 1..8192\n");
		return -1;
	}
	if (!*c->data_dir) {
		fprintf(stderr, "error: --data-dir is empty\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct config cfg = {0};
	const struct sb_opt opts[] = {
	    {"nats", "SB_NATS_URL", SB_OPT_STR, &cfg.nats_url, "nats://127.0.0.1:4222",
	     "NATS server URL(s), comma-separated"},
	    {"data-dir", "SB_DATA_DIR", SB_OPT_STR, &cfg.data_dir, "./var",
	     "directory of the chat-<partition>.db files"},
	    {"partitions", "SB_PARTITIONS", SB_OPT_INT, &cfg.partitions, "1",
	     "total partition count P (a user's partition is user_id mod P)"},
	    {"owned", "SB_OWNED_PARTITIONS", SB_OPT_STR, &cfg.owned, "all",
	     "partitions this instance serves: all, or a list like 0,2,4-7"},
	    {"log-level", "SB_LOG_LEVEL", SB_OPT_STR, &cfg.log_level, "info",
	     "debug, info, warn or error"},
	    {"auth-timeout-ms", "SB_AUTH_TIMEOUT_MS", SB_OPT_INT, &cfg.auth_timeout_ms, "1000",
	     "how long to wait for auth-svc to confirm a receiver"},
	    {"max-message-bytes", "SB_MAX_MESSAGE_BYTES", SB_OPT_INT, &cfg.max_message_bytes,
	     "65536", "longest accepted message text, in bytes"},
	    {"batch-max", "SB_BATCH_MAX", SB_OPT_INT, &cfg.batch_max, "128",
	     "most requests committed in one transaction (one fsync); the next batch is "
	     "taken while the last one's acks travel"},
	    {"http-listen", "SB_HTTP_LISTEN", SB_OPT_STR, &cfg.http_listen, "",
	     "HOST:PORT for /healthz, /readyz and /metrics; empty = off"},
	    {NULL, NULL, 0, NULL, NULL, NULL},
	};
	const char *usage = "usage: chat-svc [options]\n\n"
	                    "Stores, acknowledges, delivers and replays chat messages.";
	int argi = sb_config_parse(argc, argv, opts, usage);
	if (argi == 0)
		return 0;
	if (argi < 0)
		return 2;
	if (argi < argc) {
		fprintf(stderr, "error: unexpected argument \"%s\" (see --help)\n", argv[argi]);
		return 2;
	}
	if (check_config(&cfg) < 0)
		return 2;
	if (sb_log_init("chat-svc", cfg.log_level) < 0) {
		fprintf(stderr, "error: unknown --log-level \"%s\"\n", cfg.log_level);
		return 2;
	}
	uint32_t *owned = NULL;
	size_t n_owned = 0;
	if (parse_owned(cfg.owned, (uint32_t)cfg.partitions, &owned, &n_owned) < 0)
		return 2;

	/* Before any thread exists, so that every thread inherits the mask. */
	sb_signal_block();
	static struct signal_waiter sw;
	if (sem_init(&sw.sem, 0, 0) != 0 || pthread_create(&sw.thread, NULL, signal_main, &sw)) {
		SB_ERROR("startup", "msg=\"cannot start the signal thread\"");
		return 1;
	}

	if (mkdir_p(cfg.data_dir) < 0) {
		SB_ERROR("startup", "msg=\"cannot create data dir\" path=%s error=\"%s\"",
		         cfg.data_dir, strerror(errno));
		return 1;
	}
	/* static: a handler outliving a timed-out drain may still reach it at exit */
	static struct chat_svc svc;
	svc.partitions = (uint32_t)cfg.partitions;
	svc.nats_url = cfg.nats_url;
	svc.max_message_bytes = (size_t)cfg.max_message_bytes;
	svc.batch_max = (size_t)cfg.batch_max;
	chat_metrics_init(&svc);
	static struct sb_http *http;
	if (sb_http_start(&http, cfg.http_listen, &svc.bus, &svc.ready, &svc.metrics) < 0)
		return 1;
	static struct chat_partition **parts;
	parts = calloc(n_owned, sizeof *parts);
	if (!parts)
		return 1;
	for (size_t i = 0; i < n_owned; i++)
		if (chat_partition_open(&parts[i], &svc, owned[i], cfg.data_dir) < 0)
			return 1;

	/* Each asynchronous subscription is pinned to one delivery thread (that keeps
	 * order): a thread each for a partition's syncs and receipts. Sends do not use
	 * one: the partition's writer takes them off its own connection. */
	size_t pool = n_owned * 2 > 16 ? 16 : n_owned * 2;
	nats_SetMessageDeliveryPoolSize((int)pool);
	if (sb_bus_connect(&svc.bus, cfg.nats_url, "chat-svc", &sw.stop) < 0) {
		if (!atomic_load(&sw.stop))
			return 1;
		SB_INFO("stopped", "msg=\"signal before the bus was reached\"");
		return 0;
	}
	int64_t max_payload = natsConnection_GetMaxPayload(svc.bus->nc);
	if (cfg.max_message_bytes + 16384 > max_payload)
		SB_WARN("config",
		        "msg=\"max-message-bytes near the server's max_payload\" "
		        "max_message_bytes=%lld max_payload=%lld",
		        (long long)cfg.max_message_bytes, (long long)max_payload);

	struct chat_auth_lookup auth = {svc.bus, (int)cfg.auth_timeout_ms};
	struct chat_receivers_config rc = {
	    .lookup = chat_auth_lookup,
	    .lookup_ctx = &auth,
	    .positive_ttl_ms = POSITIVE_TTL_MS,
	    .negative_ttl_ms = NEGATIVE_TTL_MS,
	    .slots = RECEIVER_SLOTS,
	};
	if (chat_receivers_create(&svc.receivers, &rc) < 0) {
		SB_ERROR("startup", "msg=\"out of memory\"");
		return 1;
	}
	for (size_t i = 0; i < n_owned; i++)
		if (chat_partition_subscribe(parts[i]) < 0)
			return 1;
	natsStatus s = natsConnection_FlushTimeout(svc.bus->nc, 5000);
	if (s != NATS_OK) {
		SB_ERROR("startup", "msg=\"subscriptions not confirmed\" error=\"%s\"",
		         natsStatus_GetText(s));
		return 1;
	}
	atomic_store(&svc.ready, 1);
	SB_INFO("ready", "partitions=%u owned_count=%zu owned=\"%s\" data_dir=%s", svc.partitions,
	        n_owned, cfg.owned, cfg.data_dir);

	while (sem_wait(&sw.sem) != 0 && errno == EINTR)
		;
	pthread_join(sw.thread, NULL);
	SB_INFO("stopping", "signal=%d", atomic_load(&sw.stop));
	atomic_store(&svc.ready, 0);
	sb_http_stop(http);

	int64_t deadline = sb_mono_ms() + DRAIN_TIMEOUT_MS + 500;
	for (size_t i = 0; i < n_owned; i++)
		chat_partition_drain(parts[i], DRAIN_TIMEOUT_MS);
	/* A partition whose drain timed out may still have a handler running: its writer
	 * is stopped (late submits are refused) but its memory is left to exit(). */
	int all_drained = 1;
	unsigned char *drained = calloc(n_owned, 1);
	for (size_t i = 0; i < n_owned; i++) {
		int ok = chat_partition_wait_drained(parts[i], deadline) == 0;
		if (drained)
			drained[i] = (unsigned char)ok;
		if (!ok || !drained)
			all_drained = 0;
	}
	for (size_t i = 0; i < n_owned; i++)
		chat_partition_stop(parts[i]);
	natsConnection_FlushTimeout(svc.bus->nc, FLUSH_TIMEOUT_MS);
	for (size_t i = 0; i < n_owned; i++)
		if (drained && drained[i])
			chat_partition_destroy(parts[i]);
	if (all_drained) {
		/* The receiver cache's look-up threads request on svc.bus: closing it (its
		 * publishes were flushed above) ends a look-up in progress at once, then the
		 * threads are joined, and only then is the bus freed. */
		sb_bus_close(svc.bus);
		chat_receivers_destroy(svc.receivers);
		sb_bus_destroy(svc.bus, FLUSH_TIMEOUT_MS);
		nats_Close();
	} else {
		/* A late handler may still publish: it gets "connection closed", not freed memory.
		 */
		natsConnection_Close(svc.bus->nc);
	}
	if (all_drained)
		free(parts);
	free(drained);
	free(owned);
	SB_INFO("stopped", NULL);
	return 0;
}
