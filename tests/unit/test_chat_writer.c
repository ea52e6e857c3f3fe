/*
 * test_chat_writer: the group-commit writer with a real store and fake jobs. A "gate"
 * job blocks the writer inside its transaction so the queue fills up behind it; that
 * makes batching, the queue bound and batch-wide rollback observable deterministically.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "chat_store.h"
#include "chat_writer.h"
#include "sb_log.h"
#include "tmpdb.h"

/* ---- a VFS that counts fsyncs: the default one, with xSync counted ---- */

static sqlite3_vfs counting_vfs;
static int syncs;

/* The default VFS gives files of different kinds different method tables (the
 * database's take locks, its WAL's do not): one counting copy of each. */
#define KINDS 4
static const sqlite3_io_methods *real_methods[KINDS];
static sqlite3_io_methods counting_methods[KINDS];

static int counting_sync(sqlite3_file *f, int flags)
{
	__atomic_add_fetch(&syncs, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < KINDS; i++)
		if (f->pMethods == &counting_methods[i])
			return real_methods[i]->xSync(f, flags);
	return SQLITE_IOERR_FSYNC;
}

static pthread_mutex_t counting_mu = PTHREAD_MUTEX_INITIALIZER;

static int counting_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
                         int *out_flags)
{
	sqlite3_vfs *real = vfs->pAppData;
	int rc = real->xOpen(real, name, f, flags, out_flags);
	if (rc != SQLITE_OK || !f->pMethods)
		return rc;
	pthread_mutex_lock(&counting_mu);
	int i = 0;
	while (i < KINDS && real_methods[i] && real_methods[i] != f->pMethods)
		i++;
	if (i < KINDS && !real_methods[i]) {
		counting_methods[i] = *f->pMethods;
		counting_methods[i].xSync = counting_sync;
		real_methods[i] = f->pMethods;
	}
	if (i < KINDS)
		f->pMethods = &counting_methods[i];
	pthread_mutex_unlock(&counting_mu);
	assert_true(i < KINDS);
	return rc;
}

static void install_counting_vfs(void)
{
	sqlite3_vfs *real = sqlite3_vfs_find(NULL);
	assert_non_null(real);
	counting_vfs = *real;
	counting_vfs.zName = "counting";
	counting_vfs.pAppData = real;
	counting_vfs.xOpen = counting_open;
	assert_int_equal(sqlite3_vfs_register(&counting_vfs, 1), SQLITE_OK);
}

static int sync_count(void)
{
	return __atomic_load_n(&syncs, __ATOMIC_SEQ_CST);
}

struct world {
	struct tmpdb db;
	struct chat_store *st;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int gate_entered;
	int gate_open;
	int finished;
	int committed;
	uint64_t ids[1024]; /* by job number, 0 until committed */
};

struct test_job {
	struct chat_job base;
	struct world *w;
	int number;
	int fail;
	uint64_t id;
};

static int job_store(struct chat_job *base, struct chat_store *st)
{
	struct test_job *j = (struct test_job *)base;
	if (j->fail)
		return -1;
	char key[32];
	snprintf(key, sizeof key, "job-%d", j->number);
	struct chat_msg m = {.sender_id = 1, .receiver_id = 2, .sender_name = "n", .body = key};
	if (chat_store_insert(st, key, &m) != CHAT_STORE_OK)
		return -1;
	j->id = m.id;
	return 0;
}

static void job_finish(struct chat_job *base, int committed)
{
	struct test_job *j = (struct test_job *)base;
	struct world *w = j->w;
	pthread_mutex_lock(&w->mu);
	w->finished++;
	w->committed += committed;
	if (committed && j->number >= 0)
		w->ids[j->number] = j->id;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->mu);
	free(j);
}

static const struct chat_job_ops ops = {job_store, job_finish, 1};

/* A job nobody is told is on disk (like a delivery receipt). */
static const struct chat_job_ops lax_ops = {job_store, job_finish, 0};

