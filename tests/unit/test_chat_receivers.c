/*
 * test_chat_receivers: the receiver cache in front of auth-svc, with a fake look-up
 * that counts its calls: positive and negative answers are cached for their own
 * time, failures never are, a slot collision costs a look-up, not a wrong answer, and
 * a positive answer still in use is refreshed by the cache's thread before it expires;
 * peek never asks; resolve asks on the cache's threads, several at once, and answers
 * through its callback; cancel drops an owner's queued look-ups, lets go of its
 * running ones without waiting for them, and waits only for a callback in progress.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "chat_receivers.h"
#include "sb_log.h"

struct fake {
	_Atomic int calls;
	_Atomic int down;     /* answer "unavailable" */
	_Atomic int gate;     /* the refresh thread's look-ups wait while it is 1 */
	_Atomic int bg_calls; /* look-ups made by a thread other than the test's */
	pthread_t test_thread;
};

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Even ids exist, odd ones do not. */
static int fake_lookup(void *ctx, uint64_t user_id, const char *request_id)
{
	(void)request_id;
	struct fake *f = ctx;
	f->calls++;
	if (!pthread_equal(pthread_self(), f->test_thread)) {
		f->bg_calls++;
		while (atomic_load(&f->gate))
			sleep_ms(1);
	}
	if (f->down)
		return CHAT_RECEIVER_UNAVAILABLE;
	return user_id % 2 == 0 ? CHAT_RECEIVER_FOUND : CHAT_RECEIVER_UNKNOWN;
}

static struct chat_receivers *make(struct fake *f, int64_t pos, int64_t neg, size_t slots)
{
	f->test_thread = pthread_self();
	struct chat_receivers_config cfg = {fake_lookup, f, pos, neg, slots, 4};
	struct chat_receivers *r = NULL;
	assert_int_equal(chat_receivers_create(&r, &cfg), 0);
	return r;
}

static void test_positive_cached(void **state)
{
	(void)state;
	struct fake f = {0};
	struct chat_receivers *r = make(&f, 60000, 60000, 1024);
	for (int i = 0; i < 5; i++)
		assert_int_equal(chat_receivers_check(r, 42, "rid"), CHAT_RECEIVER_FOUND);
	assert_int_equal(f.calls, 1);
	chat_receivers_destroy(r);
}

static void test_negative_cached_briefly(void **state)
{
	(void)state;
	struct fake f = {0};
	struct chat_receivers *r = make(&f, 60000, 30, 1024);
	assert_int_equal(chat_receivers_check(r, 7, NULL), CHAT_RECEIVER_UNKNOWN);
	assert_int_equal(chat_receivers_check(r, 7, NULL), CHAT_RECEIVER_UNKNOWN);
	assert_int_equal(f.calls, 1);
	sleep_ms(60);
	assert_int_equal(chat_receivers_check(r, 7, NULL), CHAT_RECEIVER_UNKNOWN);
	assert_int_equal(f.calls, 2);
	chat_receivers_destroy(r);
}

static void test_failures_not_cached(void **state)
{
	(void)state;
	struct fake f = {.down = 1};
	struct chat_receivers *r = make(&f, 60000, 60000, 1024);
	assert_int_equal(chat_receivers_check(r, 4, NULL), CHAT_RECEIVER_UNAVAILABLE);
	assert_int_equal(chat_receivers_check(r, 4, NULL), CHAT_RECEIVER_UNAVAILABLE);
	assert_int_equal(f.calls, 2);
	f.down = 0; /* auth-svc is back: the very next send gets through */
	assert_int_equal(chat_receivers_check(r, 4, NULL), CHAT_RECEIVER_FOUND);
	assert_int_equal(f.calls, 3);
	chat_receivers_destroy(r);
}

static void test_zero_is_unknown_without_lookup(void **state)
{
	(void)state;
	struct fake f = {0};
	struct chat_receivers *r = make(&f, 60000, 60000, 1024);
	assert_int_equal(chat_receivers_check(r, 0, NULL), CHAT_RECEIVER_UNKNOWN);
	assert_int_equal(f.calls, 0);
	chat_receivers_destroy(r);
}

static void test_collisions_stay_correct(void **state)
{
	(void)state;
	struct fake f = {0};
	struct chat_receivers *r = make(&f, 60000, 60000, 1); /* one slot for everyone */
	assert_int_equal(chat_receivers_check(r, 2, NULL), CHAT_RECEIVER_FOUND);
	assert_int_equal(chat_receivers_check(r, 3, NULL), CHAT_RECEIVER_UNKNOWN);
	assert_int_equal(chat_receivers_check(r, 2, NULL), CHAT_RECEIVER_FOUND);
	assert_int_equal(chat_receivers_check(r, 2, NULL), CHAT_RECEIVER_FOUND);
	assert_int_equal(f.calls, 3);
	chat_receivers_destroy(r);
	chat_receivers_destroy(NULL);
}

