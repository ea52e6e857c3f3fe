/*
 * notifications_table: the notifications rows of notify.db (see notify_store.h).
 *
 * Design: the backlog query is a UNION ALL of two index range scans on (user_id, id),
 * one for the user's own rows and one for broadcasts, merged in id order; SQLite
 * merges the two ordered arms and stops at the LIMIT, so a page costs O(page), not
 * O(history). The purge deletes through the ts_ms index in bounded chunks, each its
 * own transaction, so it never holds the writer lock for long.
 */
#include <stdlib.h>
#include <string.h>

#include "notify_store_int.h"
#include "sb_log.h"

#define ROW_COLUMNS "id, user_id, title, message, type, ts_ms"

int notify_store_prepare_notifications(struct notify_store *st)
{
	if (notify_store_prepare(st, &st->insert,
	                         "INSERT INTO notifications"
	                         " (stream_seq, user_id, title, message, type, ts_ms)"
	                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
	                         " ON CONFLICT (stream_seq, user_id) DO NOTHING") < 0 ||
	    notify_store_prepare(st, &st->find_seq,
	                         "SELECT " ROW_COLUMNS " FROM notifications"
	                         " WHERE stream_seq = ?1 ORDER BY id") < 0 ||
	    notify_store_prepare(st, &st->list,
	                         "SELECT " ROW_COLUMNS " FROM notifications"
	                         " WHERE user_id = ?1 AND id > ?2 AND ts_ms >= ?4"
	                         " UNION ALL "
	                         "SELECT " ROW_COLUMNS " FROM notifications"
	                         " WHERE user_id = 0 AND id > ?3 AND ts_ms >= ?4"
	                         " ORDER BY id LIMIT ?5") < 0 ||
	    notify_store_prepare(st, &st->purge,
	                         "DELETE FROM notifications WHERE id IN"
	                         " (SELECT id FROM notifications WHERE ts_ms < ?1"
	                         " ORDER BY ts_ms LIMIT ?2)") < 0 ||
	    notify_store_prepare(st, &st->forget_seqs,
	                         "UPDATE notifications SET stream_seq = NULL"
	                         " WHERE stream_seq IS NOT NULL") < 0)
		return -1;
	return 0;
}

void notify_store_finalize_notifications(struct notify_store *st)
{
	sqlite3_finalize(st->insert);
	sqlite3_finalize(st->find_seq);
	sqlite3_finalize(st->list);
	sqlite3_finalize(st->purge);
	sqlite3_finalize(st->forget_seqs);
}

int notify_store_insert(struct notify_store *st, uint64_t stream_seq, struct notify_row *row)
{
	sqlite3_stmt *s = st->insert;
	if (stream_seq == 0 || stream_seq > (uint64_t)INT64_MAX ||
	    row->user_id > (uint64_t)INT64_MAX)
		return NOTIFY_STORE_ERR;
	int rc = sqlite3_bind_int64(s, 1, (sqlite3_int64)stream_seq);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 2, (sqlite3_int64)row->user_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 3, row->title ? row->title : "", -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 4, row->message ? row->message : "", -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 5, row->type ? row->type : "", -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 6, row->ts_ms);
	if (rc != SQLITE_OK) {
		notify_store_fail(st, "insert bind");
		notify_store_reset(s);
		return NOTIFY_STORE_ERR;
	}
	if (notify_store_step_done(st, s, "insert") < 0)
		return NOTIFY_STORE_ERR;
	if (sqlite3_changes(st->db) == 0)
		return NOTIFY_STORE_DUP;
	row->id = (uint64_t)sqlite3_last_insert_rowid(st->db);
	return NOTIFY_STORE_OK;
}

/* Copy the current ROW_COLUMNS row into an owning notify_row (one allocation). */
static int read_row(sqlite3_stmt *s, struct notify_row *out)
{
	const char *text[3];
	size_t len[3], total = 0;
	for (int i = 0; i < 3; i++) {
		text[i] = (const char *)sqlite3_column_text(s, 2 + i);
		len[i] = (size_t)sqlite3_column_bytes(s, 2 + i);
		if (!text[i])
			return -1; /* out of memory inside SQLite (columns are NOT NULL) */
		total += len[i] + 1;
	}
	char *mem = malloc(total);
	if (!mem)
		return -1;
	memset(out, 0, sizeof *out);
	out->mem = mem;
	out->id = (uint64_t)sqlite3_column_int64(s, 0);
	out->user_id = (uint64_t)sqlite3_column_int64(s, 1);
	out->ts_ms = sqlite3_column_int64(s, 5);
	const char **dst[3] = {&out->title, &out->message, &out->type};
	for (int i = 0; i < 3; i++) {
		memcpy(mem, text[i], len[i]);
		mem[len[i]] = 0;
		*dst[i] = mem;
		mem += len[i] + 1;
	}
	return 0;
}