/* Blocks the writer thread inside its transaction until the test opens the gate. */
static int gate_store(struct chat_job *base, struct chat_store *st)
{
	(void)st;
	struct world *w = ((struct test_job *)base)->w;
	pthread_mutex_lock(&w->mu);
	w->gate_entered = 1;
	pthread_cond_broadcast(&w->cond);
	while (!w->gate_open)
		pthread_cond_wait(&w->cond, &w->mu);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

static const struct chat_job_ops gate_ops = {gate_store, job_finish, 1};

static struct chat_job *new_job(struct world *w, int number, const struct chat_job_ops *o)
{
	struct test_job *j = calloc(1, sizeof *j);
	assert_non_null(j);
	j->base.ops = o;
	j->base.bytes = 100;
	j->w = w;
	j->number = number;
	return &j->base;
}

static void submit_ok(struct chat_writer *wr, struct chat_job *job)
{
	assert_int_equal(chat_writer_submit(wr, &job), 0);
	assert_null(job);
}

/* Queue the gate and wait until the writer is stuck in it. */
static void close_gate(struct world *w, struct chat_writer *wr)
{
	submit_ok(wr, new_job(w, -1, &gate_ops));
	pthread_mutex_lock(&w->mu);
	while (!w->gate_entered)
		pthread_cond_wait(&w->cond, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

static void open_gate(struct world *w)
{
	pthread_mutex_lock(&w->mu);
	w->gate_open = 1;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof *w);
	if (!w)
		return -1;
	if (tmpdb_make(&w->db, "test_chat_writer", "chat-0.db") < 0) {
		free(w);
		return -1;
	}
	if (chat_store_open(&w->st, w->db.path, 1, 0, 0) < 0)
		return -1;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cond, NULL);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;
	chat_store_destroy(w->st);
	tmpdb_remove(&w->db);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
	free(w);
	return 0;
}

/* Exactly jobs 0..n-1 are stored (for receiver 2), in that order. */
static void expect_stored(struct world *w, size_t n)
{
	struct chat_msg *rows;
	size_t got;
	int more;
	assert_int_equal(chat_store_list(w->st, 2, 0, 0, 1000, &rows, &got, &more), 0);
	assert_int_equal(got, n);
	for (size_t i = 0; i < n; i++) {
		char want[32];
		snprintf(want, sizeof want, "job-%zu", i);
		assert_string_equal(rows[i].body, want);
	}
	chat_msg_free_list(rows, got);
}

static void test_group_commit_batches_in_order(void **state)
{
	struct world *w = *state;
	struct chat_writer *wr = NULL;
	struct chat_writer_limits lim = {1000, 1u << 20, 64, NULL, NULL};
	assert_int_equal(chat_writer_create(&wr, w->st, 0, &lim), 0);
	close_gate(w, wr);
	for (int i = 0; i < 200; i++)
		submit_ok(wr, new_job(w, i, &ops));
	struct chat_writer_stats st;
	chat_writer_get_stats(wr, &st);
	assert_int_equal(st.queued, 200);
	open_gate(w);
	chat_writer_stop(wr); /* finishes everything queued */

	assert_int_equal(w->finished, 201);
	assert_int_equal(w->committed, 201);
	chat_writer_get_stats(wr, &st);
	/* the gate alone, then 200 in batches of at most 64: 64 + 64 + 64 + 8 */
	assert_int_equal(st.batches, 5);
	assert_int_equal(st.jobs, 201);
	assert_int_equal(st.max_batch, 64);
	assert_int_equal(st.buckets[0], 1); /* size 1 */
	assert_int_equal(st.buckets[2], 1); /* size 8 */
	assert_int_equal(st.buckets[3], 3); /* 64..511 */
	assert_int_equal(st.failed_batches, 0);
	assert_int_equal(st.queued, 0);
	/* FIFO: ids increase in submission order. */
	for (int i = 1; i < 200; i++)
		assert_true(w->ids[i] == w->ids[i - 1] + 1);
	chat_writer_destroy(wr);
	expect_stored(w, 200);
}

static void test_failure_rolls_back_the_batch(void **state)
{
	struct world *w = *state;
	struct chat_writer *wr = NULL;
	struct chat_writer_limits lim = {1000, 1u << 20, 1024, NULL, NULL};
	assert_int_equal(chat_writer_create(&wr, w->st, 0, &lim), 0);
	close_gate(w, wr);
	for (int i = 0; i < 10; i++) {
		struct chat_job *j = new_job(w, i, &ops);
		((struct test_job *)j)->fail = (i == 5);
		submit_ok(wr, j);
	}
	open_gate(w);
	chat_writer_stop(wr);
	assert_int_equal(w->finished, 11);
	assert_int_equal(w->committed, 1); /* only the gate's own batch */
	struct chat_writer_stats st;
	chat_writer_get_stats(wr, &st);
	assert_int_equal(st.failed_batches, 1);
	chat_writer_destroy(wr);

	/* Jobs 0..4 ran before the failure, yet none of them is stored. */
	expect_stored(w, 0);
}

static void test_queue_is_bounded(void **state)
{
	struct world *w = *state;
	struct chat_writer *wr = NULL;
	struct chat_writer_limits lim = {4, 1u << 20, 1024, NULL, NULL};
	assert_int_equal(chat_writer_create(&wr, w->st, 0, &lim), 0);
	close_gate(w, wr); /* the gate has left the queue: 4 free places */
	for (int i = 0; i < 4; i++)
		submit_ok(wr, new_job(w, i, &ops));
	struct chat_job *extra = new_job(w, 4, &ops);
	assert_int_equal(chat_writer_submit(wr, &extra), -1);
	assert_non_null(extra); /* still the caller's */
	free(extra);
	open_gate(w);
	chat_writer_stop(wr);
	struct chat_writer_stats st;
	chat_writer_get_stats(wr, &st);
	assert_int_equal(st.refused, 1);
	assert_int_equal(w->committed, 5);
	chat_writer_destroy(wr);
}

static void test_byte_bound(void **state)
{
	struct world *w = *state;
	struct chat_writer *wr = NULL;
	struct chat_writer_limits lim = {1000, 250, 1024, NULL, NULL};
	assert_int_equal(chat_writer_create(&wr, w->st, 0, &lim), 0);
	close_gate(w, wr);
	submit_ok(wr, new_job(w, 0, &ops)); /* 100 */
	submit_ok(wr, new_job(w, 1, &ops)); /* 200 */
	struct chat_job *extra = new_job(w, 2, &ops);
	assert_int_equal(chat_writer_submit(wr, &extra), -1);
	free(extra);
	open_gate(w);
	chat_writer_destroy(wr);
	assert_int_equal(w->committed, 3);
}

static void test_stop_drains_then_refuses(void **state)
{
	struct world *w = *state;
	struct chat_writer *wr = NULL;
	struct chat_writer_limits lim = CHAT_WRITER_LIMITS_DEFAULT;
	assert_int_equal(chat_writer_create(&wr, w->st, 0, &lim), 0);
	for (int i = 0; i < 500; i++)
		submit_ok(wr, new_job(w, i, &ops));
	chat_writer_stop(wr);
	assert_int_equal(w->finished, 500);
	assert_int_equal(w->committed, 500);
	struct chat_job *late = new_job(w, 500, &ops);
	assert_int_equal(chat_writer_submit(wr, &late), -1);
	free(late);
	chat_writer_stop(wr); /* idempotent */
	chat_writer_destroy(wr);
	chat_writer_destroy(NULL);
}

/* A pumped writer's source: a pipe; every byte read is one job, submitted by run()
 * on the writer thread. */
struct pipe_pump {
	struct world *w;
	struct chat_writer *wr;
	int fds[2];
	int next; /* job number of the next byte */
	int runs; /* calls of run() */
	pthread_t run_thread;
	int flushes;       /* calls of flush() */
	int flush_saw;     /* jobs finished when flush() last ran */
	int flush_foreign; /* flush() calls on a thread other than run()'s */
};

static void pipe_pump_run(void *ctx)
{
	struct pipe_pump *p = ctx;
	p->run_thread = pthread_self();
	__atomic_add_fetch(&p->runs, 1, __ATOMIC_SEQ_CST);
	char buf[256];
	ssize_t n;
	while ((n = read(p->fds[0], buf, sizeof buf)) > 0)
		for (ssize_t i = 0; i < n; i++)
			assert_int_equal(chat_writer_submit(p->wr, &(struct chat_job *){new_job(
			                                               p->w, p->next++, &ops)}),
			                 0);
}

static void pipe_pump_flush(void *ctx)
{
	struct pipe_pump *p = ctx;
	if (!pthread_equal(p->run_thread, pthread_self()))
		__atomic_add_fetch(&p->flush_foreign, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&p->w->mu);
	__atomic_store_n(&p->flush_saw, p->w->finished, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&p->w->mu);
	__atomic_add_fetch(&p->flushes, 1, __ATOMIC_SEQ_CST);
}

/* Wait (5 s at most) until *v >= n; returns *v. */
static int wait_at_least(int *v, int n)
{
	for (int i = 0; i < 500 && __atomic_load_n(v, __ATOMIC_SEQ_CST) < n; i++)
		usleep(10000);
	return __atomic_load_n(v, __ATOMIC_SEQ_CST);
}

/* Wait (5 s at most) until n jobs have finished; returns how many did. */
static int wait_finished(struct world *w, int n)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&w->mu);
	while (w->finished < n && pthread_cond_timedwait(&w->cond, &w->mu, &until) == 0)
		;
	int f = w->finished;
	pthread_mutex_unlock(&w->mu);
	return f;
}

