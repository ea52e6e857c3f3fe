/*
 * test_notify_store: notify-svc's SQLite store (notify-svc/notify_store.c,
 * notifications_table.c, cursors_table.c) against real files in a fresh temporary
 * directory: one row per target, redeliveries stored once, the backlog rule (own rows
 * and broadcasts above the cursor; no broadcasts from before a user's first sync;
 * retention), paging, cursor moves, the purge, id reuse, and reopening.
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

#include "notify_store.h"
#include "sb_log.h"
#include "tmpdb.h"

#define NOW 1700000000000LL
#define OLD (NOW - 10 * 86400 * 1000LL)

struct fixture {
	struct tmpdb db;
	struct notify_store *st;
};

static int setup(void **state)
{
	sb_log_init("test", "error");
	struct fixture *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	if (tmpdb_make(&f->db, "test_notify_store", "notify.db") < 0) {
		free(f);
		return -1;
	}
	if (notify_store_open(&f->st, f->db.path) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	notify_store_destroy(f->st);
	tmpdb_remove(&f->db);
	free(f);
	return 0;
}

/* Store one injection (seq) for the given users (0 = broadcast) in one transaction, as
 * the consumer does; returns the id of the first row. */
static uint64_t inject_at(struct notify_store *st, uint64_t seq, const uint64_t *users, size_t n,
                          const char *title, int64_t ts)
{
	uint64_t first = 0;
	assert_int_equal(notify_store_begin(st), 0);
	for (size_t i = 0; i < n; i++) {
		struct notify_row r = {.user_id = users[i],
		                       .title = title,
		                       .message = "body",
		                       .type = "info",
		                       .ts_ms = ts};
		assert_int_equal(notify_store_insert(st, seq, &r), NOTIFY_STORE_OK);
		assert_true(r.id > 0);
		if (i == 0)
			first = r.id;
	}
	assert_int_equal(notify_store_commit(st), 0);
	return first;
}

static uint64_t to_user(struct notify_store *st, uint64_t seq, uint64_t user, const char *title)
{
	return inject_at(st, seq, &user, 1, title, NOW);
}

static uint64_t broadcast(struct notify_store *st, uint64_t seq, const char *title)
{
	uint64_t zero = 0;
	return inject_at(st, seq, &zero, 1, title, NOW);
}

/* Sync user's backlog (everything, one page) into ids[]; returns the count. */
static size_t sync_ids(struct notify_store *st, uint64_t user, uint64_t after, uint64_t *ids,
                       size_t cap)
{
	struct notify_row *rows = NULL;
	size_t n = 0;
	int more = 0;
	assert_int_equal(
	    notify_store_sync(st, user, after, 0, NOW - 7 * 86400 * 1000LL, 1000, &rows, &n, &more),
	    0);
	assert_false(more);
	assert_true(n <= cap);
	for (size_t i = 0; i < n; i++) {
		ids[i] = rows[i].id;
		if (i)
			assert_true(rows[i].id > rows[i - 1].id); /* ascending */
		assert_true(rows[i].user_id == user || rows[i].user_id == 0);
	}
	notify_row_free_list(rows, n);
	return n;
}

static void test_one_row_per_target(void **state)
{
	struct fixture *f = *state;
	uint64_t users[] = {5, 6, 7};
	uint64_t first = inject_at(f->st, 1, users, 3, "multi", NOW);
	struct notify_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(notify_store_find_seq(f->st, 1, &rows, &n), NOTIFY_STORE_OK);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(rows[i].id, first + i);
		assert_int_equal(rows[i].user_id, users[i]);
		assert_string_equal(rows[i].title, "multi");
		assert_string_equal(rows[i].message, "body");
		assert_string_equal(rows[i].type, "info");
		assert_int_equal(rows[i].ts_ms, NOW);
	}
	notify_row_free_list(rows, n);
	/* A broadcast is one row with user_id 0. */
	uint64_t b = broadcast(f->st, 2, "all");
	assert_int_equal(notify_store_find_seq(f->st, 2, &rows, &n), NOTIFY_STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, b);
	assert_int_equal(rows[0].user_id, 0);
	notify_row_free_list(rows, n);
	assert_int_equal(notify_store_find_seq(f->st, 3, &rows, &n), NOTIFY_STORE_NOT_FOUND);
	assert_null(rows);
}

