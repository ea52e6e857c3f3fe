/*
 * auth_store: what auth-svc knows about users and tokens, as operations: add, look up
 * and remove users; issue, verify and revoke tokens.
 *
 * Design: one mutex around one SQLite connection. libnats runs subscription callbacks
 * on its own threads, possibly several at once, and every operation here is a few
 * microseconds of indexed SQLite work, so a single lock costs less than a connection
 * pool would. Operations that touch two tables run in one transaction. The store also
 * enforces its invariants (ids, name shape, ttl range), so a bad request can never
 * reach the file. Time is a parameter, so expiry is testable without sleeping.
 *
 * Every function is thread-safe and blocks only on the store's own lock.
 */
#ifndef AUTH_STORE_H
#define AUTH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "sb_token.h"
#include "users_table.h"

#define AUTH_NAME_MAX    USERS_NAME_MAX
#define AUTH_USER_ID_MAX ((uint64_t)INT64_MAX)        /* ids are SQLite INTEGERs */
#define AUTH_TTL_MAX     ((int64_t)100 * 365 * 86400) /* a century: "forever" is ttl 0 */

enum auth_status {
	AUTH_OK = 0,
	AUTH_INVALID,   /* bad argument: id 0, name empty/too long/not UTF-8, bad ttl */
	AUTH_NOT_FOUND, /* no such user / no such token */
	AUTH_ERROR,     /* storage failure (already logged) */
};

/* Why a token was refused; AUTH_TOKEN_VALID when it was not. */
enum auth_refusal {
	AUTH_TOKEN_VALID = 0,
	AUTH_TOKEN_MALFORMED,
	AUTH_TOKEN_UNKNOWN,
	AUTH_TOKEN_EXPIRED,
	AUTH_TOKEN_REVOKED,
	AUTH_TOKEN_USER_REMOVED,
};

struct auth_verdict {
	enum auth_refusal refusal;
	uint64_t user_id;                /* set when the token is known */
	int64_t expires_ms;              /* 0 = never; set when the token is known */
	uint8_t hash[SB_TOKEN_HASH_LEN]; /* set unless malformed */
	char name[AUTH_NAME_MAX + 1];    /* display name, when valid */
};

struct auth_store;

/* The wire word for a refusal: "malformed", "unknown", "expired", "revoked",
 * "user removed" ("" for AUTH_TOKEN_VALID). */
const char *auth_refusal_reason(enum auth_refusal r);

/* 1 when name may be a display name: 1..AUTH_NAME_MAX bytes of valid UTF-8 without
 * control characters. */
int auth_name_valid(const char *name);

/* Open (creating) the SQLite file at path; its directory must exist. 0 and *out, or -1
 * (logged). */
int auth_store_open(struct auth_store **out, const char *path);

/* Close. Callers must have stopped every thread that uses the store. NULL: no-op. */
void auth_store_close(struct auth_store *st);

/* Add the user, or rename it when the id exists. *created (may be NULL) = 1 when new. */
enum auth_status auth_store_user_put(struct auth_store *st, uint64_t id, const char *name,
                                     int64_t now_ms, int *created);

/* Copy the user's display name into name[AUTH_NAME_MAX + 1]. AUTH_NOT_FOUND if absent. */
enum auth_status auth_store_user_get(struct auth_store *st, uint64_t id, char *name);

/* Remove the user; its live tokens stop working ("user removed") and stay dead if the
 * id is added again. *tokens = how many live tokens that killed. */
enum auth_status auth_store_user_remove(struct auth_store *st, uint64_t id, uint64_t *tokens);

/* Issue a token for an existing user. ttl_s = 0: never expires; else 1..AUTH_TTL_MAX.
 * Writes the token (NUL-terminated, SB_TOKEN_LEN + 1 bytes) into token: the only copy
 * that will ever exist. *expires_ms = 0 or the expiry; hash (may be NULL) receives the
 * stored hash. */
enum auth_status auth_store_token_issue(struct auth_store *st, uint64_t user_id, int64_t ttl_s,
                                        int64_t now_ms, char token[SB_TOKEN_LEN + 1],
                                        int64_t *expires_ms, uint8_t hash[SB_TOKEN_HASH_LEN]);

/* Judge a presented token at now_ms into *v. AUTH_OK whenever a verdict was reached
 * (valid or refused); AUTH_ERROR only on a storage failure. The token need not be
 * NUL-terminated and is never logged. */
enum auth_status auth_store_token_verify(struct auth_store *st, const char *token, size_t len,
                                         int64_t now_ms, struct auth_verdict *v);

/* Revoke one token. AUTH_NOT_FOUND when it was never issued. *user_id = its owner,
 * hash = its hash, *count = 1 if it was live, 0 if it already was not. */
enum auth_status auth_store_token_revoke(struct auth_store *st, const char *token, size_t len,
                                         uint64_t *user_id, uint8_t hash[SB_TOKEN_HASH_LEN],
                                         uint64_t *count);

/* Revoke every live token of an existing user. AUTH_NOT_FOUND when no such user.
 * *count = how many were live. */
enum auth_status auth_store_token_revoke_user(struct auth_store *st, uint64_t user_id,
                                              uint64_t *count);

#endif
