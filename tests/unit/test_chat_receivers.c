/*
 * test_chat_receivers: the receiver cache in front of auth-svc, with a fake look-up
 * that counts its calls: positive and negative answers are cached for their own
 * time, failures never are, a slot collision costs a look-up, not a wrong answer, and
 * a positive answer still in use is refreshed by the cache's thread before it expires.
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
	struct chat_receivers_config cfg = {fake_lookup, f, pos, neg, slots};
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
