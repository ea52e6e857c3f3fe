/*
 * test_msg: common/sb_msg: a message is freed by the time sb_msg_free returns, on the
 * calling thread (libnats' own natsMsg_Destroy leaves that to its collector thread),
 * and NULL is a no-op.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>

#include "sb_msg.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SB_TEST_ASAN 1
#endif
#ifdef SB_TEST_ASAN
/* libasan's (GCC ships no header for it here) */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define NMSGS   256
#define PAYLOAD 4096

/* Bytes the process has allocated now, by whichever allocator this build uses. */
static size_t allocated(void)
{
#ifdef SB_TEST_ASAN
	return __sanitizer_get_current_allocated_bytes();
#else
	return mallinfo2().uordblks;
#endif
}

static int setup(void **state)
{
	(void)state;
	/* As in the services: the library (and its collector thread) is running. */
	return nats_Open(-1) == NATS_OK ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	nats_Close();
	return 0;
}

static void test_freed_on_return(void **state)
{
	(void)state;
	if (!sb_msg_free_is_direct())
		skip(); /* this libnats has no natsMsg_free: the collector frees */
	static char data[PAYLOAD];
	memset(data, 'x', sizeof data);
	natsMsg *msgs[NMSGS];
	for (int i = 0; i < NMSGS; i++)
		assert_int_equal(natsMsg_Create(&msgs[i], "sb.test", NULL, data, PAYLOAD), NATS_OK);
	size_t before = allocated();
	for (int i = 0; i < NMSGS; i++)
		sb_msg_free(msgs[i]);
	size_t after = allocated();
	/* Every payload is gone now, not when another thread gets round to it. */
	assert_true(before > after);
	assert_true(before - after >= (size_t)NMSGS * PAYLOAD);
}

static void test_null_is_a_no_op(void **state)
{
	(void)state;
	size_t before = allocated();
	sb_msg_free(NULL);
	assert_int_equal(allocated(), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_freed_on_return),
	    cmocka_unit_test(test_null_is_a_no_op),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
