/*
 * test_chat_checkpoint: WAL checkpoints off the commit path, against a real SQLite
 * file. A writer that commits without pause must still see its WAL start over (the
 * background checkpoint copies, the writer finishes the few frames left), so the WAL
 * file stays bounded instead of growing with every commit; and every row committed
 * meanwhile is there after reopening.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "chat_checkpoint.h"
#include "chat_store.h"
#include "sb_log.h"
#include "tmpdb.h"

#define PAGE_BYTES 4096
#define ROWS       32
#define BODY_BYTES 400

static int setup(void **state)
{
	return tmpdb_setup_named(state, "test_chat_checkpoint");
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static off_t file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? sb.st_size : 0;
}

/* One transaction of ROWS messages; returns the body bytes it stored. */
static size_t commit_batch(struct chat_store *st, uint64_t *n)
{
	char body[BODY_BYTES + 1];
	memset(body, 'x', BODY_BYTES);
	body[BODY_BYTES] = 0;
	assert_int_equal(chat_store_begin(st), 0);
	for (int i = 0; i < ROWS; i++) {
		char key[32];
		snprintf(key, sizeof key, "k%llu", (unsigned long long)++*n);
		struct chat_msg m = {.sender_id = 7,
		                     .receiver_id = 1 + *n % 50,
		                     .sender_name = "Alice",
		                     .body = body,
		                     .ts_ms = 1000};
		assert_int_equal(chat_store_insert(st, key, &m), CHAT_STORE_OK);
	}
	assert_int_equal(chat_store_commit(st), 0);
	return ROWS * BODY_BYTES;
}

static void test_wal_starts_over_under_continuous_commits(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	struct chat_checkpoint *ck = NULL;
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	assert_int_equal(
	    chat_checkpoint_create(&ck, chat_store_handle(st), tmp->path, 0, NULL, NULL), 0);

	/* Commit without a pause until the WAL has started over three times. */
	const off_t bound = (off_t)3 * CHAT_CHECKPOINT_PAGES * (PAGE_BYTES + 24);
	uint64_t n = 0;
	size_t stored = 0;
	struct chat_checkpoint_stats cs = {0};
	int64_t deadline = now_ms() + 60000;
	while (now_ms() < deadline) {
		stored += commit_batch(st, &n);
		chat_checkpoint_get_stats(ck, &cs);
		if (cs.writer >= 3 && stored > (size_t)bound * 2)
			break;
	}
	assert_true(cs.background >= 3);
	assert_true(cs.writer >= 3);
	/* Far more went through the WAL than it ever held. */
	assert_true(stored > (size_t)bound * 2);
	assert_true(file_size(tmp->wal) > 0);
	assert_true(file_size(tmp->wal) <= bound);

	chat_checkpoint_destroy(ck);
	chat_store_destroy(st);
	chat_checkpoint_destroy(NULL);

	/* Everything committed is there. */
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	assert_int_equal(sqlite3_open_v2(tmp->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM messages", -1, &q, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal((uint64_t)sqlite3_column_int64(q, 0), n);
	sqlite3_finalize(q);
	sqlite3_close(db);
}

int main(void)
{
	sb_log_init("test_chat_checkpoint", "error");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_wal_starts_over_under_continuous_commits, setup,
	                                    tmpdb_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
