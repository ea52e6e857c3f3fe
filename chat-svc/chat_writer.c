/*
 * chat_writer: the group-commit thread of one partition (see chat_writer.h).
 *
 * The queue is a FIFO list under one mutex with one condition variable; the writer
 * detaches up to max_batch jobs at a time, so submitters never wait on SQLite. FIFO
 * order plus one writer per partition keeps messages of one sender to one receiver
 * in the order their subscription delivered them.
 */
#include "chat_writer.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "chat_store.h"
#include "sb_log.h"
#include "sb_util.h"

struct chat_writer {
	struct chat_store *st; /* writer thread only */
	uint32_t partition;
	struct chat_writer_limits lim;
	pthread_t thread;
	int started;
	int pumped;                   /* pump is set: poll() instead of cond */
	struct chat_writer_pump pump; /* writer thread */
	int wake_fd;                  /* eventfd of a pumped writer, -1 otherwise */

	pthread_mutex_t mu; /* guards everything below */
	pthread_cond_t cond;
	struct chat_job *head;
	struct chat_job *tail;
	size_t queued;
	size_t queued_bytes;
	int stopping;
	int sleeping; /* a pumped writer is (about to be) in poll(): submit writes wake_fd */
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

/* Writer thread: one transaction for the whole batch, then every job answers. Returns
 * 1 when it committed, 2 when it committed without an fsync, 0 when it rolled back. */
static int run_batch(struct chat_writer *w, struct chat_job *batch, size_t n)
{
	int64_t t0 = sb_mono_ms();
	int64_t t0_us = sb_mono_us();
	int committed = 0, durable = 0;
	for (struct chat_job *j = batch; j && !durable; j = j->next)
		durable = j->ops->durable;
	if (chat_store_set_durable(w->st, durable) == 0 && chat_store_begin(w->st) == 0) {
		int ok = 1;
		for (struct chat_job *j = batch; j && ok; j = j->next)
			ok = j->ops->store(j, w->st) == 0;
		if (ok && chat_store_commit(w->st) == 0)
			committed = 1;
		else
			chat_store_rollback(w->st);
	}
	if (committed && durable && w->lim.commit_seconds)
		sb_metric_observe_us(w->lim.commit_seconds, (uint64_t)(sb_mono_us() - t0_us));
	if (committed && !durable && w->lim.unsynced_commits)
		sb_metric_inc(w->lim.unsynced_commits, 1);
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
	return committed && !durable ? 2 : committed;
}

/* Under mu, with w->head set: commit up to max_batch jobs (mu is released meanwhile). */
static void take_and_run(struct chat_writer *w)
{
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
	w->stats.unsynced_batches += committed == 2;
	w->stats.buckets[bucket_of(n)]++;
	if (n > w->stats.max_batch)
		w->stats.max_batch = n;
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
		take_and_run(w);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* A pumped writer: run the pump, commit what is queued, and only when there is nothing
 * sleep in poll() on the pump's descriptor and the wake-up one. */
static void *pumped_main(void *arg)
{
	struct chat_writer *w = arg;
	for (;;) {
		pthread_mutex_lock(&w->mu);
		int stopping = w->stopping;
		pthread_mutex_unlock(&w->mu);
		if (!stopping)
			w->pump.run(w->pump.ctx);

		pthread_mutex_lock(&w->mu);
		if (w->head) {
			take_and_run(w);
			pthread_mutex_unlock(&w->mu);
			if (w->pump.flush)
				w->pump.flush(w->pump.ctx); /* the batch's replies leave now */
			continue; /* what arrived during the commit is the next batch */
		}
		if (w->stopping) {
			pthread_mutex_unlock(&w->mu);
			if (w->pump.flush)
				w->pump.flush(w->pump.ctx);
			break; /* stopping and drained */
		}
		w->sleeping = 1;
		pthread_mutex_unlock(&w->mu);
		if (w->pump.flush)
			w->pump.flush(w->pump.ctx);

		struct pollfd pfd[2] = {{.fd = w->pump.fd, .events = POLLIN},
		                        {.fd = w->wake_fd, .events = POLLIN}};
		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			SB_ERROR("writer_poll", "partition=%u errno=%d", w->partition, errno);
			pfd[1].revents = 0;
		}
		if (pfd[1].revents & POLLIN) {
			uint64_t v;
			while (read(w->wake_fd, &v, sizeof v) == (ssize_t)sizeof v)
				;
		}
		pthread_mutex_lock(&w->mu);
		w->sleeping = 0;
		pthread_mutex_unlock(&w->mu);
	}
	return NULL;
}

static int create(struct chat_writer **out, struct chat_store *st, uint32_t partition,
                  const struct chat_writer_limits *limits, const struct chat_writer_pump *pump)
{
	struct chat_writer *w = calloc(1, sizeof *w);
	if (!w)
		return -1;
	w->st = st;
	w->partition = partition;
	w->wake_fd = -1;
	if (pump) {
		w->pumped = 1;
		w->pump = *pump;
		w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (w->wake_fd < 0) {
			free(w);
			return -1;
		}
	}
	w->lim = *limits;
	if (w->lim.max_batch == 0)
		w->lim.max_batch = 1;
	if (pthread_mutex_init(&w->mu, NULL) != 0) {
		if (w->wake_fd >= 0)
			close(w->wake_fd);
		free(w);
		return -1;
	}
	if (pthread_cond_init(&w->cond, NULL) != 0) {
		pthread_mutex_destroy(&w->mu);
		if (w->wake_fd >= 0)
			close(w->wake_fd);
		free(w);
		return -1;
	}
	if (pthread_create(&w->thread, NULL, w->pumped ? pumped_main : writer_main, w) != 0) {
		SB_ERROR("writer_thread", "partition=%u msg=\"cannot start thread\"", partition);
		chat_writer_destroy(w);
		return -1;
	}
	w->started = 1;
	*out = w;
	return 0;
}

int chat_writer_create(struct chat_writer **out, struct chat_store *st, uint32_t partition,
                       const struct chat_writer_limits *limits)
{
	return create(out, st, partition, limits, NULL);
}

int chat_writer_create_pumped(struct chat_writer **out, struct chat_store *st, uint32_t partition,
                              const struct chat_writer_limits *limits,
                              const struct chat_writer_pump *pump)
{
	return create(out, st, partition, limits, pump);
}

/* Under mu: make the writer look at its queue (or at stopping). */
static void wake(struct chat_writer *w)
{
	if (!w->pumped) {
		pthread_cond_signal(&w->cond);
		return;
	}
	if (w->sleeping) {
		uint64_t one = 1;
		if (write(w->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
			SB_ERROR("writer_wake", "partition=%u errno=%d", w->partition, errno);
		w->sleeping = 0; /* one write per sleep */
	}
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
	wake(w);
	pthread_mutex_unlock(&w->mu);
	*job = NULL;
	return 0;
}

void chat_writer_kick(struct chat_writer *w)
{
	pthread_mutex_lock(&w->mu);
	if (w->pumped)
		wake(w);
	pthread_mutex_unlock(&w->mu);
}

void chat_writer_stop(struct chat_writer *w)
{
	pthread_mutex_lock(&w->mu);
	w->stopping = 1;
	wake(w);
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
	if (w->wake_fd >= 0)
		close(w->wake_fd);
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