static void test_pumped_writer(void **state)
{
	struct world *w = *state;
	struct pipe_pump p = {.w = w};
	assert_int_equal(pipe(p.fds), 0);
	assert_int_equal(fcntl(p.fds[0], F_SETFL, O_NONBLOCK), 0);
	struct chat_writer_limits lim = {1000, 1u << 20, 1024, NULL, NULL};
	struct chat_writer_pump pump = {p.fds[0], pipe_pump_run, pipe_pump_flush, &p};
	assert_int_equal(chat_writer_create_pumped(&p.wr, w->st, 0, &lim, &pump), 0);

	/* 100 requests readable at once: the pump takes them all, one commit. */
	char bytes[100];
	memset(bytes, 'x', sizeof bytes);
	assert_int_equal(write(p.fds[1], bytes, sizeof bytes), (ssize_t)sizeof bytes);
	assert_int_equal(wait_finished(w, 100), 100);
	struct chat_writer_stats st;
	chat_writer_get_stats(p.wr, &st);
	assert_int_equal(st.batches, 1);
	assert_int_equal(st.jobs, 100);
	for (int i = 1; i < 100; i++)
		assert_true(w->ids[i] == w->ids[i - 1] + 1); /* in the order read */
	/* What the batch's jobs published is flushed once they have all finished. */
	assert_int_equal(wait_at_least(&p.flush_saw, 100), 100);

	/* Asleep in poll() with nothing to read, a job from another thread still wakes it. */
	usleep(20000);
	submit_ok(p.wr, new_job(w, 100, &ops));
	assert_int_equal(wait_finished(w, 101), 101);

	/* A kick runs the pump although nothing is readable. */
	usleep(20000);
	int runs = __atomic_load_n(&p.runs, __ATOMIC_SEQ_CST);
	chat_writer_kick(p.wr);
	for (int i = 0; i < 500 && __atomic_load_n(&p.runs, __ATOMIC_SEQ_CST) == runs; i++)
		usleep(10000);
	assert_true(__atomic_load_n(&p.runs, __ATOMIC_SEQ_CST) > runs);

	/* The pump ran on the writer thread, never on ours. */
	assert_false(pthread_equal(p.run_thread, pthread_self()));

	/* Stopped, it commits nothing more and no longer reads its source; it flushed
	 * on its way out, and every flush ran on the writer thread. */
	int flushes = __atomic_load_n(&p.flushes, __ATOMIC_SEQ_CST);
	chat_writer_stop(p.wr);
	assert_true(__atomic_load_n(&p.flushes, __ATOMIC_SEQ_CST) > flushes);
	assert_int_equal(p.flush_foreign, 0);
	assert_int_equal(write(p.fds[1], bytes, 1), 1);
	usleep(50000);
	assert_int_equal(w->finished, 101);
	assert_int_equal(w->committed, 101);
	char left;
	assert_int_equal(read(p.fds[0], &left, 1), 1); /* the byte is still there */
	chat_writer_destroy(p.wr);
	close(p.fds[0]);
	close(p.fds[1]);
}

