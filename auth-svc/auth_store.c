/*
 * auth_store: users and tokens as operations, under one lock; see auth_store.h.
 *
 * Design: every public function is lock -> (transaction ->) table calls -> unlock, and
 * validates its arguments before touching SQLite. Errors chain through `int r`
 * (0 / -1) and end in exactly one unlock.
 */
#include "auth_store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth_db.h"
#include "sb_log.h"
#include "tokens_table.h"
#include "users_table.h"

struct auth_store {
	pthread_mutex_t lock;
	struct auth_db *db;
	struct users_table *users;
	struct tokens_table *tokens;
};

const char *auth_refusal_reason(enum auth_refusal r)
{
	switch (r) {
	case AUTH_TOKEN_VALID:
		return "";
	case AUTH_TOKEN_MALFORMED:
		return "malformed";
	case AUTH_TOKEN_UNKNOWN:
		return "unknown";
	case AUTH_TOKEN_EXPIRED:
		return "expired";
	case AUTH_TOKEN_REVOKED:
		return "revoked";
	case AUTH_TOKEN_USER_REMOVED:
		return "user removed";
	}
	return "unknown";
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF) without C0/C1
 * controls or DEL: a display name ends up in JSON frames and log lines. */
int auth_name_valid(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t len = name ? strlen(name) : 0;
	if (len == 0 || len > AUTH_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len;) {
		unsigned c = p[i];
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return 0;
			i++;
			continue;
		}
		size_t n;
		unsigned cp;
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return 0;
		if (i + n >= len)
			return 0; /* truncated sequence */
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
			return 0;
		i += n + 1;
	}
	return 1;
}

static int user_id_valid(uint64_t id)
{
	return id >= 1 && id <= AUTH_USER_ID_MAX;
}

int auth_store_open(struct auth_store **out, const char *path)
{
	struct auth_store *st = calloc(1, sizeof *st);
	if (!st)
		return -1;
	if (pthread_mutex_init(&st->lock, NULL) != 0) {
		free(st);
		return -1;
	}
	int r = auth_db_open(&st->db, path);
	if (r == 0)
		r = users_table_create(&st->users, st->db);
	if (r == 0)
		r = tokens_table_create(&st->tokens, st->db);
	if (r < 0) {
		auth_store_close(st);
		return -1;
	}
	*out = st;
	return 0;
}

