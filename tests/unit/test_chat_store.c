/*
 * test_chat_store: the messages table of chat-svc against real SQLite files in a
 * fresh temporary directory: idempotent inserts, the seq <-> global id mapping,
 * backlog order and paging, receipts, and reopening (migrations are idempotent, the
 * partition layout is enforced, ids are never reused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "chat_store.h"
#include "sb_log.h"
#include "tmpdb.h"

static int setup(void **state)
{
	return tmpdb_setup_named(state, "test_chat_store");
}

static struct chat_msg msg(uint64_t sender, uint64_t receiver, const char *body, int64_t ts)
{
	struct chat_msg m = {
	    .sender_id = sender,
	    .receiver_id = receiver,
	    .sender_name = "Alice",
	    .body = body,
	    .ts_ms = ts,
	};
	return m;
}

/* Insert in its own transaction; returns the id. */
static uint64_t put(struct chat_store *st, const char *key, uint64_t receiver, const char *body)
{
	struct chat_msg m = msg(7, receiver, body, 1000);
	assert_int_equal(chat_store_begin(st), 0);
	assert_int_equal(chat_store_insert(st, key, &m), CHAT_STORE_OK);
	assert_int_equal(chat_store_commit(st), 0);
	return m.id;
}

static void test_insert_is_idempotent(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);

	assert_int_equal(chat_store_begin(st), 0);
	struct chat_msg a = msg(7, 9, "hello", 1111);
	a.attachment = "https://example.com/a.pdf";
	assert_int_equal(chat_store_insert(st, "gw1-1", &a), CHAT_STORE_OK);
	assert_int_equal(a.id, 1);

	/* A retry, even with other content, stores nothing and finds the first row. */
	struct chat_msg again = msg(7, 9, "changed", 2222);
	again.id = 999;
	assert_int_equal(chat_store_insert(st, "gw1-1", &again), CHAT_STORE_DUP);
	assert_int_equal(again.id, 999);
	struct chat_msg found;
	assert_int_equal(chat_store_find_key(st, "gw1-1", &found), CHAT_STORE_OK);
	assert_int_equal(found.id, 1);
	assert_int_equal(found.sender_id, 7);
	assert_int_equal(found.receiver_id, 9);
	assert_int_equal(found.ts_ms, 1111);
	assert_string_equal(found.sender_name, "Alice");
	assert_string_equal(found.body, "hello");
	assert_string_equal(found.attachment, "https://example.com/a.pdf");
	chat_msg_clear(&found);
	assert_null(found.mem);

	/* No key: never de-duplicated. */
	struct chat_msg b = msg(7, 9, "same", 1);
	struct chat_msg c = msg(7, 9, "same", 1);
	assert_int_equal(chat_store_insert(st, NULL, &b), CHAT_STORE_OK);
	assert_int_equal(chat_store_insert(st, "", &c), CHAT_STORE_OK);
	/* Ids increase; they may skip (a conflicting insert uses up a seq), never repeat. */
	assert_true(b.id > a.id);
	assert_true(c.id > b.id);
	assert_int_equal(chat_store_commit(st), 0);

	assert_int_equal(chat_store_find_key(st, "nope", &found), CHAT_STORE_NOT_FOUND);
	assert_int_equal(chat_store_find_key(st, "", &found), CHAT_STORE_NOT_FOUND);

	struct chat_msg *rows;
	size_t n;
	int more;
	assert_int_equal(chat_store_list(st, 9, 0, 0, 100, &rows, &n, &more), 0);
	assert_int_equal(n, 3);
	assert_int_equal(more, 0);
	assert_string_equal(rows[0].body, "hello");
	assert_null(rows[1].attachment); /* absent stays NULL, not "" */
	chat_msg_free_list(rows, n);
	chat_store_destroy(st);
}

