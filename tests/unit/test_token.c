/*
 * test_token: common/sb_token: generated tokens have the documented shape and do not
 * repeat, the shape check accepts exactly that shape, and the hash is SHA-256.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sb_token.h"

static void test_generate_shape(void **state)
{
	(void)state;
	char tok[SB_TOKEN_LEN + 1];
	memset(tok, 'x', sizeof tok);
	assert_int_equal(sb_token_generate(tok, sizeof tok), 0);
	assert_int_equal(strlen(tok), SB_TOKEN_LEN);
	assert_memory_equal(tok, "sb_", 3);
	for (size_t i = 3; i < SB_TOKEN_LEN; i++)
		assert_non_null(strchr("0123456789abcdef", tok[i]));
	assert_true(sb_token_well_formed(tok, strlen(tok)));
}

static void test_generate_refuses_small_buffer(void **state)
{
	(void)state;
	char tok[SB_TOKEN_LEN];
	assert_int_equal(sb_token_generate(tok, sizeof tok), -1);
}

static int cmp_tokens(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_generate_unique(void **state)
{
	(void)state;
	enum { N = 2000 };
	char(*toks)[SB_TOKEN_LEN + 1] = calloc(N, sizeof *toks);
	assert_non_null(toks);
	for (int i = 0; i < N; i++)
		assert_int_equal(sb_token_generate(toks[i], sizeof toks[i]), 0);
	qsort(toks, N, sizeof *toks, cmp_tokens);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(toks[i - 1], toks[i]);
	/* 256 random bits: every hex digit shows up across 2000 tokens. */
	int seen[16] = {0};
	for (int i = 0; i < N; i++)
		for (size_t k = 3; k < SB_TOKEN_LEN; k++) {
			char c = toks[i][k];
			seen[c <= '9' ? c - '0' : c - 'a' + 10] = 1;
		}
	for (int d = 0; d < 16; d++)
		assert_true(seen[d]);
	free(toks);
}

static void test_well_formed(void **state)
{
	(void)state;
	const char *good = "sb_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	assert_int_equal(strlen(good), SB_TOKEN_LEN);
	assert_true(sb_token_well_formed(good, strlen(good)));

	char t[SB_TOKEN_LEN + 2];
	/* uppercase hex, wrong prefix, a non-hex digit, a NUL inside */
	const struct {
		size_t pos;
		char c;
	} bad[] = {{10, 'A'}, {0, 'S'}, {2, '-'}, {40, 'g'}, {66, ' '}, {20, '\0'}};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memcpy(t, good, SB_TOKEN_LEN + 1);
		t[bad[i].pos] = bad[i].c;
		assert_false(sb_token_well_formed(t, SB_TOKEN_LEN));
	}
	/* too short, too long, empty */
	assert_false(sb_token_well_formed(good, SB_TOKEN_LEN - 1));
	memcpy(t, good, SB_TOKEN_LEN);
	t[SB_TOKEN_LEN] = 'a';
	t[SB_TOKEN_LEN + 1] = 0;
	assert_false(sb_token_well_formed(t, SB_TOKEN_LEN + 1));
	assert_false(sb_token_well_formed("", 0));
	assert_false(sb_token_well_formed("sb_", 3));
}

static void test_hash_vectors(void **state)
{
	(void)state;
	uint8_t h[SB_TOKEN_HASH_LEN];
	char hex[2 * SB_TOKEN_HASH_LEN + 1];
	/* FIPS 180-2 test vectors */
	assert_int_equal(sb_token_hash("abc", 3, h), 0);
	sb_hex(h, sizeof h, hex);
	assert_string_equal(hex,
	                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(sb_token_hash("", 0, h), 0);
	sb_hex(h, sizeof h, hex);
	assert_string_equal(hex,
	                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	assert_int_equal(sb_token_hash(m, strlen(m), h), 0);
	sb_hex(h, sizeof h, hex);
	assert_string_equal(hex,
	                    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_hash_distinguishes_tokens(void **state)
{
	(void)state;
	char a[SB_TOKEN_LEN + 1], b[SB_TOKEN_LEN + 1];
	uint8_t ha[SB_TOKEN_HASH_LEN], ha2[SB_TOKEN_HASH_LEN], hb[SB_TOKEN_HASH_LEN];
	assert_int_equal(sb_token_generate(a, sizeof a), 0);
	memcpy(b, a, sizeof a);
	b[SB_TOKEN_LEN - 1] = b[SB_TOKEN_LEN - 1] == '0' ? '1' : '0';
	assert_int_equal(sb_token_hash(a, SB_TOKEN_LEN, ha), 0);
	assert_int_equal(sb_token_hash(a, SB_TOKEN_LEN, ha2), 0);
	assert_int_equal(sb_token_hash(b, SB_TOKEN_LEN, hb), 0);
	assert_memory_equal(ha, ha2, sizeof ha);
	assert_memory_not_equal(ha, hb, sizeof ha);
}

static void test_hex(void **state)
{
	(void)state;
	const uint8_t in[] = {0x00, 0x0f, 0xa5, 0xff};
	char out[9];
	sb_hex(in, sizeof in, out);
	assert_string_equal(out, "000fa5ff");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_generate_shape),
	    cmocka_unit_test(test_generate_refuses_small_buffer),
	    cmocka_unit_test(test_generate_unique),
	    cmocka_unit_test(test_well_formed),
	    cmocka_unit_test(test_hash_vectors),
	    cmocka_unit_test(test_hash_distinguishes_tokens),
	    cmocka_unit_test(test_hex),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