static void wait_bg_calls(struct fake *f, int n)
{
	for (int i = 0; i < 2000 && atomic_load(&f->bg_calls) < n; i++)
		sleep_ms(1);
	assert_int_equal(atomic_load(&f->bg_calls), n);
}

static void test_refreshed_ahead_of_expiry(void **state)
{
	(void)state;
	struct fake f = {0};
	struct chat_receivers *r = make(&f, 300, 60000, 1024);
	assert_int_equal(chat_receivers_check(r, 8, NULL), CHAT_RECEIVER_FOUND);
	assert_int_equal(f.calls, 1);
	sleep_ms(50); /* young: served as it is */
	assert_int_equal(chat_receivers_check(r, 8, NULL), CHAT_RECEIVER_FOUND);
	assert_int_equal(f.calls, 1);

	/* In its last third: answered at once while the refresh waits at the gate. */
	atomic_store(&f.gate, 1);
	sleep_ms(200);
	for (int i = 0; i < 3; i++)
		assert_int_equal(chat_receivers_check(r, 8, NULL), CHAT_RECEIVER_FOUND);
	wait_bg_calls(&f, 1); /* one refresh, however many hits */
	atomic_store(&f.gate, 0);

	/* Past the first answer's expiry: the refreshed entry serves, no look-up. */
	sleep_ms(150);
	assert_int_equal(chat_receivers_check(r, 8, NULL), CHAT_RECEIVER_FOUND);
	assert_int_equal(f.calls, 2);
	chat_receivers_destroy(r);
}

static void test_failed_refresh_keeps_entry_until_expiry(void **state)
{
	(void)state;
	struct fake f = {0};
	struct chat_receivers *r = make(&f, 300, 60000, 1024);
	assert_int_equal(chat_receivers_check(r, 10, NULL), CHAT_RECEIVER_FOUND);
	/* auth-svc down during the refresh: the entry lives out its time, no longer. */
	atomic_store(&f.down, 1);
	sleep_ms(220);
	assert_int_equal(chat_receivers_check(r, 10, NULL), CHAT_RECEIVER_FOUND);
	wait_bg_calls(&f, 1);
	sleep_ms(120);
	assert_int_equal(chat_receivers_check(r, 10, NULL), CHAT_RECEIVER_UNAVAILABLE);
	atomic_store(&f.down, 0);
	chat_receivers_destroy(r);
}

struct answers {
	pthread_mutex_t mu;
	int n;
	uint64_t ids[64];
	int status[64];
};

static void on_done(void *arg, uint64_t user_id, int status)
{
	struct answers *a = arg;
	pthread_mutex_lock(&a->mu);
	if (a->n < 64) {
		a->ids[a->n] = user_id;
		a->status[a->n] = status;
	}
	a->n++;
	pthread_mutex_unlock(&a->mu);
}

static int answered(struct answers *a)
{
	pthread_mutex_lock(&a->mu);
	int n = a->n;
	pthread_mutex_unlock(&a->mu);
	return n;
}

static void wait_answered(struct answers *a, int n)
{
	for (int i = 0; i < 2000 && answered(a) < n; i++)
		sleep_ms(1);
	assert_int_equal(answered(a), n);
}

static void test_peek_never_looks_up(void **state)
{
	(void)state;
	struct fake f = {0};
	struct chat_receivers *r = make(&f, 60000, 60000, 1024);
	assert_int_equal(chat_receivers_peek(r, 12), CHAT_RECEIVER_MISS);
	assert_int_equal(chat_receivers_peek(r, 0), CHAT_RECEIVER_UNKNOWN);
	assert_int_equal(f.calls, 0);
	assert_int_equal(chat_receivers_check(r, 12, NULL), CHAT_RECEIVER_FOUND);
	assert_int_equal(chat_receivers_check(r, 13, NULL), CHAT_RECEIVER_UNKNOWN);
	assert_int_equal(chat_receivers_peek(r, 12), CHAT_RECEIVER_FOUND);
	assert_int_equal(chat_receivers_peek(r, 13), CHAT_RECEIVER_UNKNOWN);
	assert_int_equal(f.calls, 2);
	chat_receivers_destroy(r);
}