void auth_store_close(struct auth_store *st)
{
	if (!st)
		return;
	tokens_table_destroy(st->tokens);
	users_table_destroy(st->users);
	auth_db_close(st->db);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

enum auth_status auth_store_user_put(struct auth_store *st, uint64_t id, const char *name,
                                     int64_t now_ms, int *created)
{
	if (!user_id_valid(id) || !auth_name_valid(name))
		return AUTH_INVALID;
	char old[AUTH_NAME_MAX + 1];
	int found = 0;
	pthread_mutex_lock(&st->lock);
	/* Single-statement upsert: autocommit is its own transaction. The look-up before
	 * it only tells the caller whether the user is new (for the log line). */
	int r = users_table_get(st->users, id, old, sizeof old, &found);
	if (r == 0)
		r = users_table_upsert(st->users, id, name, now_ms);
	pthread_mutex_unlock(&st->lock);
	if (r == 0 && created)
		*created = !found;
	return r == 0 ? AUTH_OK : AUTH_ERROR;
}

enum auth_status auth_store_user_get(struct auth_store *st, uint64_t id, char *name)
{
	if (!user_id_valid(id))
		return AUTH_NOT_FOUND;
	int found = 0;
	pthread_mutex_lock(&st->lock);
	int r = users_table_get(st->users, id, name, AUTH_NAME_MAX + 1, &found);
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		return AUTH_ERROR;
	return found ? AUTH_OK : AUTH_NOT_FOUND;
}

enum auth_status auth_store_user_remove(struct auth_store *st, uint64_t id, uint64_t *tokens)
{
	*tokens = 0;
	if (!user_id_valid(id))
		return AUTH_NOT_FOUND;
	int deleted = 0;
	pthread_mutex_lock(&st->lock);
	int r = auth_db_begin(st->db);
	if (r == 0)
		r = users_table_delete(st->users, id, &deleted);
	if (r == 0 && deleted)
		r = tokens_table_set_state_of_user(st->tokens, id, TOKEN_USER_REMOVED, tokens);
	if (r == 0)
		r = auth_db_commit(st->db);
	if (r < 0) {
		auth_db_rollback(st->db);
		*tokens = 0;
	}
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		return AUTH_ERROR;
	return deleted ? AUTH_OK : AUTH_NOT_FOUND;
}

enum auth_status auth_store_token_issue(struct auth_store *st, uint64_t user_id, int64_t ttl_s,
                                        int64_t now_ms, char token[SB_TOKEN_LEN + 1],
                                        int64_t *expires_ms, uint8_t hash[SB_TOKEN_HASH_LEN])
{
	if (!user_id_valid(user_id) || ttl_s < 0 || ttl_s > AUTH_TTL_MAX)
		return AUTH_INVALID;
	uint8_t h[SB_TOKEN_HASH_LEN];
	char tok[SB_TOKEN_LEN + 1];
	if (sb_token_generate(tok, sizeof tok) < 0 || sb_token_hash(tok, SB_TOKEN_LEN, h) < 0) {
		SB_ERROR("token_generate", "error=\"CSPRNG or SHA-256 failed\"");
		return AUTH_ERROR;
	}
	int64_t exp = ttl_s ? now_ms + ttl_s * 1000 : 0;
	char name[AUTH_NAME_MAX + 1];
	int found = 0;
	pthread_mutex_lock(&st->lock);
	int r = auth_db_begin(st->db);
	if (r == 0)
		r = users_table_get(st->users, user_id, name, sizeof name, &found);
	if (r == 0 && found)
		r = tokens_table_insert(st->tokens, h, user_id, now_ms, exp);
	if (r == 0)
		r = auth_db_commit(st->db);
	if (r < 0)
		auth_db_rollback(st->db);
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		return AUTH_ERROR;
	if (!found)
		return AUTH_NOT_FOUND;
	memcpy(token, tok, sizeof tok);
	*expires_ms = exp;
	if (hash)
		memcpy(hash, h, sizeof h);
	return AUTH_OK;
}

enum auth_status auth_store_token_verify(struct auth_store *st, const char *token, size_t len,
                                         int64_t now_ms, struct auth_verdict *v)
{
	memset(v, 0, sizeof *v);
	if (!sb_token_well_formed(token, len)) {
		v->refusal = AUTH_TOKEN_MALFORMED;
		return AUTH_OK;
	}
	if (sb_token_hash(token, len, v->hash) < 0)
		return AUTH_ERROR;
	struct token_row row;
	int found = 0;
	pthread_mutex_lock(&st->lock);
	int r = tokens_table_get(st->tokens, v->hash, &row, &found);
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		return AUTH_ERROR;
	if (!found) {
		v->refusal = AUTH_TOKEN_UNKNOWN;
		return AUTH_OK;
	}
	v->user_id = row.user_id;
	v->expires_ms = row.expires_ms;
	/* The token's own recorded fate first (revoked before its user went away says
	 * "revoked"), and any deliberate act outranks the passage of time. A live row
	 * without a user cannot be written by this store; treat it as removed anyway. */
	if (row.state == TOKEN_REVOKED)
		v->refusal = AUTH_TOKEN_REVOKED;
	else if (row.state != TOKEN_LIVE || !row.user_exists)
		v->refusal = AUTH_TOKEN_USER_REMOVED;
	else if (row.expires_ms != 0 && now_ms >= row.expires_ms)
		v->refusal = AUTH_TOKEN_EXPIRED;
	else
		memcpy(v->name, row.name, sizeof v->name);
	return AUTH_OK;
}

enum auth_status auth_store_token_revoke(struct auth_store *st, const char *token, size_t len,
                                         uint64_t *user_id, uint8_t hash[SB_TOKEN_HASH_LEN],
                                         uint64_t *count)
{
	*count = 0;
	/* A string that is not token-shaped was never issued: skip the look-up. */
	if (!sb_token_well_formed(token, len))
		return AUTH_NOT_FOUND;
	if (sb_token_hash(token, len, hash) < 0)
		return AUTH_ERROR;
	struct token_row row;
	int found = 0;
	pthread_mutex_lock(&st->lock);
	int r = auth_db_begin(st->db);
	if (r == 0)
		r = tokens_table_get(st->tokens, hash, &row, &found);
	if (r == 0 && found)
		r = tokens_table_set_state(st->tokens, hash, TOKEN_REVOKED, count);
	if (r == 0)
		r = auth_db_commit(st->db);
	if (r < 0) {
		auth_db_rollback(st->db);
		*count = 0;
	}
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		return AUTH_ERROR;
	if (!found)
		return AUTH_NOT_FOUND;
	*user_id = row.user_id;
	return AUTH_OK;
}

enum auth_status auth_store_token_revoke_user(struct auth_store *st, uint64_t user_id,
                                              uint64_t *count)
{
	*count = 0;
	if (!user_id_valid(user_id))
		return AUTH_NOT_FOUND;
	char name[AUTH_NAME_MAX + 1];
	int found = 0;
	pthread_mutex_lock(&st->lock);
	int r = auth_db_begin(st->db);
	if (r == 0)
		r = users_table_get(st->users, user_id, name, sizeof name, &found);
	if (r == 0 && found)
		r = tokens_table_set_state_of_user(st->tokens, user_id, TOKEN_REVOKED, count);
	if (r == 0)
		r = auth_db_commit(st->db);
	if (r < 0) {
		auth_db_rollback(st->db);
		*count = 0;
	}
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		return AUTH_ERROR;
	return found ? AUTH_OK : AUTH_NOT_FOUND;
}
