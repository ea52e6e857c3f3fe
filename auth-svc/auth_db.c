/*
 * auth_db: open the auth SQLite file, set pragmas, run versioned migrations.
 *
 * Design: migrations are an append-only array; entry i brings the schema from
 * user_version i to i + 1. Never edit a shipped entry, add a new one.
 */
#include "auth_db.h"

#include <stdio.h>
#include <stdlib.h>

#include "sb_log.h"

/* Token rows are never deleted by the service: revoked = 0 live, 1 revoked by an
 * operator, 2 its user was removed (so re-adding the same user id does not revive
 * old tokens). The tokens table is keyed by the SHA-256 of the token; the token itself
 * is never stored. */
static const char *const migrations[] = {
    /* 1: users and tokens */
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL"
    ");"
    "CREATE TABLE tokens ("
    "  hash BLOB PRIMARY KEY,"
    "  user_id INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL DEFAULT 0," /* 0 = never */
    "  revoked INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE INDEX tokens_by_user ON tokens(user_id);",
};

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

int auth_db_schema_version(void)
{
	return N_MIGRATIONS;
}

static int exec_sql(sqlite3 *db, const char *sql, const char *what)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		SB_ERROR("db_error", "op=%s error=\"%s\"", what, err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

static int read_user_version(sqlite3 *db, int *version)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*version = sqlite3_column_int(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK) {
		SB_ERROR("db_error", "op=user_version error=\"%s\"", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

static int migrate(sqlite3 *db)
{
	int version = 0;
	if (read_user_version(db, &version) < 0)
		return -1;
	if (version > N_MIGRATIONS) {
		SB_ERROR("db_too_new", "schema=%d supported=%d", version, N_MIGRATIONS);
		return -1;
	}
	for (int v = version; v < N_MIGRATIONS; v++) {
		char bump[64];
		snprintf(bump, sizeof bump, "PRAGMA user_version = %d;", v + 1);
		int rc = exec_sql(db, "BEGIN IMMEDIATE", "migrate_begin");
		if (rc == 0)
			rc = exec_sql(db, migrations[v], "migrate");
		if (rc == 0)
			rc = exec_sql(db, bump, "migrate_version");
		if (rc == 0)
			rc = exec_sql(db, "COMMIT", "migrate_commit");
		if (rc < 0) {
			if (!sqlite3_get_autocommit(db))
				exec_sql(db, "ROLLBACK", "migrate_rollback");
			return -1;
		}
		SB_INFO("db_migrated", "schema=%d", v + 1);
	}
	return 0;
}

int auth_db_prepare(struct auth_db *db, const char *sql, sqlite3_stmt **out, const char *what)
{
	int rc = sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
	if (rc != SQLITE_OK) {
		SB_ERROR("db_error", "op=prepare stmt=%s error=\"%s\"", what,
		         sqlite3_errmsg(db->db));
		return -1;
	}
	return 0;
}

int auth_db_exec_stmt(struct auth_db *db, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		SB_ERROR("db_error", "op=%s error=\"%s\"", what, sqlite3_errmsg(db->db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int auth_db_bind_failed(sqlite3_stmt *st, const char *what, int rc)
{
	SB_ERROR("db_error", "op=%s_bind error=\"%s\"", what, sqlite3_errstr(rc));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return -1;
}

int auth_db_open(struct auth_db **out, const char *path)
{
	struct auth_db *db = calloc(1, sizeof *db);
	if (!db)
		return -1;
	int rc = sqlite3_open_v2(
	    path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		SB_ERROR("db_open", "path=%s error=\"%s\"", path,
		         db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc));
		auth_db_close(db);
		return -1;
	}
	sqlite3_extended_result_codes(db->db, 1);
	/* busy_timeout first: journal_mode=WAL itself needs the lock when another process
	 * (a backup, an operator's sqlite3 shell) holds it. */
	int r = sqlite3_busy_timeout(db->db, 5000) == SQLITE_OK ? 0 : -1;
	if (r == 0)
		r = exec_sql(db->db, "PRAGMA journal_mode = WAL", "journal_mode");
	if (r == 0)
		r = exec_sql(db->db, "PRAGMA synchronous = NORMAL", "synchronous");
	if (r == 0)
		r = migrate(db->db);
	if (r == 0)
		r = auth_db_prepare(db, "BEGIN IMMEDIATE", &db->begin, "begin");
	if (r == 0)
		r = auth_db_prepare(db, "COMMIT", &db->commit, "commit");
	if (r == 0)
		r = auth_db_prepare(db, "ROLLBACK", &db->rollback, "rollback");
	if (r < 0) {
		auth_db_close(db);
		return -1;
	}
	*out = db;
	return 0;
}

void auth_db_close(struct auth_db *db)
{
	if (!db)
		return;
	sqlite3_finalize(db->begin);
	sqlite3_finalize(db->commit);
	sqlite3_finalize(db->rollback);
	if (db->db && sqlite3_close(db->db) != SQLITE_OK)
		SB_ERROR("db_close", "error=\"%s\"", sqlite3_errmsg(db->db));
	free(db);
}

int auth_db_begin(struct auth_db *db)
{
	return auth_db_exec_stmt(db, db->begin, "begin");
}

int auth_db_commit(struct auth_db *db)
{
	return auth_db_exec_stmt(db, db->commit, "commit");
}

void auth_db_rollback(struct auth_db *db)
{
	if (sqlite3_get_autocommit(db->db))
		return; /* nothing open (BEGIN failed, or SQLite already rolled back) */
	sqlite3_step(db->rollback);
	sqlite3_reset(db->rollback);
}