static void test_resolve_asks_in_parallel_and_calls_back(void **state)
{
	(void)state;
	struct fake f = {0};
	struct answers a = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct chat_receivers *r = make(&f, 60000, 60000, 1024);
	atomic_store(&f.gate, 1);
	for (uint64_t id = 20; id < 28; id++)
		assert_int_equal(chat_receivers_resolve(r, id, on_done, &a, &a), 0);
	/* Four threads: four look-ups are out at once, none answered while the gate holds. */
	wait_bg_calls(&f, 4);
	sleep_ms(20);
	assert_int_equal(atomic_load(&f.bg_calls), 4);
	assert_int_equal(answered(&a), 0);
	atomic_store(&f.gate, 0);
	wait_answered(&a, 8);
	for (int i = 0; i < 8; i++)
		assert_int_equal(a.status[i],
		                 a.ids[i] % 2 == 0 ? CHAT_RECEIVER_FOUND : CHAT_RECEIVER_UNKNOWN);
	/* The answers are cached: no further look-up. */
	for (uint64_t id = 20; id < 28; id++)
		assert_int_equal(chat_receivers_peek(r, id),
		                 id % 2 == 0 ? CHAT_RECEIVER_FOUND : CHAT_RECEIVER_UNKNOWN);
	assert_int_equal(f.calls, 8);
	/* A failure is handed back, and not cached. */
	atomic_store(&f.down, 1);
	assert_int_equal(chat_receivers_resolve(r, 40, on_done, &a, &a), 0);
	wait_answered(&a, 9);
	assert_int_equal(a.status[8], CHAT_RECEIVER_UNAVAILABLE);
	assert_int_equal(chat_receivers_peek(r, 40), CHAT_RECEIVER_MISS);
	assert_int_equal(chat_receivers_resolve(r, 41, NULL, &a, &a), -1); /* no callback */
	chat_receivers_destroy(r);
}

static _Atomic int slow_done_ms, slow_entered;

static void on_slow_done(void *arg, uint64_t user_id, int status)
{
	atomic_store(&slow_entered, 1);
	sleep_ms(atomic_load(&slow_done_ms));
	on_done(arg, user_id, status);
}

static void *open_gate_later(void *arg)
{
	struct fake *f = arg;
	sleep_ms(100);
	atomic_store(&f->gate, 0);
	return NULL;
}

static void test_cancel_drops_queued_and_lets_go_of_running(void **state)
{
	(void)state;
	struct fake f = {0};
	struct answers mine = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct answers other = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct chat_receivers *r = make(&f, 60000, 60000, 1024);
	atomic_store(&f.gate, 1);
	for (uint64_t id = 100; id < 110; id++)
		assert_int_equal(chat_receivers_resolve(r, id, on_done, &mine, &mine), 0);
	wait_bg_calls(&f, 4); /* four running, six queued */
	assert_int_equal(chat_receivers_resolve(r, 200, on_done, &other, &other), 0);
	/* Returns at once, look-ups still out: none of the ten calls back, ever. */
	chat_receivers_cancel(r, &mine);
	pthread_t opener;
	assert_int_equal(pthread_create(&opener, NULL, open_gate_later, &f), 0);
	pthread_join(opener, NULL);
	wait_answered(&other, 1); /* another owner's request is kept */
	sleep_ms(50);
	assert_int_equal(answered(&mine), 0);
	assert_int_equal(f.calls, 5);
	/* The four answers that came after the cancel still fill the cache. */
	int cached = 0;
	for (uint64_t id = 100; id < 110; id++)
		cached += chat_receivers_peek(r, id) != CHAT_RECEIVER_MISS;
	assert_int_equal(cached, 4);

	/* A done already running is waited for. */
	struct answers slow = {.mu = PTHREAD_MUTEX_INITIALIZER};
	atomic_store(&slow_done_ms, 150);
	assert_int_equal(chat_receivers_resolve(r, 300, on_slow_done, &slow, &slow), 0);
	for (int i = 0; i < 2000 && !atomic_load(&slow_entered); i++)
		sleep_ms(1);
	assert_true(atomic_load(&slow_entered));
	chat_receivers_cancel(r, &slow);
	assert_int_equal(answered(&slow), 1); /* it had finished before cancel returned */
	chat_receivers_cancel(NULL, &mine);
	chat_receivers_destroy(r);
}

int main(void)
{
	sb_log_init("test_chat_receivers", "error");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_positive_cached),
	    cmocka_unit_test(test_negative_cached_briefly),
	    cmocka_unit_test(test_failures_not_cached),
	    cmocka_unit_test(test_zero_is_unknown_without_lookup),
	    cmocka_unit_test(test_collisions_stay_correct),
	    cmocka_unit_test(test_refreshed_ahead_of_expiry),
	    cmocka_unit_test(test_failed_refresh_keeps_entry_until_expiry),
	    cmocka_unit_test(test_peek_never_looks_up),
	    cmocka_unit_test(test_resolve_asks_in_parallel_and_calls_back),
	    cmocka_unit_test(test_cancel_drops_queued_and_lets_go_of_running),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
