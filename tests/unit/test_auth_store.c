/*
 * test_auth_store: auth-svc's store on a real SQLite file in a temp directory: users
 * (upsert, validation, removal), tokens (issue, verify, expiry, revocation, what
 * removing a user does to them), persistence across reopen, refusal of a newer schema,
 * and the lock under concurrent callers. Time is passed in, so expiry needs no sleep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>

#include "auth_db.h"
#include "auth_store.h"
#include "sb_log.h"
#include "sb_token.h"

#define NOW ((int64_t)1767225600000) /* 2026-01-01T00:00:00Z */

struct fixture {
	char dir[64];
	char path[128];
	struct auth_store *st;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/test_auth_store.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/auth.db", f->dir);
	if (auth_store_open(&f->st, f->path) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	auth_store_close(f->st);
	char p[160];
	const char *suffixes[] = {"", "-wal", "-shm"};
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static void issue(struct auth_store *st, uint64_t user, int64_t ttl, char tok[SB_TOKEN_LEN + 1])
{
	int64_t exp = -1;
	assert_int_equal(auth_store_token_issue(st, user, ttl, NOW, tok, &exp, NULL), AUTH_OK);
	assert_int_equal(exp, ttl ? NOW + ttl * 1000 : 0);
}

static enum auth_refusal verify_at(struct auth_store *st, const char *tok, int64_t now,
                                   struct auth_verdict *v)
{
	assert_int_equal(auth_store_token_verify(st, tok, strlen(tok), now, v), AUTH_OK);
	return v->refusal;
}

/* ---- users ---- */

static void test_user_upsert_and_get(void **state)
{
	struct fixture *f = *state;
	char name[AUTH_NAME_MAX + 1];
	int created = -1;
	assert_int_equal(auth_store_user_get(f->st, 5, name), AUTH_NOT_FOUND);
	assert_int_equal(auth_store_user_put(f->st, 5, "John Doe", NOW, &created), AUTH_OK);
	assert_int_equal(created, 1);
	assert_int_equal(auth_store_user_get(f->st, 5, name), AUTH_OK);
	assert_string_equal(name, "John Doe");
	/* same id again: renamed, not duplicated */
	assert_int_equal(auth_store_user_put(f->st, 5, "Jöhn Døe 🚀", NOW + 1, &created), AUTH_OK);
	assert_int_equal(created, 0);
	assert_int_equal(auth_store_user_get(f->st, 5, name), AUTH_OK);
	assert_string_equal(name, "Jöhn Døe 🚀");
	/* the largest id SQLite can hold round-trips */
	assert_int_equal(auth_store_user_put(f->st, AUTH_USER_ID_MAX, "max", NOW, NULL), AUTH_OK);
	assert_int_equal(auth_store_user_get(f->st, AUTH_USER_ID_MAX, name), AUTH_OK);
	assert_string_equal(name, "max");
	assert_int_equal(auth_store_user_get(f->st, 6, name), AUTH_NOT_FOUND);
}

static void test_user_validation(void **state)
{
	struct fixture *f = *state;
	char longname[AUTH_NAME_MAX + 2];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	assert_int_equal(auth_store_user_put(f->st, 0, "zero", NOW, NULL), AUTH_INVALID);
	assert_int_equal(auth_store_user_put(f->st, AUTH_USER_ID_MAX + 1, "big", NOW, NULL),
	                 AUTH_INVALID);
	assert_int_equal(auth_store_user_put(f->st, 1, "", NOW, NULL), AUTH_INVALID);
	assert_int_equal(auth_store_user_put(f->st, 1, longname, NOW, NULL), AUTH_INVALID);
	longname[AUTH_NAME_MAX] = 0; /* exactly the limit is fine */
	assert_int_equal(auth_store_user_put(f->st, 1, longname, NOW, NULL), AUTH_OK);
	assert_int_equal(auth_store_user_put(f->st, 2, "tab\there", NOW, NULL), AUTH_INVALID);
	assert_int_equal(auth_store_user_put(f->st, 2, "nl\n", NOW, NULL), AUTH_INVALID);
	assert_int_equal(auth_store_user_put(f->st, 2, "\xc3(", NOW, NULL), AUTH_INVALID);
	assert_int_equal(auth_store_user_put(f->st, 2, "\xc0\xaf", NOW, NULL), AUTH_INVALID);
	assert_int_equal(auth_store_user_put(f->st, 2, "\xed\xa0\x80", NOW, NULL), AUTH_INVALID);
	assert_int_equal(auth_store_user_put(f->st, 2, "trunc\xe2\x82", NOW, NULL), AUTH_INVALID);
	assert_int_equal(auth_store_user_put(f->st, 2, "c1\xc2\x85", NOW, NULL), AUTH_INVALID);
	char name[AUTH_NAME_MAX + 1];
	assert_int_equal(auth_store_user_get(f->st, 2, name), AUTH_NOT_FOUND);
	assert_int_equal(auth_store_user_put(f->st, 2, "€ ok", NOW, NULL), AUTH_OK);
}

static void test_user_remove(void **state)
{
	struct fixture *f = *state;
	uint64_t killed = 99;
	char name[AUTH_NAME_MAX + 1];
	assert_int_equal(auth_store_user_remove(f->st, 7, &killed), AUTH_NOT_FOUND);
	assert_int_equal(killed, 0);
	assert_int_equal(auth_store_user_put(f->st, 7, "Seven", NOW, NULL), AUTH_OK);
	assert_int_equal(auth_store_user_remove(f->st, 7, &killed), AUTH_OK);
	assert_int_equal(killed, 0);
	assert_int_equal(auth_store_user_get(f->st, 7, name), AUTH_NOT_FOUND);
	assert_int_equal(auth_store_user_remove(f->st, 7, &killed), AUTH_NOT_FOUND);
}

/* ---- tokens ---- */

static void test_issue_and_verify(void **state)
{
	struct fixture *f = *state;
	char tok[SB_TOKEN_LEN + 1];
	int64_t exp;
	uint8_t hash[SB_TOKEN_HASH_LEN], want[SB_TOKEN_HASH_LEN];
	assert_int_equal(auth_store_token_issue(f->st, 9, 0, NOW, tok, &exp, hash), AUTH_NOT_FOUND);
	assert_int_equal(auth_store_user_put(f->st, 9, "Nine", NOW, NULL), AUTH_OK);
	assert_int_equal(auth_store_token_issue(f->st, 9, 0, NOW, tok, &exp, hash), AUTH_OK);
	assert_true(sb_token_well_formed(tok, strlen(tok)));
	assert_int_equal(exp, 0);
	assert_int_equal(sb_token_hash(tok, strlen(tok), want), 0);
	assert_memory_equal(hash, want, sizeof hash);

	struct auth_verdict v;
	assert_int_equal(verify_at(f->st, tok, NOW, &v), AUTH_TOKEN_VALID);
	assert_int_equal(v.user_id, 9);
	assert_string_equal(v.name, "Nine");
	assert_int_equal(v.expires_ms, 0);
	assert_memory_equal(v.hash, want, sizeof want);
	/* ttl 0 never expires */
	assert_int_equal(verify_at(f->st, tok, NOW + (int64_t)50 * 365 * 86400 * 1000, &v),
	                 AUTH_TOKEN_VALID);
	/* renaming the user shows in the next verify */
	assert_int_equal(auth_store_user_put(f->st, 9, "Nine Renamed", NOW, NULL), AUTH_OK);
	assert_int_equal(verify_at(f->st, tok, NOW, &v), AUTH_TOKEN_VALID);
	assert_string_equal(v.name, "Nine Renamed");
	/* two tokens of one user are independent */
	char tok2[SB_TOKEN_LEN + 1];
	issue(f->st, 9, 0, tok2);
	assert_string_not_equal(tok, tok2);
	assert_int_equal(verify_at(f->st, tok2, NOW, &v), AUTH_TOKEN_VALID);
}

static void test_verify_malformed_and_unknown(void **state)
{
	struct fixture *f = *state;
	struct auth_verdict v;
	assert_int_equal(verify_at(f->st, "", NOW, &v), AUTH_TOKEN_MALFORMED);
	assert_int_equal(verify_at(f->st, "not-a-token", NOW, &v), AUTH_TOKEN_MALFORMED);
	assert_int_equal(
	    verify_at(f->st, "sb_0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	              NOW, &v),
	    AUTH_TOKEN_MALFORMED);
	char tok[SB_TOKEN_LEN + 1];
	assert_int_equal(sb_token_generate(tok, sizeof tok), 0); /* never stored */
	assert_int_equal(verify_at(f->st, tok, NOW, &v), AUTH_TOKEN_UNKNOWN);
	assert_int_equal(v.user_id, 0);
	assert_string_equal(auth_refusal_reason(AUTH_TOKEN_MALFORMED), "malformed");
	assert_string_equal(auth_refusal_reason(AUTH_TOKEN_UNKNOWN), "unknown");
	assert_string_equal(auth_refusal_reason(AUTH_TOKEN_EXPIRED), "expired");
	assert_string_equal(auth_refusal_reason(AUTH_TOKEN_REVOKED), "revoked");
	assert_string_equal(auth_refusal_reason(AUTH_TOKEN_USER_REMOVED), "user removed");
}

static void test_expiry(void **state)
{
	struct fixture *f = *state;
	char tok[SB_TOKEN_LEN + 1];
	struct auth_verdict v;
	int64_t exp;
	assert_int_equal(auth_store_user_put(f->st, 3, "Three", NOW, NULL), AUTH_OK);
	issue(f->st, 3, 3600, tok);
	assert_int_equal(verify_at(f->st, tok, NOW, &v), AUTH_TOKEN_VALID);
	assert_int_equal(v.expires_ms, NOW + 3600 * 1000);
	assert_int_equal(verify_at(f->st, tok, NOW + 3600 * 1000 - 1, &v), AUTH_TOKEN_VALID);
	assert_int_equal(verify_at(f->st, tok, NOW + 3600 * 1000, &v), AUTH_TOKEN_EXPIRED);
	assert_int_equal(v.user_id, 3);
	assert_int_equal(verify_at(f->st, tok, NOW + 7200 * 1000, &v), AUTH_TOKEN_EXPIRED);
	/* ttl out of range */
	assert_int_equal(auth_store_token_issue(f->st, 3, -1, NOW, tok, &exp, NULL), AUTH_INVALID);
	assert_int_equal(auth_store_token_issue(f->st, 3, AUTH_TTL_MAX + 1, NOW, tok, &exp, NULL),
	                 AUTH_INVALID);
	assert_int_equal(auth_store_token_issue(f->st, 0, 60, NOW, tok, &exp, NULL), AUTH_INVALID);
	issue(f->st, 3, AUTH_TTL_MAX, tok);
}

static void test_revoke_one(void **state)
{
	struct fixture *f = *state;
	char a[SB_TOKEN_LEN + 1], b[SB_TOKEN_LEN + 1];
	struct auth_verdict v;
	uint64_t owner = 0, count = 9;
	uint8_t hash[SB_TOKEN_HASH_LEN], want[SB_TOKEN_HASH_LEN];
	assert_int_equal(auth_store_user_put(f->st, 4, "Four", NOW, NULL), AUTH_OK);
	issue(f->st, 4, 0, a);
	issue(f->st, 4, 0, b);
	assert_int_equal(auth_store_token_revoke(f->st, a, strlen(a), &owner, hash, &count),
	                 AUTH_OK);
	assert_int_equal(owner, 4);
	assert_int_equal(count, 1);
	assert_int_equal(sb_token_hash(a, strlen(a), want), 0);
	assert_memory_equal(hash, want, sizeof want);
	assert_int_equal(verify_at(f->st, a, NOW, &v), AUTH_TOKEN_REVOKED);
	assert_int_equal(verify_at(f->st, b, NOW, &v), AUTH_TOKEN_VALID); /* sibling untouched */
	/* again: known, nothing left to revoke */
	assert_int_equal(auth_store_token_revoke(f->st, a, strlen(a), &owner, hash, &count),
	                 AUTH_OK);
	assert_int_equal(count, 0);
	/* never issued, or not even token-shaped */
	char unknown[SB_TOKEN_LEN + 1];
	assert_int_equal(sb_token_generate(unknown, sizeof unknown), 0);
	assert_int_equal(
	    auth_store_token_revoke(f->st, unknown, strlen(unknown), &owner, hash, &count),
	    AUTH_NOT_FOUND);
	assert_int_equal(auth_store_token_revoke(f->st, "junk", 4, &owner, hash, &count),
	                 AUTH_NOT_FOUND);
	/* revoked outranks expired */
	assert_int_equal(verify_at(f->st, a, NOW + (int64_t)200 * 365 * 86400 * 1000, &v),
	                 AUTH_TOKEN_REVOKED);
}

static void test_revoke_user(void **state)
{
	struct fixture *f = *state;
	char t[3][SB_TOKEN_LEN + 1], other[SB_TOKEN_LEN + 1];
	struct auth_verdict v;
	uint64_t count = 0, owner;
	uint8_t hash[SB_TOKEN_HASH_LEN];
	assert_int_equal(auth_store_token_revoke_user(f->st, 10, &count), AUTH_NOT_FOUND);
	assert_int_equal(auth_store_user_put(f->st, 10, "Ten", NOW, NULL), AUTH_OK);
	assert_int_equal(auth_store_user_put(f->st, 11, "Eleven", NOW, NULL), AUTH_OK);
	for (int i = 0; i < 3; i++)
		issue(f->st, 10, 0, t[i]);
	issue(f->st, 11, 0, other);
	assert_int_equal(auth_store_token_revoke(f->st, t[0], SB_TOKEN_LEN, &owner, hash, &count),
	                 AUTH_OK);
	assert_int_equal(auth_store_token_revoke_user(f->st, 10, &count), AUTH_OK);
	assert_int_equal(count, 2); /* t[0] was already revoked */
	for (int i = 0; i < 3; i++)
		assert_int_equal(verify_at(f->st, t[i], NOW, &v), AUTH_TOKEN_REVOKED);
	assert_int_equal(verify_at(f->st, other, NOW, &v), AUTH_TOKEN_VALID);
	/* tokens issued after a user-wide revoke work */
	char fresh[SB_TOKEN_LEN + 1];
	issue(f->st, 10, 0, fresh);
	assert_int_equal(verify_at(f->st, fresh, NOW, &v), AUTH_TOKEN_VALID);
	assert_int_equal(auth_store_token_revoke_user(f->st, 10, &count), AUTH_OK);
	assert_int_equal(count, 1);
}

static void test_remove_user_kills_tokens(void **state)
{
	struct fixture *f = *state;
	char a[SB_TOKEN_LEN + 1], b[SB_TOKEN_LEN + 1], c[SB_TOKEN_LEN + 1];
	struct auth_verdict v;
	uint64_t killed = 0, owner, count;
	uint8_t hash[SB_TOKEN_HASH_LEN];
	assert_int_equal(auth_store_user_put(f->st, 20, "Twenty", NOW, NULL), AUTH_OK);
	issue(f->st, 20, 0, a);
	issue(f->st, 20, 60, b);
	issue(f->st, 20, 0, c);
	assert_int_equal(auth_store_token_revoke(f->st, c, SB_TOKEN_LEN, &owner, hash, &count),
	                 AUTH_OK);
	assert_int_equal(auth_store_user_remove(f->st, 20, &killed), AUTH_OK);
	assert_int_equal(killed, 2); /* a and b were live; c already revoked */
	assert_int_equal(verify_at(f->st, a, NOW, &v), AUTH_TOKEN_USER_REMOVED);
	assert_int_equal(verify_at(f->st, b, NOW, &v), AUTH_TOKEN_USER_REMOVED);
	assert_int_equal(verify_at(f->st, c, NOW, &v), AUTH_TOKEN_REVOKED);
	/* the id comes back: old tokens stay dead, new ones work */
	assert_int_equal(auth_store_user_put(f->st, 20, "Twenty Again", NOW, NULL), AUTH_OK);
	assert_int_equal(verify_at(f->st, a, NOW, &v), AUTH_TOKEN_USER_REMOVED);
	char d[SB_TOKEN_LEN + 1];
	issue(f->st, 20, 0, d);
	assert_int_equal(verify_at(f->st, d, NOW, &v), AUTH_TOKEN_VALID);
	assert_string_equal(v.name, "Twenty Again");
}

static void test_persists_across_reopen(void **state)
{
	struct fixture *f = *state;
	char tok[SB_TOKEN_LEN + 1], revoked[SB_TOKEN_LEN + 1];
	struct auth_verdict v;
	uint64_t owner, count;
	uint8_t hash[SB_TOKEN_HASH_LEN];
	assert_int_equal(auth_store_user_put(f->st, 30, "Thirty", NOW, NULL), AUTH_OK);
	issue(f->st, 30, 0, tok);
	issue(f->st, 30, 0, revoked);
	assert_int_equal(
	    auth_store_token_revoke(f->st, revoked, SB_TOKEN_LEN, &owner, hash, &count), AUTH_OK);
	auth_store_close(f->st);
	f->st = NULL;
	assert_int_equal(auth_store_open(&f->st, f->path), 0);
	assert_int_equal(verify_at(f->st, tok, NOW, &v), AUTH_TOKEN_VALID);
	assert_string_equal(v.name, "Thirty");
	assert_int_equal(verify_at(f->st, revoked, NOW, &v), AUTH_TOKEN_REVOKED);

	/* the file: WAL, the current schema version, and no plaintext token anywhere */
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
	sqlite3_finalize(q);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), auth_db_schema_version());
	sqlite3_finalize(q);
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "SELECT count(*) FROM tokens WHERE length(hash) = 32 "
	                                    "AND instr(CAST(hash AS TEXT), 'sb_') = 0",
	                                    -1, &q, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 2);
	sqlite3_finalize(q);
	sqlite3_close(db);
}

