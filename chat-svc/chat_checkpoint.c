/*
 * chat_checkpoint: background WAL checkpoints (see chat_checkpoint.h).
 *
 * Two threads share a little state under one mutex: the writer (in the WAL hook, after
 * each commit) asks for a checkpoint, and the background thread runs it and reports
 * how many frames it copied. The writer decides alone when to run a short checkpoint
 * of its own, so the two never wait for each other: a checkpoint that finds the other
 * one running returns SQLITE_BUSY at once (PASSIVE never waits).
 */
#include "chat_checkpoint.h"

#include <pthread.h>
#include <stdlib.h>

#include "sb_log.h"
#include "sb_util.h"

/* The writer copies the rest itself when at most this many frames are left. */
#define WRITER_PAGES (CHAT_CHECKPOINT_PAGES / 4)
/* Beyond this the background thread is not keeping up: the writer checkpoints. */
#define FORCE_PAGES (CHAT_CHECKPOINT_PAGES * 8)

struct chat_checkpoint {
	sqlite3 *wr; /* the writer's connection; used only inside its WAL hook */
	sqlite3 *db; /* the background thread's own */
	uint32_t partition;
	struct sb_metric *bg_seconds;
	struct sb_metric *writer_seconds;
	pthread_t thread;
	uint64_t seen_done; /* writer thread only: `done` when it last looked */

	pthread_mutex_t mu; /* guards everything below */
	pthread_cond_t cond;
	int requested;
	int running;
	int stopping;
	uint64_t done;  /* background checkpoints finished */
	int backfilled; /* frames the last one had copied (-1: unknown) */
	struct chat_checkpoint_stats stats;
};

/* Run a PASSIVE checkpoint on db. Returns the frames copied, or -1 (busy or failed). */
static int checkpoint(sqlite3 *db, struct sb_metric *seconds, uint32_t partition, const char *who)
{
	int64_t t0 = sb_mono_us();
	int log_frames = -1, copied = -1;
	int rc =
	    sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &copied);
	if (rc == SQLITE_OK) {
		if (seconds)
			sb_metric_observe_us(seconds, (uint64_t)(sb_mono_us() - t0));
		SB_DEBUG("checkpoint", "partition=%u by=%s wal_frames=%d copied=%d us=%lld",
		         partition, who, log_frames, copied, (long long)(sb_mono_us() - t0));
		return copied;
	}
	if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
		SB_WARN("checkpoint_failed", "partition=%u by=%s error=\"%s\"", partition, who,
		        sqlite3_errmsg(db));
	return -1;
}

/* Writer thread, inside COMMIT: `pages` frames are in the WAL now. */
static int on_wal(void *arg, sqlite3 *db, const char *name, int pages)
{
	(void)name;
	struct chat_checkpoint *c = arg;
	if (pages < CHAT_CHECKPOINT_PAGES)
		return SQLITE_OK; /* also right after the WAL started over */
	int own = 0;
	pthread_mutex_lock(&c->mu);
	int idle = !c->requested && !c->running;
	if (c->done != c->seen_done) {
		c->seen_done = c->done;
		own = idle && c->backfilled >= 0 && pages - c->backfilled <= WRITER_PAGES;
	}
	if (!own && idle) {
		c->requested = 1;
		pthread_cond_signal(&c->cond);
	}
	int force = !own && pages >= FORCE_PAGES;
	pthread_mutex_unlock(&c->mu);
	if (!own && !force)
		return SQLITE_OK;
	int copied = checkpoint(db, c->writer_seconds, c->partition, force ? "forced" : "writer");
	pthread_mutex_lock(&c->mu);
	if (copied >= 0 && force)
		c->stats.forced++;
	else if (copied >= 0)
		c->stats.writer++;
	pthread_mutex_unlock(&c->mu);
	return SQLITE_OK;
}

static void *checkpoint_main(void *arg)
{
	struct chat_checkpoint *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->requested && !c->stopping)
			pthread_cond_wait(&c->cond, &c->mu);
		if (c->stopping)
			break;
		c->requested = 0;
		c->running = 1;
		pthread_mutex_unlock(&c->mu);

		int copied = checkpoint(c->db, c->bg_seconds, c->partition, "background");

		pthread_mutex_lock(&c->mu);
		c->running = 0;
		c->backfilled = copied;
		c->done++;
		if (copied >= 0)
			c->stats.background++;
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int chat_checkpoint_create(struct chat_checkpoint **out, sqlite3 *wr, const char *path,
                           uint32_t partition, struct sb_metric *bg_seconds,
                           struct sb_metric *writer_seconds)
{
	struct chat_checkpoint *c = calloc(1, sizeof *c);
	if (!c)
		return -1;
	c->wr = wr;
	c->partition = partition;
	c->bg_seconds = bg_seconds;
	c->writer_seconds = writer_seconds;
	c->backfilled = -1;
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c);
		return -1;
	}
	if (pthread_cond_init(&c->cond, NULL) != 0) {
		pthread_mutex_destroy(&c->mu);
		free(c);
		return -1;
	}
	/* FULL like the writer: the checkpoint fsyncs the WAL before it copies and the
	 * database file after. */
	if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	        SQLITE_OK ||
	    sqlite3_exec(c->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK) {
		SB_ERROR("checkpoint_open", "partition=%u path=%s error=\"%s\"", partition, path,
		         c->db ? sqlite3_errmsg(c->db) : "out of memory");
		goto fail;
	}
	if (pthread_create(&c->thread, NULL, checkpoint_main, c) != 0) {
		SB_ERROR("checkpoint_thread", "partition=%u msg=\"cannot start thread\"",
		         partition);
		goto fail;
	}
	/* Replaces the automatic checkpoint, which is itself a WAL hook. */
	sqlite3_wal_hook(wr, on_wal, c);
	*out = c;
	return 0;
fail:
	sqlite3_close(c->db);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->mu);
	free(c);
	return -1;
}

void chat_checkpoint_get_stats(struct chat_checkpoint *c, struct chat_checkpoint_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->stats;
	pthread_mutex_unlock(&c->mu);
}

void chat_checkpoint_destroy(struct chat_checkpoint *c)
{
	if (!c)
		return;
	/* Back to SQLite's own checkpoint for whatever commits on wr after this (nothing
	 * commits concurrently: the writer has stopped). */
	sqlite3_wal_autocheckpoint(c->wr, CHAT_CHECKPOINT_PAGES);
	pthread_mutex_lock(&c->mu);
	c->stopping = 1;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	struct chat_checkpoint_stats st = c->stats;
	SB_INFO("checkpoint_stats", "partition=%u background=%llu writer=%llu forced=%llu",
	        c->partition, (unsigned long long)st.background, (unsigned long long)st.writer,
	        (unsigned long long)st.forced);
	sqlite3_close(c->db);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
