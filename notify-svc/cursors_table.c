/*
 * cursors_table: one row per user who ever synced or got a receipt: the highest
 * notification id delivered to them, and the broadcast floor of the never-connected
 * rule (see notify_store.h).
 *
 * Design: both writes are single upsert statements, so they are atomic without an
 * explicit transaction and idempotent under retries: a cursor only ever moves up, and
 * never past the highest id issued (sqlite_sequence of the AUTOINCREMENT table).
 */
#include "notify_store_int.h"

int notify_store_prepare_cursors(struct notify_store *st)
{
	/* "WHERE true" lets SQLite's parser tell the upsert clause from a join. */
	if (notify_store_prepare(st, &st->cursor_get,
	                         "SELECT last_id, bcast_floor FROM cursors WHERE user_id = ?1") <
	        0 ||
	    notify_store_prepare(st, &st->cursor_create,
	                         "INSERT INTO cursors (user_id, last_id, bcast_floor)"
	                         " SELECT ?1, 0, IFNULL((SELECT MAX(id) FROM notifications"
	                         " WHERE user_id = 0), 0) WHERE true"
	                         " ON CONFLICT (user_id) DO NOTHING") < 0 ||
	    notify_store_prepare(st, &st->cursor_advance,
	                         "INSERT INTO cursors (user_id, last_id, bcast_floor)"
	                         " SELECT ?1, m, m FROM (SELECT MIN(?2, IFNULL((SELECT seq"
	                         " FROM sqlite_sequence WHERE name = 'notifications'), 0)) AS m)"
	                         " WHERE true ON CONFLICT (user_id) DO UPDATE"
	                         " SET last_id = MAX(last_id, excluded.last_id)") < 0)
		return -1;
	return 0;
}

void notify_store_finalize_cursors(struct notify_store *st)
{
	sqlite3_finalize(st->cursor_get);
	sqlite3_finalize(st->cursor_create);
	sqlite3_finalize(st->cursor_advance);
}

int notify_cursor_get(struct notify_store *st, uint64_t user_id, struct notify_cursor *out)
{
	if (user_id == 0 || user_id > (uint64_t)INT64_MAX)
		return NOTIFY_STORE_NOT_FOUND;
	sqlite3_stmt *s = st->cursor_get;
	int status = NOTIFY_STORE_ERR;
	if (sqlite3_bind_int64(s, 1, (sqlite3_int64)user_id) != SQLITE_OK) {
		notify_store_fail(st, "cursor_get bind");
	} else {
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			out->last_id = (uint64_t)sqlite3_column_int64(s, 0);
			out->bcast_floor = (uint64_t)sqlite3_column_int64(s, 1);
			status = NOTIFY_STORE_OK;
		} else if (rc == SQLITE_DONE) {
			status = NOTIFY_STORE_NOT_FOUND;
		} else {
			notify_store_fail(st, "cursor_get");
		}
	}
	notify_store_reset(s);
	return status;
}

int notify_cursor_create(struct notify_store *st, uint64_t user_id, struct notify_cursor *out)
{
	if (user_id == 0 || user_id > (uint64_t)INT64_MAX)
		return -1;
	sqlite3_stmt *s = st->cursor_create;
	if (sqlite3_bind_int64(s, 1, (sqlite3_int64)user_id) != SQLITE_OK) {
		notify_store_fail(st, "cursor_create bind");
		notify_store_reset(s);
		return -1;
	}
	if (notify_store_step_done(st, s, "cursor_create") < 0)
		return -1;
	return notify_cursor_get(st, user_id, out) == NOTIFY_STORE_OK ? 0 : -1;
}

int notify_cursor_advance(struct notify_store *st, uint64_t user_id, uint64_t id)
{
	if (user_id == 0 || user_id > (uint64_t)INT64_MAX)
		return -1;
	if (id > (uint64_t)INT64_MAX)
		id = (uint64_t)INT64_MAX; /* clamped to the highest issued id anyway */
	sqlite3_stmt *s = st->cursor_advance;
	if (sqlite3_bind_int64(s, 1, (sqlite3_int64)user_id) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, (sqlite3_int64)id) != SQLITE_OK) {
		notify_store_fail(st, "cursor_advance bind");
		notify_store_reset(s);
		return -1;
	}
	return notify_store_step_done(st, s, "cursor_advance");
}
