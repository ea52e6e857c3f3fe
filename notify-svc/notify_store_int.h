/*
 * notify_store_int: what the files of the store share and nothing else sees: the
 * handle with its prepared statements, and the bind -> step -> check -> reset helpers.
 *
 * Design: each table file prepares and finalizes its own statements (the SQL lives
 * next to the code that uses it); notify_store.c owns the connection, the schema and
 * the transactions.
 */
#ifndef NOTIFY_STORE_INT_H
#define NOTIFY_STORE_INT_H

#include <sqlite3.h>

#include "notify_store.h"

struct notify_store {
	sqlite3 *db;
	sqlite3_stmt *begin;
	sqlite3_stmt *commit;
	sqlite3_stmt *rollback;
	sqlite3_stmt *meta_get;
	sqlite3_stmt *meta_set;
	/* notifications_table.c */
	sqlite3_stmt *insert;
	sqlite3_stmt *find_seq;
	sqlite3_stmt *list;
	sqlite3_stmt *purge;
	sqlite3_stmt *forget_seqs;
	/* cursors_table.c */
	sqlite3_stmt *cursor_get;
	sqlite3_stmt *cursor_create;
	sqlite3_stmt *cursor_advance;
};

/* Log the connection's last error for op; returns -1. */
int notify_store_fail(struct notify_store *st, const char *op);

/* Prepare sql once for the life of the handle. 0 or -1 (logged). */
int notify_store_prepare(struct notify_store *st, sqlite3_stmt **stmt, const char *sql);

/* Step a statement that returns no rows, then reset it and clear its bindings,
 * whatever happened. 0 or -1 (logged). */
int notify_store_step_done(struct notify_store *st, sqlite3_stmt *stmt, const char *op);

/* Reset and clear a statement (after a failed bind or a read loop). */
void notify_store_reset(sqlite3_stmt *stmt);

/* Per-table statement set-up and tear-down (called by open / destroy). */
int notify_store_prepare_notifications(struct notify_store *st);
void notify_store_finalize_notifications(struct notify_store *st);
int notify_store_prepare_cursors(struct notify_store *st);
void notify_store_finalize_cursors(struct notify_store *st);

#endif
