/*
 * auth_db: the auth-svc SQLite file: opening it, its pragmas, its schema history, and
 * the transaction statements the store wraps around multi-statement changes.
 *
 * Design: the schema is a list of migrations numbered by PRAGMA user_version, applied in
 * order, each in its own transaction, so an old file is brought forward on open and a
 * file written by a newer binary is refused rather than misread. WAL with
 * synchronous=NORMAL: a crash of the process loses nothing committed; a power cut may
 * lose the last commits, which for operator actions is an acceptable trade for not
 * paying an fsync per `sbctl user add` line.
 *
 * Not thread-safe by itself: the caller (auth_store) serialises every use.
 */
#ifndef AUTH_DB_H
#define AUTH_DB_H

#include <sqlite3.h>

struct auth_db {
	sqlite3 *db;
	sqlite3_stmt *begin; /* BEGIN IMMEDIATE: take the write lock up front, no upgrade race */
	sqlite3_stmt *commit;
	sqlite3_stmt *rollback;
};

/* The schema version this binary writes (the number of migrations). */
int auth_db_schema_version(void);

/* Open (creating if missing) the database file at path, set WAL + busy timeout and
 * apply pending migrations. Returns 0 and sets *out, or -1 after logging why. The
 * directory must exist. */
int auth_db_open(struct auth_db **out, const char *path);

/* Finalize statements and close. NULL is a no-op. */
void auth_db_close(struct auth_db *db);

/* Transaction control. Each returns 0 or -1 (logged). rollback never fails loudly: it
 * is called on paths that already failed. */
int auth_db_begin(struct auth_db *db);
int auth_db_commit(struct auth_db *db);
void auth_db_rollback(struct auth_db *db);

/* Prepare sql on db (persistent statement). Returns 0 or -1 (logged with `what`). */
int auth_db_prepare(struct auth_db *db, const char *sql, sqlite3_stmt **out, const char *what);

/* Run one prepared statement that returns no rows: step, check SQLITE_DONE, reset and
 * clear bindings whatever the outcome. Returns 0 or -1 (logged with `what`). */
int auth_db_exec_stmt(struct auth_db *db, sqlite3_stmt *st, const char *what);

/* A bind failed: log it, reset and clear the statement for the next caller, return -1. */
int auth_db_bind_failed(sqlite3_stmt *st, const char *what, int rc);

#endif
