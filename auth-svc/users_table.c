/*
 * users_table: SQL for the users table; one statement struct, prepared once.
 */
#include "users_table.h"

#include <stdlib.h>
#include <string.h>

#include "sb_log.h"

int users_table_create(struct users_table **out, struct auth_db *db)
{
	struct users_table *t = calloc(1, sizeof *t);
	if (!t)
		return -1;
	t->db = db;
	int r = auth_db_prepare(db,
	                        "INSERT INTO users(id, name, created_ms) VALUES(?1, ?2, ?3) "
	                        "ON CONFLICT(id) DO UPDATE SET name = excluded.name",
	                        &t->upsert, "users_upsert");
	if (r == 0)
		r = auth_db_prepare(db, "SELECT name FROM users WHERE id = ?1", &t->get,
		                    "users_get");
	if (r == 0)
		r = auth_db_prepare(db, "DELETE FROM users WHERE id = ?1", &t->del, "users_delete");
	if (r < 0) {
		users_table_destroy(t);
		return -1;
	}
	*out = t;
	return 0;
}

void users_table_destroy(struct users_table *t)
{
	if (!t)
		return;
	sqlite3_finalize(t->upsert);
	sqlite3_finalize(t->get);
	sqlite3_finalize(t->del);
	free(t);
}

int users_table_upsert(struct users_table *t, uint64_t id, const char *name, int64_t now_ms)
{
	sqlite3_stmt *st = t->upsert;
	int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, now_ms);
	if (rc != SQLITE_OK)
		return auth_db_bind_failed(st, "users_upsert", rc);
	return auth_db_exec_stmt(t->db, st, "users_upsert");
}

int users_table_get(struct users_table *t, uint64_t id, char *name, size_t size, int *found)
{
	sqlite3_stmt *st = t->get;
	*found = 0;
	int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	if (rc != SQLITE_OK)
		return auth_db_bind_failed(st, "users_get", rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *txt = sqlite3_column_text(st, 0);
		size_t n = txt ? (size_t)sqlite3_column_bytes(st, 0) : 0;
		n = n < size - 1 ? n : size - 1;
		if (n)
			memcpy(name, txt, n);
		name[n] = 0;
		*found = 1;
		rc = SQLITE_DONE;
	}
	if (rc != SQLITE_DONE)
		SB_ERROR("db_error", "op=users_get error=\"%s\"", sqlite3_errmsg(t->db->db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int users_table_delete(struct users_table *t, uint64_t id, int *deleted)
{
	sqlite3_stmt *st = t->del;
	*deleted = 0;
	int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	if (rc != SQLITE_OK)
		return auth_db_bind_failed(st, "users_delete", rc);
	if (auth_db_exec_stmt(t->db, st, "users_delete") < 0)
		return -1;
	*deleted = sqlite3_changes(t->db->db) > 0;
	return 0;
}
