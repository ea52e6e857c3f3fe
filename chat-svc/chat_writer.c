/*
 * chat_writer: the group-commit thread of one partition (see chat_writer.h).
 *
 * The queue is a FIFO list under one mutex with one condition variable; the writer
 * detaches up to max_batch jobs at a time, so submitters never wait on SQLite. FIFO
 * order plus one writer per partition keeps messages of one sender to one receiver
 * in the order their subscription delivered them.
 */
#include "chat_writer.h"

#include <pthread.h>
#include <stdlib.h>

#include "chat_store.h"
#include "sb_log.h"
#include "sb_util.h"

struct chat_writer {
	struct chat_store *st; /* writer thread only */
	uint32_t partition;
	struct chat_writer_limits lim;
	pthread_t thread;
	int started;

	pthread_mutex_t mu; /* guards everything below */
	pthread_cond_t cond;
	struct chat_job *head;
	struct chat_job *tail;
	size_t queued;
	size_t queued_bytes;
	int stopping;
	int64_t last_refusal_log_ms;
	struct chat_writer_stats stats;
};

static int bucket_of(size_t n)
{
	if (n <= 1)
		return 0;
	if (n < 8)
		return 1;
	if (n < 64)
		return 2;
	if (n < 512)
		return 3;
	return 4;
}

/* Writer thread: one transaction for the whole batch, then every job answers. */
static int run_batch(struct chat_writer *w, struct chat_job *batch, size_t n)
{
	int64_t t0 = sb_mono_ms();
	int64_t t0_us = sb_mono_us();
	int committed = 0;
	if (chat_store_begin(w->st) == 0) {
		int ok = 1;
		for (struct chat_job *j = batch; j && ok; j = j->next)
			ok = j->ops->store(j, w->st) == 0;
		if (ok && chat_store_commit(w->st) == 0)
			committed = 1;
		else
			chat_store_rollback(w->st);
	}
	if (committed && w->lim.commit_seconds)
		sb_metric_observe_us(w->lim.commit_seconds, (uint64_t)(sb_mono_us() - t0_us));
	if (committed)
		SB_DEBUG("batch_committed", "partition=%u jobs=%zu ms=%lld", w->partition, n,
		         (long long)(sb_mono_ms() - t0));
	else
		SB_ERROR("batch_rolled_back", "partition=%u jobs=%zu msg=\"nothing acknowledged\"",
		         w->partition, n);
	for (struct chat_job *j = batch, *next; j; j = next) {
		next = j->next;
		j->next = NULL;
		j->ops->finish(j, committed);
	}
	return committed;
}

static void *writer_main(void *arg)
{
	struct chat_writer *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->head && !w->stopping)
			pthread_cond_wait(&w->cond, &w->mu);
		if (!w->head)
			break; /* stopping and drained */
		struct chat_job *batch = w->head, *last = batch;
		size_t n = 1, bytes = batch->bytes;
		while (n < w->lim.max_batch && last->next) {
			last = last->next;
			n++;
			bytes += last->bytes;
		}
		w->head = last->next;
		if (!w->head)
			w->tail = NULL;
		last->next = NULL;
		w->queued -= n;
		w->queued_bytes -= bytes;
		pthread_mutex_unlock(&w->mu);

		int committed = run_batch(w, batch, n);

		pthread_mutex_lock(&w->mu);
		w->stats.batches++;
		w->stats.jobs += n;
		w->stats.failed_batches += !committed;
		w->stats.buckets[bucket_of(n)]++;
		if (n > w->stats.max_batch)
			w->stats.max_batch = n;
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int chat_writer_create(struct chat_writer **out, struct chat_store *st, uint32_t partition,
                       const struct chat_writer_limits *limits)
{
	struct chat_writer *w = calloc(1, sizeof *w);
	if (!w)
		return -1;
	w->st = st;
	w->partition = partition;
	w->lim = *limits;
	if (w->lim.max_batch == 0)
		w->lim.max_batch = 1;
	if (pthread_mutex_init(&w->mu, NULL) != 0) {
		free(w);
		return -1;
	}
	if (pthread_cond_init(&w->cond, NULL) != 0) {
		pthread_mutex_destroy(&w->mu);
		free(w);
		return -1;
	}
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
		SB_ERROR("writer_thread", "partition=%u msg=\"cannot start thread\"", partition);
		chat_writer_destroy(w);
		return -1;
	}
	w->started = 1;
	*out = w;
	return 0;
}

int chat_writer_submit(struct chat_writer *w, struct chat_job **job)
{
	struct chat_job *j = *job;
	pthread_mutex_lock(&w->mu);
	if (w->stopping || w->queued >= w->lim.max_jobs ||
	    w->queued_bytes + j->bytes > w->lim.max_bytes) {
		w->stats.refused++;
		int64_t now = sb_mono_ms();
		int log = now - w->last_refusal_log_ms >= 1000;
		if (log)
			w->last_refusal_log_ms = now;
		size_t queued = w->queued;
		int stopping = w->stopping;
		uint64_t refused = w->stats.refused;
		pthread_mutex_unlock(&w->mu);
		if (log)
			SB_WARN("writer_refused",
			        "partition=%u queued=%zu stopping=%d refused_total=%llu",
			        w->partition, queued, stopping, (unsigned long long)refused);
		return -1;
	}
	j->next = NULL;
	if (w->tail)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	w->queued++;
	w->queued_bytes += j->bytes;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	*job = NULL;
	return 0;
}

void chat_writer_stop(struct chat_writer *w)
{
	pthread_mutex_lock(&w->mu);
	w->stopping = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	if (w->started) {
		pthread_join(w->thread, NULL);
		w->started = 0;
	}
}

void chat_writer_destroy(struct chat_writer *w)
{
	if (!w)
		return;
	chat_writer_stop(w);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

void chat_writer_get_stats(struct chat_writer *w, struct chat_writer_stats *out)
{
	pthread_mutex_lock(&w->mu);
	*out = w->stats;
	out->queued = w->queued;
	pthread_mutex_unlock(&w->mu);
}
