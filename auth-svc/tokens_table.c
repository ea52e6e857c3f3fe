/*
 * tokens_table: SQL for the tokens table; one statement struct, prepared once.
 */
#include "tokens_table.h"

#include <stdlib.h>
#include <string.h>

#include "sb_log.h"

int tokens_table_create(struct tokens_table **out, struct auth_db *db)
{
	struct tokens_table *t = calloc(1, sizeof *t);
	if (!t)
		return -1;
	t->db = db;
	int r =
	    auth_db_prepare(db,
	                    "INSERT INTO tokens(hash, user_id, created_ms, expires_ms, revoked) "
	                    "VALUES(?1, ?2, ?3, ?4, 0)",
	                    &t->insert, "tokens_insert");
	if (r == 0)
		r = auth_db_prepare(db,
		                    "SELECT t.user_id, t.created_ms, t.expires_ms, t.revoked, "
		                    "       u.id IS NOT NULL, u.name "
		                    "FROM tokens t LEFT JOIN users u ON u.id = t.user_id "
		                    "WHERE t.hash = ?1",
		                    &t->get, "tokens_get");
	if (r == 0)
		r = auth_db_prepare(
		    db, "UPDATE tokens SET revoked = ?2 WHERE hash = ?1 AND revoked = 0",
		    &t->set_state, "tokens_set_state");
	if (r == 0)
		r = auth_db_prepare(
		    db, "UPDATE tokens SET revoked = ?2 WHERE user_id = ?1 AND revoked = 0",
		    &t->set_state_of_user, "tokens_set_state_of_user");
	if (r < 0) {
		tokens_table_destroy(t);
		return -1;
	}
	*out = t;
	return 0;
}

void tokens_table_destroy(struct tokens_table *t)
{
	if (!t)
		return;
	sqlite3_finalize(t->insert);
	sqlite3_finalize(t->get);
	sqlite3_finalize(t->set_state);
	sqlite3_finalize(t->set_state_of_user);
	free(t);
}

int tokens_table_insert(struct tokens_table *t, const uint8_t hash[SB_TOKEN_HASH_LEN],
                        uint64_t user_id, int64_t now_ms, int64_t expires_ms)
{
	sqlite3_stmt *st = t->insert;
	int rc = sqlite3_bind_blob(st, 1, hash, SB_TOKEN_HASH_LEN, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)user_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, now_ms);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 4, expires_ms);
	if (rc != SQLITE_OK)
		return auth_db_bind_failed(st, "tokens_insert", rc);
	return auth_db_exec_stmt(t->db, st, "tokens_insert");
}

int tokens_table_get(struct tokens_table *t, const uint8_t hash[SB_TOKEN_HASH_LEN],
                     struct token_row *row, int *found)
{
	sqlite3_stmt *st = t->get;
	*found = 0;
	int rc = sqlite3_bind_blob(st, 1, hash, SB_TOKEN_HASH_LEN, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return auth_db_bind_failed(st, "tokens_get", rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		memset(row, 0, sizeof *row);
		row->user_id = (uint64_t)sqlite3_column_int64(st, 0);
		row->created_ms = sqlite3_column_int64(st, 1);
		row->expires_ms = sqlite3_column_int64(st, 2);
		row->state = (enum token_state)sqlite3_column_int(st, 3);
		row->user_exists = sqlite3_column_int(st, 4);
		const unsigned char *name = sqlite3_column_text(st, 5);
		if (name) {
			size_t n = (size_t)sqlite3_column_bytes(st, 5);
			n = n < sizeof row->name - 1 ? n : sizeof row->name - 1;
			memcpy(row->name, name, n);
			row->name[n] = 0;
		}
		*found = 1;
		rc = SQLITE_DONE;
	}
	if (rc != SQLITE_DONE)
		SB_ERROR("db_error", "op=tokens_get error=\"%s\"", sqlite3_errmsg(t->db->db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int tokens_table_set_state(struct tokens_table *t, const uint8_t hash[SB_TOKEN_HASH_LEN],
                           enum token_state state, uint64_t *changed)
{
	sqlite3_stmt *st = t->set_state;
	*changed = 0;
	int rc = sqlite3_bind_blob(st, 1, hash, SB_TOKEN_HASH_LEN, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 2, (int)state);
	if (rc != SQLITE_OK)
		return auth_db_bind_failed(st, "tokens_set_state", rc);
	if (auth_db_exec_stmt(t->db, st, "tokens_set_state") < 0)
		return -1;
	*changed = (uint64_t)sqlite3_changes(t->db->db);
	return 0;
}

int tokens_table_set_state_of_user(struct tokens_table *t, uint64_t user_id, enum token_state state,
                                   uint64_t *changed)
{
	sqlite3_stmt *st = t->set_state_of_user;
	*changed = 0;
	int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 2, (int)state);
	if (rc != SQLITE_OK)
		return auth_db_bind_failed(st, "tokens_set_state_of_user", rc);
	if (auth_db_exec_stmt(t->db, st, "tokens_set_state_of_user") < 0)
		return -1;
	*changed = (uint64_t)sqlite3_changes(t->db->db);
	return 0;
}
