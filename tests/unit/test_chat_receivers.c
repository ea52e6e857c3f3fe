/*
 * test_chat_receivers: the receiver cache in front of auth-svc, with a fake look-up
 * that counts its calls: positive and negative answers are cached for their own
 * time, failures never are, and a slot collision costs a look-up, not a wrong answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "chat_receivers.h"
#include "sb_log.h"

struct fake {
	int calls;
	int down; /* answer "unavailable" */
};

/* Even ids exist, odd ones do not. */
static int fake_lookup(void *ctx, uint64_t user_id, const char *request_id)
{
	(void)request_id;
	struct fake *f = ctx;
	f->calls++;
	if (f->down)
		return CHAT_RECEIVER_UNAVAILABLE;
	return user_id % 2 == 0 ? CHAT_RECEIVER_FOUND : CHAT_RECEIVER_UNKNOWN;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static struct chat_receivers *make(struct fake *f, int64_t pos, int64_t neg, size_t slots)
{
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

int main(void)
{
	sb_log_init("test_chat_receivers", "error");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_positive_cached),
	    cmocka_unit_test(test_negative_cached_briefly),
	    cmocka_unit_test(test_failures_not_cached),
	    cmocka_unit_test(test_zero_is_unknown_without_lookup),
	    cmocka_unit_test(test_collisions_stay_correct),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