static void test_refuses_newer_schema(void **state)
{
	struct fixture *f = *state;
	auth_store_close(f->st);
	f->st = NULL;
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(auth_store_open(&f->st, f->path), -1);
	assert_null(f->st);
}

/* ---- the lock ---- */

struct worker {
	struct auth_store *st;
	uint64_t user;
	int ok;
};

static void *hammer(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 200; i++) {
		char tok[SB_TOKEN_LEN + 1];
		int64_t exp;
		struct auth_verdict v;
		if (auth_store_token_issue(w->st, w->user, 0, NOW, tok, &exp, NULL) != AUTH_OK)
			return NULL;
		if (auth_store_token_verify(w->st, tok, SB_TOKEN_LEN, NOW, &v) != AUTH_OK ||
		    v.refusal != AUTH_TOKEN_VALID || v.user_id != w->user)
			return NULL;
	}
	w->ok = 1;
	return NULL;
}

static void test_concurrent_callers(void **state)
{
	struct fixture *f = *state;
	enum { N = 4 };
	pthread_t th[N];
	struct worker w[N];
	for (int i = 0; i < N; i++) {
		assert_int_equal(auth_store_user_put(f->st, 100 + i, "worker", NOW, NULL), AUTH_OK);
		w[i] = (struct worker){f->st, 100 + (uint64_t)i, 0};
		assert_int_equal(pthread_create(&th[i], NULL, hammer, &w[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		assert_true(w[i].ok);
	}
	uint64_t count = 0;
	assert_int_equal(auth_store_token_revoke_user(f->st, 100, &count), AUTH_OK);
	assert_int_equal(count, 200);
}

int main(void)
{
	sb_log_init("test_auth_store", "error");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_user_upsert_and_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_user_validation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_user_remove, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_issue_and_verify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_verify_malformed_and_unknown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_revoke_one, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_revoke_user, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_remove_user_kills_tokens, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_persists_across_reopen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_callers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