/* A batch of jobs nobody waits on for durability commits without an fsync; the next
 * batch with a durable job in it fsyncs (and so carries the earlier one to disk). */
static void test_only_durable_batches_fsync(void **state)
{
	struct world *w = *state;
	struct chat_writer *wr = NULL;
	struct chat_writer_limits lim = {1000, 1u << 20, 64, NULL, NULL};
	assert_int_equal(chat_writer_create(&wr, w->st, 0, &lim), 0);

	int before = sync_count();
	submit_ok(wr, new_job(w, 0, &lax_ops));
	assert_int_equal(wait_finished(w, 1), 1);
	assert_int_equal(sync_count(), before); /* no fsync */

	submit_ok(wr, new_job(w, 1, &ops));
	assert_int_equal(wait_finished(w, 2), 2);
	assert_true(sync_count() > before);

	/* a durable job anywhere in a batch makes the batch fsync */
	close_gate(w, wr);
	submit_ok(wr, new_job(w, 2, &lax_ops));
	submit_ok(wr, new_job(w, 3, &ops));
	int mid = sync_count();
	open_gate(w);
	chat_writer_stop(wr);
	assert_true(sync_count() > mid);

	assert_int_equal(w->committed, 5);
	struct chat_writer_stats st;
	chat_writer_get_stats(wr, &st);
	assert_int_equal(st.batches, 4); /* lax, durable, gate, lax + durable */
	assert_int_equal(st.unsynced_batches, 1);
	chat_writer_destroy(wr);

	expect_stored(w, 4); /* all four rows, in order */
}

int main(void)
{
	sb_log_init("test_chat_writer", "error");
	install_counting_vfs();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_group_commit_batches_in_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_only_durable_batches_fsync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failure_rolls_back_the_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue_is_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_byte_bound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_drains_then_refuses, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pumped_writer, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
