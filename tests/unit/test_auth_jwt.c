/*
 * Unit tests for auth-svc/jwt.c: simplejwt-shaped HS256 tokens are accepted; wrong
 * secret, tampered claims, alg "none"/RS256, expiry, refresh tokens and junk refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "jwt.h"

static void b64url(const void *in, size_t len, char *out)
{
	unsigned char tmp[1024];
	int n = EVP_EncodeBlock(tmp, in, (int)len);
	int j = 0;
	for (int i = 0; i < n; i++) {
		if (tmp[i] == '=')
			break;
		out[j++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
	}
	out[j] = 0;
}

/* Build header.payload.signature signed with secret. */
static void make(const char *secret, const char *header, const char *payload, char *out)
{
	char h[512], p[512], sig[128];
	b64url(header, strlen(header), h);
	b64url(payload, strlen(payload), p);
	sprintf(out, "%s.%s", h, p);
	unsigned char mac[32];
	unsigned int ml = 0;
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)out, strlen(out), mac,
	     &ml);
	b64url(mac, ml, sig);
	strcat(out, ".");
	strcat(out, sig);
}

static const char *SECRET = "django-insecure-secret";
static const char *HS256 = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
#define NOW 1800000000

static const char *verify(const char *tok, uint64_t *uid)
{
	int64_t exp = 0;
	return auth_jwt_verify(SECRET, strlen(SECRET), tok, strlen(tok), NOW, uid, &exp);
}

static void test_simplejwt_access_token(void **state)
{
	(void)state;
	char tok[2048];
	make(SECRET, HS256,
	     "{\"token_type\":\"access\",\"exp\":1800000600,\"iat\":1800000000,"
	     "\"jti\":\"abc\",\"user_id\":42}",
	     tok);
	assert_true(auth_jwt_shaped(tok, strlen(tok)));
	uint64_t uid = 0;
	assert_null(verify(tok, &uid));
	assert_int_equal(uid, 42);
	/* user_id as a string (custom USER_ID_FIELD) */
	make(SECRET, HS256, "{\"exp\":1800000600,\"user_id\":\"7\"}", tok);
	assert_null(verify(tok, &uid));
	assert_int_equal(uid, 7);
}

static void test_refusals(void **state)
{
	(void)state;
	char tok[2048];
	uint64_t uid = 0;
	make("other-secret", HS256, "{\"exp\":1800000600,\"user_id\":42}", tok);
	assert_string_equal(verify(tok, &uid), "bad signature");
	make(SECRET, "{\"alg\":\"none\"}", "{\"exp\":1800000600,\"user_id\":42}", tok);
	assert_string_equal(verify(tok, &uid), "unsupported algorithm");
	make(SECRET, "{\"alg\":\"RS256\"}", "{\"exp\":1800000600,\"user_id\":42}", tok);
	assert_string_equal(verify(tok, &uid), "unsupported algorithm");
	make(SECRET, HS256, "{\"exp\":1799999999,\"user_id\":42}", tok);
	assert_string_equal(verify(tok, &uid), "expired");
	make(SECRET, HS256, "{\"user_id\":42}", tok);
	assert_string_equal(verify(tok, &uid), "malformed");
	make(SECRET, HS256, "{\"exp\":1800000600,\"token_type\":\"refresh\",\"user_id\":42}", tok);
	assert_string_equal(verify(tok, &uid), "not an access token");
	make(SECRET, HS256, "{\"exp\":1800000600,\"user_id\":0}", tok);
	assert_string_equal(verify(tok, &uid), "no user_id");
	make(SECRET, HS256, "{\"exp\":1800000600}", tok);
	assert_string_equal(verify(tok, &uid), "no user_id");
}

static void test_tampered_payload(void **state)
{
	(void)state;
	char tok[2048], other[2048];
	make(SECRET, HS256, "{\"exp\":1800000600,\"user_id\":42}", tok);
	make(SECRET, HS256, "{\"exp\":1800000600,\"user_id\":1}", other);
	/* splice user 1's payload under user 42's signature */
	char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
	char *o1 = strchr(other, '.'), *o2 = strrchr(other, '.');
	char spliced[2048];
	snprintf(spliced, sizeof spliced, "%.*s%.*s%s", (int)(d1 - tok), tok, (int)(o2 - o1), o1,
	         d2);
	uint64_t uid = 0;
	assert_string_equal(verify(spliced, &uid), "bad signature");
	assert_int_equal(uid, 0);
}

static void test_shape(void **state)
{
	(void)state;
	assert_false(auth_jwt_shaped("a.b", 3));
	assert_false(auth_jwt_shaped("a..c", 4));
	assert_false(auth_jwt_shaped("a.b.c.d", 7));
	assert_false(auth_jwt_shaped("a.b+.c", 6));
	assert_true(auth_jwt_shaped("ab.cd.ef", 8));
	uint64_t uid;
	assert_string_equal(verify("ab.cd.ef", &uid), "malformed");
	assert_string_equal(verify("sb_123", &uid), "malformed");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simplejwt_access_token),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_tampered_payload),
	    cmocka_unit_test(test_shape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