/* Step s and collect up to limit rows (+1 to learn whether more follow). Resets s. */
static int collect(struct notify_store *st, sqlite3_stmt *s, const char *op, size_t limit,
                   struct notify_row **out, size_t *n, int *more)
{
	struct notify_row *rows = NULL;
	size_t count = 0, cap = 0;
	int rc, status = -1;
	*more = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (count == limit) {
			*more = 1;
			break;
		}
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			if (ncap > limit)
				ncap = limit;
			struct notify_row *nrows = realloc(rows, ncap * sizeof *rows);
			if (!nrows)
				goto nomem;
			rows = nrows;
			cap = ncap;
		}
		if (read_row(s, &rows[count]) < 0)
			goto nomem;
		count++;
	}
	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		status = 0;
	else
		notify_store_fail(st, op);
	goto done;
nomem:
	SB_ERROR("store_error", "op=%s error=\"out of memory\"", op);
done:
	notify_store_reset(s);
	if (status < 0 || count == 0) {
		notify_row_free_list(rows, count);
		rows = NULL;
		count = 0;
		if (status < 0)
			*more = 0;
	}
	*out = rows;
	*n = count;
	return status;
}

int notify_store_find_seq(struct notify_store *st, uint64_t stream_seq, struct notify_row **out,
                          size_t *n)
{
	*out = NULL;
	*n = 0;
	if (stream_seq == 0 || stream_seq > (uint64_t)INT64_MAX)
		return NOTIFY_STORE_NOT_FOUND;
	sqlite3_stmt *s = st->find_seq;
	if (sqlite3_bind_int64(s, 1, (sqlite3_int64)stream_seq) != SQLITE_OK) {
		notify_store_fail(st, "find_seq bind");
		notify_store_reset(s);
		return NOTIFY_STORE_ERR;
	}
	int more;
	/* At most one row per target, and targets are bounded by the injection limits. */
	if (collect(st, s, "find_seq", SIZE_MAX / sizeof **out, out, n, &more) < 0)
		return NOTIFY_STORE_ERR;
	return *n ? NOTIFY_STORE_OK : NOTIFY_STORE_NOT_FOUND;
}

int notify_store_list(struct notify_store *st, uint64_t user_id, uint64_t after_id,
                      uint64_t bcast_after, int64_t min_ts_ms, uint32_t limit,
                      struct notify_row **out, size_t *n, int *more)
{
	*out = NULL;
	*n = 0;
	*more = 0;
	if (limit == 0)
		return 0;
	/* Ids are positive int64: nothing lies beyond INT64_MAX. */
	if (after_id > (uint64_t)INT64_MAX)
		after_id = (uint64_t)INT64_MAX;
	if (bcast_after > (uint64_t)INT64_MAX)
		bcast_after = (uint64_t)INT64_MAX;
	if (user_id == 0 || user_id > (uint64_t)INT64_MAX)
		return -1;
	sqlite3_stmt *s = st->list;
	if (sqlite3_bind_int64(s, 1, (sqlite3_int64)user_id) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, (sqlite3_int64)after_id) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 3, (sqlite3_int64)bcast_after) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 4, min_ts_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 5, (sqlite3_int64)limit + 1) != SQLITE_OK) {
		notify_store_fail(st, "list bind");
		notify_store_reset(s);
		return -1;
	}
	return collect(st, s, "list", limit, out, n, more);
}

int notify_store_purge(struct notify_store *st, int64_t before_ms, size_t chunk, size_t *deleted)
{
	size_t total = 0;
	if (chunk == 0)
		chunk = 1;
	for (;;) {
		sqlite3_stmt *s = st->purge;
		if (notify_store_begin(st) < 0)
			return -1;
		if (sqlite3_bind_int64(s, 1, before_ms) != SQLITE_OK ||
		    sqlite3_bind_int64(s, 2, (sqlite3_int64)chunk) != SQLITE_OK) {
			notify_store_fail(st, "purge bind");
			notify_store_reset(s);
			notify_store_rollback(st);
			return -1;
		}
		if (notify_store_step_done(st, s, "purge") < 0) {
			notify_store_rollback(st);
			return -1;
		}
		size_t n = (size_t)sqlite3_changes(st->db);
		if (notify_store_commit(st) < 0) {
			notify_store_rollback(st);
			return -1;
		}
		total += n;
		if (deleted)
			*deleted = total;
		if (n < chunk)
			return 0;
	}
}

int notify_store_forget_stream_seqs(struct notify_store *st)
{
	return notify_store_step_done(st, st->forget_seqs, "forget_stream_seqs");
}

void notify_row_free_list(struct notify_row *rows, size_t n)
{
	if (!rows)
		return;
	for (size_t i = 0; i < n; i++)
		free(rows[i].mem);
	free(rows);
}