static void test_redelivery_is_stored_once(void **state)
{
	struct fixture *f = *state;
	uint64_t id = to_user(f->st, 42, 5, "once");
	struct notify_row again = {
	    .user_id = 5, .title = "once", .message = "", .type = "info", .ts_ms = NOW};
	assert_int_equal(notify_store_begin(f->st), 0);
	assert_int_equal(notify_store_insert(f->st, 42, &again), NOTIFY_STORE_DUP);
	assert_int_equal(again.id, 0);
	/* Same stream sequence, another target: a different row (multi-user injection). */
	struct notify_row other = again;
	other.user_id = 6;
	assert_int_equal(notify_store_insert(f->st, 42, &other), NOTIFY_STORE_OK);
	assert_int_equal(notify_store_commit(f->st), 0);
	struct notify_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(notify_store_find_seq(f->st, 42, &rows, &n), NOTIFY_STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].id, id);
	notify_row_free_list(rows, n);
	uint64_t ids[8];
	assert_int_equal(sync_ids(f->st, 5, 0, ids, 8), 1);
	assert_int_equal(ids[0], id);
}

static void test_never_connected_user(void **state)
{
	struct fixture *f = *state;
	uint64_t b1 = broadcast(f->st, 1, "old broadcast");
	uint64_t a1 = to_user(f->st, 2, 7, "for 7 while never connected");
	to_user(f->st, 3, 8, "for someone else");
	uint64_t b2 = broadcast(f->st, 4, "another old broadcast");
	assert_true(b1 < a1 && a1 < b2);

	struct notify_cursor c;
	assert_int_equal(notify_cursor_get(f->st, 7, &c), NOTIFY_STORE_NOT_FOUND);
	uint64_t ids[8];
	/* First sync: the addressed row, none of the broadcasts from before. */
	assert_int_equal(sync_ids(f->st, 7, 0, ids, 8), 1);
	assert_int_equal(ids[0], a1);
	assert_int_equal(notify_cursor_get(f->st, 7, &c), NOTIFY_STORE_OK);
	assert_int_equal(c.last_id, 0);
	assert_int_equal(c.bcast_floor, b2);

	/* Broadcasts from now on reach them, old ones never do; the addressed row stays
	 * until delivered. */
	uint64_t b3 = broadcast(f->st, 5, "new broadcast");
	assert_int_equal(sync_ids(f->st, 7, 0, ids, 8), 2);
	assert_int_equal(ids[0], a1);
	assert_int_equal(ids[1], b3);
	/* The floor is fixed at the first sync: a later sync does not move it. */
	assert_int_equal(notify_cursor_get(f->st, 7, &c), NOTIFY_STORE_OK);
	assert_int_equal(c.bcast_floor, b2);

	/* Receipt for a1: only b3 is left. */
	assert_int_equal(notify_cursor_advance(f->st, 7, a1), 0);
	assert_int_equal(sync_ids(f->st, 7, 0, ids, 8), 1);
	assert_int_equal(ids[0], b3);
	/* A resync (a socket behind a bus gap) ignores the receipt, not the floor. */
	struct notify_row *rows = NULL;
	size_t n = 0;
	int more = 0;
	assert_int_equal(notify_store_sync(f->st, 7, 0, 1, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].id, a1);
	assert_int_equal(rows[1].id, b3);
	notify_row_free_list(rows, n);
	assert_int_equal(notify_store_sync(f->st, 7, a1, 1, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, b3);
	notify_row_free_list(rows, n);
	assert_int_equal(notify_cursor_advance(f->st, 7, b3), 0);
	assert_int_equal(sync_ids(f->st, 7, 0, ids, 8), 0);

	/* A user who never had a notification and never synced: no broadcast history. */
	assert_int_equal(sync_ids(f->st, 9, 0, ids, 8), 0);
	/* With nothing stored yet for anyone, the floor is 0 and the first broadcast
	 * after the first sync arrives. */
}

static void test_floor_zero_on_empty_store(void **state)
{
	struct fixture *f = *state;
	uint64_t ids[4];
	assert_int_equal(sync_ids(f->st, 3, 0, ids, 4), 0);
	struct notify_cursor c;
	assert_int_equal(notify_cursor_get(f->st, 3, &c), NOTIFY_STORE_OK);
	assert_int_equal(c.bcast_floor, 0);
	assert_int_equal(c.last_id, 0);
	uint64_t b = broadcast(f->st, 1, "first ever");
	assert_int_equal(sync_ids(f->st, 3, 0, ids, 4), 1);
	assert_int_equal(ids[0], b);
}

static void test_cursor_and_after_id(void **state)
{
	struct fixture *f = *state;
	uint64_t ids[16];
	assert_int_equal(sync_ids(f->st, 5, 0, ids, 16), 0); /* connected before anything */
	uint64_t a = to_user(f->st, 1, 5, "a");
	uint64_t b = broadcast(f->st, 2, "b");
	uint64_t c = to_user(f->st, 3, 5, "c");
	to_user(f->st, 4, 6, "not mine");
	uint64_t d = broadcast(f->st, 5, "d");
	assert_int_equal(sync_ids(f->st, 5, 0, ids, 16), 4);
	assert_int_equal(ids[0], a);
	assert_int_equal(ids[1], b);
	assert_int_equal(ids[2], c);
	assert_int_equal(ids[3], d);
	/* after_id pages without touching the cursor. */
	assert_int_equal(sync_ids(f->st, 5, b, ids, 16), 2);
	assert_int_equal(ids[0], c);
	assert_int_equal(ids[1], d);
	/* The cursor only moves up. */
	assert_int_equal(notify_cursor_advance(f->st, 5, c), 0);
	assert_int_equal(notify_cursor_advance(f->st, 5, a), 0);
	struct notify_cursor cur;
	assert_int_equal(notify_cursor_get(f->st, 5, &cur), NOTIFY_STORE_OK);
	assert_int_equal(cur.last_id, c);
	assert_int_equal(sync_ids(f->st, 5, 0, ids, 16), 1);
	assert_int_equal(ids[0], d);
	/* A receipt beyond the highest id ever issued is clamped, so it cannot hide the
	 * notifications still to come. */
	assert_int_equal(notify_cursor_advance(f->st, 5, d + 1000), 0);
	assert_int_equal(notify_cursor_get(f->st, 5, &cur), NOTIFY_STORE_OK);
	assert_int_equal(cur.last_id, d);
	uint64_t e = to_user(f->st, 6, 5, "e");
	assert_int_equal(sync_ids(f->st, 5, 0, ids, 16), 1);
	assert_int_equal(ids[0], e);
	/* A receipt for a user without a cursor creates it. */
	assert_int_equal(notify_cursor_advance(f->st, 11, c), 0);
	assert_int_equal(notify_cursor_get(f->st, 11, &cur), NOTIFY_STORE_OK);
	assert_int_equal(cur.last_id, c);
}

static void test_paging(void **state)
{
	struct fixture *f = *state;
	uint64_t ids[16];
	assert_int_equal(sync_ids(f->st, 5, 0, ids, 16), 0);
	uint64_t all[10];
	for (uint64_t i = 0; i < 10; i++)
		all[i] =
		    i % 3 == 0 ? broadcast(f->st, 100 + i, "b") : to_user(f->st, 100 + i, 5, "u");
	struct notify_row *rows = NULL;
	size_t n = 0, got = 0;
	int more = 1;
	uint64_t after = 0;
	while (more) {
		assert_int_equal(notify_store_sync(f->st, 5, after, 0, 0, 4, &rows, &n, &more), 0);
		assert_true(n <= 4);
		assert_int_equal(more, got + n < 10);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(rows[i].id, all[got + i]);
		got += n;
		if (n)
			after = rows[n - 1].id;
		notify_row_free_list(rows, n);
	}
	assert_int_equal(got, 10);
}

static void test_retention_and_purge(void **state)
{
	struct fixture *f = *state;
	uint64_t ids[8];
	assert_int_equal(sync_ids(f->st, 5, 0, ids, 8), 0);
	uint64_t five = 5, zero = 0;
	inject_at(f->st, 1, &five, 1, "too old", OLD);
	inject_at(f->st, 2, &zero, 1, "too old broadcast", OLD);
	uint64_t fresh = to_user(f->st, 3, 5, "fresh");
	/* Outside the window: not replayed even before the purge ran. */
	assert_int_equal(sync_ids(f->st, 5, 0, ids, 8), 1);
	assert_int_equal(ids[0], fresh);
	size_t deleted = 0;
	assert_int_equal(notify_store_purge(f->st, NOW - 7 * 86400 * 1000LL, 1, &deleted), 0);
	assert_int_equal(deleted, 2); /* chunk of 1: two transactions, then a third empty */
	struct notify_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(notify_store_find_seq(f->st, 1, &rows, &n), NOTIFY_STORE_NOT_FOUND);
	assert_int_equal(notify_store_find_seq(f->st, 3, &rows, &n), NOTIFY_STORE_OK);
	notify_row_free_list(rows, n);
	/* Purging again finds nothing. */
	assert_int_equal(notify_store_purge(f->st, NOW - 7 * 86400 * 1000LL, 100, &deleted), 0);
	assert_int_equal(deleted, 0);
}

static void test_ids_never_reused(void **state)
{
	struct fixture *f = *state;
	uint64_t five = 5;
	uint64_t id1 = inject_at(f->st, 1, &five, 1, "x", OLD);
	uint64_t id2 = inject_at(f->st, 2, &five, 1, "y", OLD);
	assert_int_equal(notify_store_purge(f->st, NOW, 100, NULL), 0);
	uint64_t id3 = to_user(f->st, 3, 5, "z");
	assert_true(id3 > id2 && id2 > id1);
}

static void test_forget_stream_seqs(void **state)
{
	struct fixture *f = *state;
	uint64_t id = to_user(f->st, 1, 5, "from the old stream");
	assert_int_equal(notify_store_forget_stream_seqs(f->st), 0);
	struct notify_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(notify_store_find_seq(f->st, 1, &rows, &n), NOTIFY_STORE_NOT_FOUND);
	/* Sequence 1 of the new stream is a new injection, not a redelivery. */
	uint64_t id2 = to_user(f->st, 1, 5, "from the new stream");
	assert_true(id2 > id);
	uint64_t ids[4];
	assert_int_equal(sync_ids(f->st, 5, 0, ids, 4), 2);
}

static void test_reopen_and_meta(void **state)
{
	struct fixture *f = *state;
	int64_t v = 0;
	assert_int_equal(notify_store_meta_get(f->st, "stream_created_ns", &v),
	                 NOTIFY_STORE_NOT_FOUND);
	assert_int_equal(notify_store_meta_set(f->st, "stream_created_ns", 123), 0);
	assert_int_equal(notify_store_meta_set(f->st, "stream_created_ns", 456), 0);
	uint64_t id = to_user(f->st, 1, 5, "kept");
	assert_int_equal(notify_cursor_advance(f->st, 6, id), 0);
	/* A second handle on the same file (as sync and the cursor thread have) sees the
	 * commits; reopening does not migrate twice. */
	struct notify_store *other = NULL;
	assert_int_equal(notify_store_open(&other, f->db.path), 0);
	assert_int_equal(notify_store_meta_get(other, "stream_created_ns", &v), NOTIFY_STORE_OK);
	assert_int_equal(v, 456);
	struct notify_cursor c;
	assert_int_equal(notify_cursor_get(other, 6, &c), NOTIFY_STORE_OK);
	assert_int_equal(c.last_id, id);
	notify_store_destroy(other);
	notify_store_destroy(f->st);
	f->st = NULL;
	assert_int_equal(notify_store_open(&f->st, f->db.path), 0);
	uint64_t id2 = to_user(f->st, 2, 5, "after reopen");
	assert_true(id2 > id);
	notify_store_destroy(NULL);
}

static void test_bad_arguments(void **state)
{
	struct fixture *f = *state;
	struct notify_row *rows = NULL;
	size_t n = 1;
	int more = 1;
	assert_int_equal(notify_store_list(f->st, 0, 0, 0, 0, 10, &rows, &n, &more), -1);
	assert_int_equal(notify_store_list(f->st, 5, 0, 0, 0, 0, &rows, &n, &more), 0);
	assert_int_equal(n, 0);
	/* after_id beyond any id: nothing, and no wrap-around to negative. */
	to_user(f->st, 1, 5, "x");
	assert_int_equal(
	    notify_store_list(f->st, 5, UINT64_MAX, UINT64_MAX, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 0);
	struct notify_row r = {.user_id = 5, .title = "t", .message = "", .type = "info"};
	assert_int_equal(notify_store_insert(f->st, 0, &r), NOTIFY_STORE_ERR);
	assert_int_equal(notify_cursor_advance(f->st, 0, 1), -1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_one_row_per_target),   T(test_redelivery_is_stored_once),
	    T(test_never_connected_user), T(test_floor_zero_on_empty_store),
	    T(test_cursor_and_after_id),  T(test_paging),
	    T(test_retention_and_purge),  T(test_ids_never_reused),
	    T(test_forget_stream_seqs),   T(test_reopen_and_meta),
	    T(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
