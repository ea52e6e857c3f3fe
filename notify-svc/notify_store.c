/*
 * notify_store: the connection, the schema and the backlog rule (see notify_store.h).
 *
 * Design: the schema is a list of migrations applied under PRAGMA user_version, each
 * in its own transaction, so reopening a file is idempotent and an older binary
 * refuses a newer file instead of misreading it. WAL with synchronous=FULL: a COMMIT
 * is on disk when it returns, which is what lets the consumer ack JetStream right
 * after it. Every statement is prepared once and used bind -> step -> check -> reset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify_store_int.h"
#include "sb_log.h"

#define BUSY_TIMEOUT_MS 5000

/* migrations[i] takes the schema from user_version i to i + 1. Append only. */
static const char *const migrations[] = {
    /* AUTOINCREMENT: an id is never reused, even when the purge deleted the newest
     * rows, so a cursor can never hide a later notification. */
    "CREATE TABLE notifications ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " stream_seq INTEGER,"
    " user_id INTEGER NOT NULL,"
    " title TEXT NOT NULL,"
    " message TEXT NOT NULL,"
    " type TEXT NOT NULL,"
    " ts_ms INTEGER NOT NULL,"
    " UNIQUE (stream_seq, user_id));"
    "CREATE INDEX notifications_user ON notifications(user_id, id);"
    "CREATE INDEX notifications_ts ON notifications(ts_ms);"
    "CREATE TABLE cursors ("
    " user_id INTEGER PRIMARY KEY,"
    " last_id INTEGER NOT NULL,"
    " bcast_floor INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

int notify_store_fail(struct notify_store *st, const char *op)
{
	SB_ERROR("store_error", "op=\"%s\" code=%d error=\"%s\"", op,
	         sqlite3_extended_errcode(st->db), sqlite3_errmsg(st->db));
	return -1;
}

int notify_store_prepare(struct notify_store *st, sqlite3_stmt **stmt, const char *sql)
{
	if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL) != SQLITE_OK)
		return notify_store_fail(st, sql);
	return 0;
}

void notify_store_reset(sqlite3_stmt *stmt)
{
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
}

int notify_store_step_done(struct notify_store *st, sqlite3_stmt *stmt, const char *op)
{
	int rc = sqlite3_step(stmt);
	if (rc != SQLITE_DONE)
		notify_store_fail(st, op);
	notify_store_reset(stmt);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int exec(struct notify_store *st, const char *sql)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return notify_store_fail(st, sql);
	return 0;
}

static int user_version(struct notify_store *st, int64_t *out)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &stmt, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		*out = sqlite3_column_int64(stmt, 0);
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
		notify_store_fail(st, "PRAGMA user_version");
	sqlite3_finalize(stmt);
	return rc == SQLITE_OK ? 0 : -1;
}

static int migrate(struct notify_store *st)
{
	int64_t version = 0;
	if (exec(st, "BEGIN IMMEDIATE") < 0)
		return -1;
	if (user_version(st, &version) < 0)
		goto rollback;
	if (version > SCHEMA_VERSION) {
		SB_ERROR("store_schema_newer", "version=%lld known=%d", (long long)version,
		         SCHEMA_VERSION);
		goto rollback;
	}
	for (int v = (int)version; v < SCHEMA_VERSION; v++) {
		char pragma[64];
		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
		if (exec(st, migrations[v]) < 0 || exec(st, pragma) < 0)
			goto rollback;
		SB_INFO("store_migrated", "version=%d", v + 1);
	}
	if (exec(st, "COMMIT") < 0)
		goto rollback;
	return 0;
rollback:
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int set_wal(struct notify_store *st)
{
	sqlite3_stmt *stmt = NULL;
	int ok = 0;
	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step(stmt) == SQLITE_ROW) {
		const unsigned char *mode = sqlite3_column_text(stmt, 0);
		ok = mode && strcmp((const char *)mode, "wal") == 0;
	}
	sqlite3_finalize(stmt);
	return ok ? 0 : notify_store_fail(st, "PRAGMA journal_mode = WAL");
}