static void test_rollback_stores_nothing(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	assert_int_equal(chat_store_begin(st), 0);
	struct chat_msg a = msg(7, 9, "lost", 1);
	assert_int_equal(chat_store_insert(st, "k", &a), CHAT_STORE_OK);
	chat_store_rollback(st);
	chat_store_rollback(st); /* outside a transaction: no-op */

	struct chat_msg found;
	assert_int_equal(chat_store_find_key(st, "k", &found), CHAT_STORE_NOT_FOUND);
	struct chat_msg *rows;
	size_t n;
	int more;
	assert_int_equal(chat_store_list(st, 9, 0, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 0);
	assert_null(rows);
	/* The key is free again. */
	assert_int_equal(put(st, "k", 9, "kept") > 0, 1);

	/* A transaction left open (its COMMIT and ROLLBACK failed) does not block the next
	 * batch: begin rolls it back first. */
	assert_int_equal(chat_store_begin(st), 0);
	struct chat_msg b = msg(7, 9, "stale", 1);
	assert_int_equal(chat_store_insert(st, "stale", &b), CHAT_STORE_OK);
	assert_int_equal(chat_store_begin(st), 0);
	assert_int_equal(chat_store_commit(st), 0);
	assert_int_equal(chat_store_find_key(st, "stale", &found), CHAT_STORE_NOT_FOUND);
	chat_store_destroy(st);
}

static void test_id_mapping_one_partition(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	assert_int_equal(put(st, "a", 5, "x"), 1);
	assert_int_equal(put(st, "b", 6, "x"), 2);
	assert_int_equal(put(st, "c", 5, "x"), 3);
	uint64_t seq;
	assert_int_equal(chat_id_to_seq(3, 1, 0, &seq), 0);
	assert_int_equal(seq, 3);
	assert_int_equal(chat_id_to_seq(0, 1, 0, &seq), -1);
	assert_int_equal(chat_id_from_seq(3, 1, 0), 3);
	chat_store_destroy(st);
}

static void test_id_mapping_four_partitions(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	/* Partition 2 of 4 holds receivers 2, 6, 10, ... */
	assert_int_equal(chat_store_open(&st, tmp->path, 4, 2, 0), 0);
	uint64_t a = put(st, "a", 6, "one");
	uint64_t b = put(st, "b", 10, "two");
	uint64_t c = put(st, "c", 6, "three");
	assert_int_equal(a, 1 * 4 + 2);
	assert_int_equal(b, 2 * 4 + 2);
	assert_int_equal(c, 3 * 4 + 2);
	/* Every id of this partition is p mod P, so no other partition can mint it. */
	assert_int_equal(a % 4, 2);
	uint64_t seq;
	assert_int_equal(chat_id_to_seq(c, 4, 2, &seq), 0);
	assert_int_equal(seq, 3);
	assert_int_equal(chat_id_to_seq(c, 4, 1, &seq), -1);
	assert_int_equal(chat_id_to_seq(2, 4, 2, &seq), -1); /* seq 0 does not exist */

	struct chat_msg *rows;
	size_t n;
	int more;
	assert_int_equal(chat_store_list(st, 6, 0, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].id, a);
	assert_int_equal(rows[1].id, c);
	chat_msg_free_list(rows, n);
	/* after_id need not belong to the partition: everything above it is listed. */
	assert_int_equal(chat_store_list(st, 6, a + 1, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, c);
	chat_msg_free_list(rows, n);
	assert_int_equal(chat_store_list(st, 6, 1, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 2);
	chat_msg_free_list(rows, n);

	/* An id of another partition (7 = 1 * 4 + 3) is ignored by receipts. */
	uint64_t ids[] = {7, a};
	size_t marked = 99;
	assert_int_equal(chat_store_begin(st), 0);
	assert_int_equal(chat_store_mark_delivered(st, 6, ids, 2, &marked), 0);
	assert_int_equal(chat_store_commit(st), 0);
	assert_int_equal(marked, 1);

	/* The backlog no longer has a; a resync (all) after an id still does, and only
	 * receiver 6's rows, ascending, limited. */
	assert_int_equal(chat_store_list(st, 6, 0, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, c);
	chat_msg_free_list(rows, n);
	assert_int_equal(chat_store_list(st, 6, 0, 1, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].id, a);
	assert_int_equal(rows[1].id, c);
	assert_int_equal(more, 0);
	chat_msg_free_list(rows, n);
	assert_int_equal(chat_store_list(st, 6, 0, 1, 1, &rows, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, a);
	assert_int_equal(more, 1);
	chat_msg_free_list(rows, n);
	assert_int_equal(chat_store_list(st, 6, a, 1, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, c);
	chat_msg_free_list(rows, n);
	chat_store_destroy(st);
}

static void test_undelivered_order_and_paging(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	uint64_t mine[10];
	assert_int_equal(chat_store_begin(st), 0);
	for (int i = 0; i < 10; i++) {
		char key[16], body[16];
		snprintf(key, sizeof key, "r5-%d", i);
		snprintf(body, sizeof body, "m%d", i);
		struct chat_msg m = msg(7, 5, body, 100 + i);
		assert_int_equal(chat_store_insert(st, key, &m), CHAT_STORE_OK);
		mine[i] = m.id;
		snprintf(key, sizeof key, "r6-%d", i);
		struct chat_msg other = msg(7, 6, "other", 0);
		assert_int_equal(chat_store_insert(st, key, &other), CHAT_STORE_OK);
	}
	assert_int_equal(chat_store_commit(st), 0);

	/* Page through with after_id = last id seen, limit 4: 4 + 4 + 2. */
	uint64_t after = 0;
	size_t total = 0;
	int pages = 0, more = 1;
	while (more) {
		struct chat_msg *rows;
		size_t n;
		assert_int_equal(chat_store_list(st, 5, after, 0, 4, &rows, &n, &more), 0);
		pages++;
		assert_int_equal(more, pages < 3);
		assert_int_equal(n, pages < 3 ? 4 : 2);
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(rows[i].id, mine[total]);
			assert_int_equal(rows[i].receiver_id, 5);
			char body[16];
			snprintf(body, sizeof body, "m%zu", total);
			assert_string_equal(rows[i].body, body);
			assert_int_equal(rows[i].ts_ms, 100 + (int64_t)total);
			assert_true(rows[i].id > after);
			total++;
		}
		after = rows[n - 1].id;
		chat_msg_free_list(rows, n);
	}
	assert_int_equal(total, 10);
	assert_int_equal(pages, 3);

	/* Exactly limit rows left: no further page announced. */
	struct chat_msg *rows;
	size_t n;
	assert_int_equal(chat_store_list(st, 5, mine[5], 0, 4, &rows, &n, &more), 0);
	assert_int_equal(n, 4);
	assert_int_equal(more, 0);
	chat_msg_free_list(rows, n);
	/* After the last id, or a huge one: nothing. */
	assert_int_equal(chat_store_list(st, 5, mine[9], 0, 4, &rows, &n, &more), 0);
	assert_int_equal(n, 0);
	assert_int_equal(chat_store_list(st, 5, UINT64_MAX, 0, 4, &rows, &n, &more), 0);
	assert_int_equal(n, 0);
	/* A receiver with nothing. */
	assert_int_equal(chat_store_list(st, 8, 0, 0, 4, &rows, &n, &more), 0);
	assert_int_equal(n, 0);
	assert_int_equal(more, 0);
	chat_store_destroy(st);
}

static void test_mark_delivered_only_for_receiver(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	uint64_t a = put(st, "a", 5, "for five");
	uint64_t b = put(st, "b", 5, "for five too");
	uint64_t c = put(st, "c", 6, "for six");

	/* User 6 cannot retire user 5's messages. */
	uint64_t wrong[] = {a, b};
	size_t marked = 99;
	assert_int_equal(chat_store_begin(st), 0);
	assert_int_equal(chat_store_mark_delivered(st, 6, wrong, 2, &marked), 0);
	assert_int_equal(chat_store_commit(st), 0);
	assert_int_equal(marked, 0);

	uint64_t right[] = {a, 12345, 0};
	assert_int_equal(chat_store_begin(st), 0);
	assert_int_equal(chat_store_mark_delivered(st, 5, right, 3, &marked), 0);
	assert_int_equal(chat_store_commit(st), 0);
	assert_int_equal(marked, 1);
	/* Again: already delivered, nothing changes. */
	assert_int_equal(chat_store_begin(st), 0);
	assert_int_equal(chat_store_mark_delivered(st, 5, right, 1, &marked), 0);
	assert_int_equal(chat_store_commit(st), 0);
	assert_int_equal(marked, 0);

	struct chat_msg *rows;
	size_t n;
	int more;
	assert_int_equal(chat_store_list(st, 5, 0, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, b);
	chat_msg_free_list(rows, n);
	assert_int_equal(chat_store_list(st, 6, 0, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, c);
	chat_msg_free_list(rows, n);
	chat_store_destroy(st);
}

static int64_t query_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int64_t v = -1;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static void test_reopen_keeps_data(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	uint64_t a = put(st, "a", 5, "before");
	chat_store_destroy(st);
	assert_int_equal(query_int(tmp->path, "PRAGMA user_version"), 1);

	/* Reopen: the migration does not run again, the row and its key survive. */
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	assert_int_equal(query_int(tmp->path, "PRAGMA user_version"), 1);
	struct chat_msg again = msg(7, 5, "retry", 0);
	assert_int_equal(chat_store_begin(st), 0);
	assert_int_equal(chat_store_insert(st, "a", &again), CHAT_STORE_DUP);
	assert_int_equal(chat_store_commit(st), 0);
	uint64_t b = put(st, "b", 5, "after");
	assert_true(b > a);

	/* A read-only handle sees what the writer committed. */
	struct chat_store *rd = NULL;
	assert_int_equal(chat_store_open(&rd, tmp->path, 1, 0, 1), 0);
	struct chat_msg *rows;
	size_t n;
	int more;
	assert_int_equal(chat_store_list(rd, 5, 0, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].body, "before");
	assert_string_equal(rows[1].body, "after");
	chat_msg_free_list(rows, n);
	assert_int_equal(query_int(tmp->path, "SELECT count(*) FROM messages"), 2);
	assert_int_equal(query_int(tmp->path,
	                           "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
	                           " AND name = 'messages_undelivered'"),
	                 1);
	chat_store_destroy(rd);
	chat_store_destroy(st);

	/* WAL mode is a property of the file. */
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_open(tmp->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static void test_layout_change_refused(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	put(st, "a", 5, "x");
	chat_store_destroy(st);
	st = NULL;
	/* Ids minted under P = 1 would collide with those of a 4-partition layout. */
	assert_int_equal(chat_store_open(&st, tmp->path, 4, 0, 0), -1);
	assert_null(st);
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 1, 0), -1); /* p >= P */
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	chat_store_destroy(st);
	chat_store_destroy(NULL);
}

static void test_ids_never_reused(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	put(st, "a", 5, "x");
	uint64_t b = put(st, "b", 5, "y");
	chat_store_destroy(st);
	/* Even if the newest row is removed (say, by a retention job), its id stays used. */
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(tmp->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DELETE FROM messages WHERE seq = 2", NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 0), 0);
	assert_true(put(st, "c", 5, "z") > b);
	chat_store_destroy(st);
}

static void test_readonly_needs_migrated_file(void **state)
{
	struct tmpdb *tmp = *state;
	struct chat_store *st = NULL;
	assert_int_equal(chat_store_open(&st, tmp->path, 1, 0, 1), -1);
	assert_null(st);
}

int main(void)
{
	sb_log_init("test_chat_store", "error");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_insert_is_idempotent, setup, tmpdb_teardown),
	    cmocka_unit_test_setup_teardown(test_rollback_stores_nothing, setup, tmpdb_teardown),
	    cmocka_unit_test_setup_teardown(test_id_mapping_one_partition, setup, tmpdb_teardown),
	    cmocka_unit_test_setup_teardown(test_id_mapping_four_partitions, setup, tmpdb_teardown),
	    cmocka_unit_test_setup_teardown(test_undelivered_order_and_paging, setup,
	                                    tmpdb_teardown),
	    cmocka_unit_test_setup_teardown(test_mark_delivered_only_for_receiver, setup,
	                                    tmpdb_teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, tmpdb_teardown),
	    cmocka_unit_test_setup_teardown(test_layout_change_refused, setup, tmpdb_teardown),
	    cmocka_unit_test_setup_teardown(test_ids_never_reused, setup, tmpdb_teardown),
	    cmocka_unit_test_setup_teardown(test_readonly_needs_migrated_file, setup,
	                                    tmpdb_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
