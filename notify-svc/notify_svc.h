/*
 * notify_svc: the objects notify-svc is wired from and the entry points of its parts:
 * the JetStream set-up (stream.c), the injection consumer (inject.c), and the two
 * subject handlers (sync.c, delivered.c).
 *
 * Threads: main runs the consumer loop (fetch -> store -> publish -> ack) and is the
 * only user of the writer store; libnats delivery threads run notify.sync (on the
 * read store, under rd_lock) and notify.delivered (which only queues); one cursor
 * thread writes queued receipts in group commits on a store of its own. Three SQLite
 * connections to one WAL file: reads never wait for an fsync, writers take turns
 * through the busy timeout. Nothing is global: handlers get the svc as closure.
 */
#ifndef NOTIFY_SVC_H
#define NOTIFY_SVC_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "injection.h"
#include "sb_metrics.h"

struct sb_bus;
struct notify_store;
struct notify_cursors;

#define NOTIFY_SYNC_DEFAULT_LIMIT 200
#define NOTIFY_SYNC_MAX_LIMIT     1000

/* Counters and timings, any thread (atomic adds). Served on /metrics (--http-listen)
 * and logged as event=stats. */
struct notify_stats {
	struct sb_metrics reg;
	struct sb_metric stored;                   /* injections stored (first time) */
	struct sb_metric duplicates;               /* redeliveries of injections already stored */
	struct sb_metric rows;                     /* notification rows stored */
	struct sb_metric published;                /* deliver.notify.* messages sent */
	struct sb_metric rejected[NOTIFY_E_COUNT]; /* by reason; [0] unused */
	struct sb_metric store_failures;           /* batches that failed to commit */
	struct sb_metric syncs;
	struct sb_metric receipts;
	struct sb_metric receipts_dropped; /* cursor queue full: a replay, never a loss */
	struct sb_metric purged;
	struct sb_metric batch_seconds; /* fetch-to-commit of a batch */
	struct sb_metric sync_seconds;
	char reject_labels[NOTIFY_E_COUNT][64];
};

/* Name the metrics and register them with st->reg. st must be zeroed and must live as
 * long as anything renders it. */
void notify_stats_init(struct notify_stats *st);

/* Shared by every part; read-only once the subscriptions exist (apart from the
 * counters and what the locks guard). */
struct notify_svc {
	struct sb_bus *bus;
	struct notify_limits limits;
	int64_t retention_ms;
	struct notify_store *rd; /* notify.sync reads (and first-sync cursor rows) */
	pthread_mutex_t rd_lock;
	struct notify_cursors *cursors;
	_Atomic int ready; /* /readyz: stream, consumer and subscriptions in place */
	struct notify_stats stats;
};

/* Log the counters as one event=stats line. Any thread. */
void notify_stats_log(struct notify_svc *svc, const char *event);

/* ---- stream.c: the JetStream side of the injection interface ---- */

/* The consumer's ack wait: a killed consumer's batch comes back this soon. A batch
 * held longer (storage failing) is kept alive with InProgress every third of it. */
#define NOTIFY_ACK_WAIT_MS (5 * 1000LL)

/* Make sure the NOTIFY stream exists with our configuration (subjects notify.send and
 * notify.send.json, file storage, limits retention, max age = retention_ms, duplicate
 * window 2 min; updated when it differs) and the durable pull consumer "notify-svc"
 * (explicit ack, deliver all, ack wait NOTIFY_ACK_WAIT_MS, max deliver 5). Retries with backoff
 * while JetStream does not answer, until *stop. *created_ns is the stream's creation
 * time (its identity). Returns 0, or -1 when stopped or on a configuration error the
 * operator must fix (logged). Blocking; main thread. */
int notify_stream_ensure(jsCtx *js, int64_t retention_ms, _Atomic int *stop, int64_t *created_ns);

/* Bind a pull subscription to the consumer. 0 or -1 (logged). */
int notify_stream_subscribe(jsCtx *js, natsSubscription **sub);

/* ---- inject.c: the consumer of the NOTIFY stream ---- */

struct notify_inject;

/* Open the writer store at db_path (running the migrations). 0 or -1 (logged). */
int notify_inject_create(struct notify_inject **out, struct notify_svc *svc, const char *db_path);

/* Once svc->bus is connected: ensure stream + consumer (retrying until *stop),
 * reconcile the store with the stream's identity, purge expired rows, bind the pull
 * subscription. Also used to rebind after the consumer vanished. 0 or -1. */
int notify_inject_start(struct notify_inject *ni, _Atomic int *stop);

/* The consumer loop: fetch a batch, store it in one transaction, publish, ack; until
 * *stop. The batch in hand when *stop is raised is finished (stored and acked, or
 * handed back to JetStream when storage is failing). Main thread. */
void notify_inject_run(struct notify_inject *ni, _Atomic int *stop);

/* Unbind (the durable consumer stays) and close the store. NULL is a no-op. */
void notify_inject_destroy(struct notify_inject *ni);

/* ---- sync.c / delivered.c: subject handlers (libnats delivery threads, svc as
 * closure; each takes ownership of msg) ---- */

void notify_sync_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
void notify_delivered_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                             void *closure);

/* The cursor writer behind notify.delivered: a thread with its own store that applies
 * queued receipts in group commits. create: 0 or -1. stop: apply what is queued,
 * join (idempotent). destroy: stop and free; NULL is a no-op. */
int notify_cursors_create(struct notify_cursors **out, struct notify_svc *svc, const char *db_path);
void notify_cursors_stop(struct notify_cursors *c);
void notify_cursors_destroy(struct notify_cursors *c);

/* Any thread: queue cursor(user_id) = max(cursor, id). Returns 0, or -1 when the
 * queue is full or stopped (the receipt is dropped; the rows replay on next sync). */
int notify_cursors_push(struct notify_cursors *c, uint64_t user_id, uint64_t id);

#endif
