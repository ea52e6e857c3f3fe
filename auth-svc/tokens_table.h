/*
 * tokens_table: the prepared statements of the `tokens` table, keyed by the SHA-256 of
 * the token (the token itself is never stored).
 *
 * Design: as users_table, one statement struct prepared once, bind -> step -> check ->
 * reset on every call, no locking and no policy. `revoked` holds why a token stopped
 * working, so verify can say so: see enum token_state.
 */
#ifndef TOKENS_TABLE_H
#define TOKENS_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "auth_db.h"
#include "sb_token.h"
#include "users_table.h"

enum token_state {
	TOKEN_LIVE = 0,
	TOKEN_REVOKED = 1,      /* revoked by an operator */
	TOKEN_USER_REMOVED = 2, /* its user was removed */
};

struct token_row {
	uint64_t user_id;
	int64_t created_ms;
	int64_t expires_ms; /* 0 = never */
	enum token_state state;
	int user_exists;               /* the users row is still there (verify joins it) */
	char name[USERS_NAME_MAX + 1]; /* the user's display name when user_exists */
};

struct tokens_table {
	struct auth_db *db; /* borrowed */
	sqlite3_stmt *insert;
	sqlite3_stmt *get;
	sqlite3_stmt *set_state;
	sqlite3_stmt *set_state_of_user;
};

int tokens_table_create(struct tokens_table **out, struct auth_db *db);
void tokens_table_destroy(struct tokens_table *t);

/* Store a new live token. 0 / -1. */
int tokens_table_insert(struct tokens_table *t, const uint8_t hash[SB_TOKEN_HASH_LEN],
                        uint64_t user_id, int64_t now_ms, int64_t expires_ms);

/* Fetch the token with its owner's name; *found = 0 when no such hash. 0 / -1. */
int tokens_table_get(struct tokens_table *t, const uint8_t hash[SB_TOKEN_HASH_LEN],
                     struct token_row *row, int *found);

/* Move a live token to `state`; *changed = 1 when it was live. 0 / -1. */
int tokens_table_set_state(struct tokens_table *t, const uint8_t hash[SB_TOKEN_HASH_LEN],
                           enum token_state state, uint64_t *changed);

/* Move every live token of a user to `state`; *changed = how many. 0 / -1. */
int tokens_table_set_state_of_user(struct tokens_table *t, uint64_t user_id, enum token_state state,
                                   uint64_t *changed);

#endif
