/*
 * users_table: the prepared statements of the `users` table (id, display name).
 *
 * Design: one struct of statements prepared once at open; every call is
 * bind -> step -> check -> reset, whatever the outcome. No locking and no policy here:
 * auth_store holds the lock, opens transactions and validates input.
 */
#ifndef USERS_TABLE_H
#define USERS_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "auth_db.h"

/* Longest display name in bytes (UTF-8), enforced by auth_store. */
#define USERS_NAME_MAX 256

struct users_table {
	struct auth_db *db; /* borrowed */
	sqlite3_stmt *upsert;
	sqlite3_stmt *get;
	sqlite3_stmt *del;
};

/* Prepare the statements against db (which must outlive the table). 0 / -1. */
int users_table_create(struct users_table **out, struct auth_db *db);
void users_table_destroy(struct users_table *t);

/* Insert the user or, when the id exists, replace its name (created_ms is kept).
 * 0 / -1. */
int users_table_upsert(struct users_table *t, uint64_t id, const char *name, int64_t now_ms);

/* Copy the user's name into name (truncated to size - 1 bytes) and set *found.
 * 0 / -1 (storage error). */
int users_table_get(struct users_table *t, uint64_t id, char *name, size_t size, int *found);

/* Delete the user; *deleted = 1 when a row went away. 0 / -1. */
int users_table_delete(struct users_table *t, uint64_t id, int *deleted);

#endif