int notify_store_open(struct notify_store **out, const char *path)
{
	struct notify_store *st = calloc(1, sizeof *st);
	if (!st)
		return -1;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
		SB_ERROR("store_open", "path=%s error=\"%s\"", path,
		         st->db ? sqlite3_errmsg(st->db) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(st->db, 1);
	/* FULL: the WAL is fsynced at every COMMIT, so an ack to JetStream means on disk. */
	if (sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS) != SQLITE_OK || set_wal(st) < 0 ||
	    exec(st, "PRAGMA synchronous = FULL") < 0 || migrate(st) < 0)
		goto fail;
	if (notify_store_prepare(st, &st->begin, "BEGIN IMMEDIATE") < 0 ||
	    notify_store_prepare(st, &st->commit, "COMMIT") < 0 ||
	    notify_store_prepare(st, &st->rollback, "ROLLBACK") < 0 ||
	    notify_store_prepare(st, &st->meta_get, "SELECT value FROM meta WHERE key = ?1") < 0 ||
	    notify_store_prepare(st, &st->meta_set,
	                         "INSERT INTO meta (key, value) VALUES (?1, ?2)"
	                         " ON CONFLICT (key) DO UPDATE SET value = excluded.value") < 0 ||
	    notify_store_prepare_notifications(st) < 0 || notify_store_prepare_cursors(st) < 0)
		goto fail;
	*out = st;
	return 0;
fail:
	SB_ERROR("store_open_failed", "path=%s", path);
	notify_store_destroy(st);
	return -1;
}

void notify_store_destroy(struct notify_store *st)
{
	if (!st)
		return;
	sqlite3_finalize(st->begin);
	sqlite3_finalize(st->commit);
	sqlite3_finalize(st->rollback);
	sqlite3_finalize(st->meta_get);
	sqlite3_finalize(st->meta_set);
	notify_store_finalize_notifications(st);
	notify_store_finalize_cursors(st);
	sqlite3_close(st->db);
	free(st);
}

int notify_store_relax_sync(struct notify_store *st)
{
	return exec(st, "PRAGMA synchronous = NORMAL");
}

int notify_store_begin(struct notify_store *st)
{
	return notify_store_step_done(st, st->begin, "begin");
}

int notify_store_commit(struct notify_store *st)
{
	return notify_store_step_done(st, st->commit, "commit");
}

void notify_store_rollback(struct notify_store *st)
{
	/* After some errors SQLite has already rolled back on its own. */
	if (!sqlite3_get_autocommit(st->db))
		notify_store_step_done(st, st->rollback, "rollback");
}

int notify_store_meta_get(struct notify_store *st, const char *key, int64_t *value)
{
	sqlite3_stmt *s = st->meta_get;
	int status = NOTIFY_STORE_ERR;
	if (sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC) != SQLITE_OK) {
		notify_store_fail(st, "meta_get bind");
	} else {
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*value = sqlite3_column_int64(s, 0);
			status = NOTIFY_STORE_OK;
		} else if (rc == SQLITE_DONE) {
			status = NOTIFY_STORE_NOT_FOUND;
		} else {
			notify_store_fail(st, "meta_get");
		}
	}
	notify_store_reset(s);
	return status;
}

int notify_store_meta_set(struct notify_store *st, const char *key, int64_t value)
{
	sqlite3_stmt *s = st->meta_set;
	if (sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, value) != SQLITE_OK) {
		notify_store_fail(st, "meta_set bind");
		notify_store_reset(s);
		return -1;
	}
	return notify_store_step_done(st, s, "meta_set");
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

int notify_store_sync(struct notify_store *st, uint64_t user_id, uint64_t after_id, int resync,
                      int64_t min_ts_ms, uint32_t limit, struct notify_row **out, size_t *n,
                      int *more)
{
	*out = NULL;
	*n = 0;
	*more = 0;
	struct notify_cursor cur;
	int rc = notify_cursor_get(st, user_id, &cur);
	if (rc == NOTIFY_STORE_NOT_FOUND)
		rc = notify_cursor_create(st, user_id, &cur) == 0 ? NOTIFY_STORE_OK : rc;
	if (rc != NOTIFY_STORE_OK)
		return -1;
	uint64_t addressed_after = resync ? after_id : max_u64(after_id, cur.last_id);
	uint64_t bcast_after = max_u64(addressed_after, cur.bcast_floor);
	return notify_store_list(st, user_id, addressed_after, bcast_after, min_ts_ms, limit, out,
	                         n, more);
}
