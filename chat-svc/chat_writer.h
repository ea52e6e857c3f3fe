/*
 * chat_writer: one thread per partition that owns the read-write store and commits
 * in groups.
 *
 * NATS callbacks must not each pay an fsync. They hand a job to the writer's bounded
 * queue and return; the writer takes everything queued (up to a batch limit), runs
 * every job inside ONE transaction, commits once, and only then lets each job answer
 * (reply, publish). Under load the batch grows by itself, so the fsync cost is shared
 * by everyone who arrived while the previous commit was running. The writer knows
 * nothing about subjects: a job brings its own store and finish functions.
 */
#ifndef CHAT_WRITER_H
#define CHAT_WRITER_H

#include <stddef.h>

#include "sb_metrics.h"
#include <stdint.h>

struct chat_store;
struct chat_job;

struct chat_job_ops {
	/* Writer thread, inside the open transaction. Return 0, or -1 on a storage
	 * failure: the whole batch is then rolled back and every job finishes with
	 * committed = 0. */
	int (*store)(struct chat_job *job, struct chat_store *st);
	/* Writer thread, after COMMIT (committed = 1) or ROLLBACK (0). Answers whoever
	 * is waiting and frees the job. */
	void (*finish)(struct chat_job *job, int committed);
	/* 1: finish() tells someone the job is on disk (an ack), so its batch commits with
	 * an fsync. 0: losing the job in a power cut is harmless (a delivery receipt: the
	 * rows are replayed and the gateways drop what they already wrote); a batch of only
	 * such jobs commits without an fsync, and the next durable commit (or the
	 * checkpoint) syncs it along, since the WAL is one file written in order. */
	int durable;
};

/* Embedded as the first member of each kind of job. */
struct chat_job {
	struct chat_job *next; /* queue link, owned by the writer while queued */
	const struct chat_job_ops *ops;
	size_t bytes; /* what the job holds in memory, charged against max_bytes */
};

struct chat_writer_limits {
	size_t max_jobs;                  /* queued jobs beyond which submit refuses (e.g. 65536) */
	size_t max_bytes;                 /* queued bytes beyond which submit refuses */
	size_t max_batch;                 /* jobs per transaction (e.g. 128) */
	struct sb_metric *commit_seconds; /* optional histogram of fsyncing commits' times */
	struct sb_metric *unsynced_commits; /* optional counter of commits without an fsync */
};

/* 128 jobs a transaction: under a closed loop a batch of everything queued (up to 1,024
 * rows, 5 ms of commit) made the gateway, nats-server and the writer take turns on one
 * wave of messages; smaller batches keep several waves in flight (chat-max +17 %, see
 * docs/benchmarks.md), and 128 rows still spread each fsync over many messages. */
#define CHAT_WRITER_LIMITS_DEFAULT                                                                 \
	{                                                                                          \
		65536, 256u << 20, 128, NULL, NULL                                                 \
	}

/* Batch-size histogram buckets: 1, 2-7, 8-63, 64-511, 512+. */
#define CHAT_WRITER_BUCKETS 5

struct chat_writer_stats {
	uint64_t batches;
	uint64_t jobs;
	uint64_t failed_batches;
	uint64_t unsynced_batches; /* committed without an fsync: no durable job in them */
	uint64_t refused;          /* submits refused because the queue was full or stopped */
	size_t max_batch;
	uint64_t buckets[CHAT_WRITER_BUCKETS];
	size_t queued; /* jobs waiting right now */
};

struct chat_writer;

/* Start the writer thread of `partition` over st (which it then uses exclusively
 * until chat_writer_destroy; the caller still closes it afterwards). Returns 0 and
 * sets *out, or -1. */
int chat_writer_create(struct chat_writer **out, struct chat_store *st, uint32_t partition,
                       const struct chat_writer_limits *limits);

/* A writer that also feeds itself: instead of sleeping on a condition variable until
 * another thread submits, it sleeps in poll() on `fd` (and on a wake-up descriptor of
 * its own that chat_writer_submit from other threads writes to), and before taking each
 * batch it calls run(), which does the source's I/O without blocking and submits what
 * it finds from the writer thread itself. chat-svc's pump reads the partition's own NATS
 * connection and takes chat.send requests off a synchronous subscription, so a request
 * goes from the socket to the batch on one thread: no delivery thread, no hand-off. */
struct chat_writer_pump {
	int fd;                   /* readable when run() has something to do */
	void (*run)(void *ctx);   /* writer thread; must not block for long */
	void (*flush)(void *ctx); /* writer thread, after each batch and before it sleeps:
	                           * send what run() and the batch's jobs queued (or NULL) */
	void *ctx;
};

/* As chat_writer_create, with the writer fed by pump (copied). Not run once stopping. */
int chat_writer_create_pumped(struct chat_writer **out, struct chat_store *st, uint32_t partition,
                              const struct chat_writer_limits *limits,
                              const struct chat_writer_pump *pump);

/* Any thread. Queue a job; on success the writer owns it and *job is set to NULL.
 * Returns -1 (the caller keeps the job) when the queue is full or the writer stopped. */
int chat_writer_submit(struct chat_writer *w, struct chat_job **job);

/* Any thread: make a pumped writer run its pump now (a no-op for others). */
void chat_writer_kick(struct chat_writer *w);

/* Refuse new jobs, let the thread commit and finish everything already queued, and
 * join it. Idempotent. */
void chat_writer_stop(struct chat_writer *w);

/* Stop (if needed) and free. NULL is a no-op. */
void chat_writer_destroy(struct chat_writer *w);

/* Any thread: a consistent copy of the counters. */
void chat_writer_get_stats(struct chat_writer *w, struct chat_writer_stats *out);

#endif
