/*
 * Unit tests for gateway/frame.c: every validation rule of SPEC §2 and its sentence.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

static const char *parse(const char *s, struct gw_chat_frame *f)
{
	return gw_frame_parse_chat(s, strlen(s), 10, f);
}

static void expect_error(const char *frame, const char *sentence)
{
	struct gw_chat_frame f;
	const char *err = parse(frame, &f);
	if (!err || strcmp(err, sentence) != 0)
		fail_msg("frame %s: expected \"%s\", got \"%s\"", frame, sentence,
		         err ? err : "(accepted)");
	assert_null(f.root);
}

static void test_valid_minimal(void **state)
{
	(void)state;
	struct gw_chat_frame f;
	assert_null(parse("{\"receiver_id\": 2, \"message\": \"hi\"}", &f));
	assert_int_equal(f.receiver_id, 2);
	assert_int_equal(f.message_len, 2);
	assert_memory_equal(f.message, "hi", 2);
	assert_null(f.attachment);
	json_decref(f.root);
}

static void test_string_receiver_and_attachment(void **state)
{
	(void)state;
	struct gw_chat_frame f;
	assert_null(parse("{\"receiver_id\":\"123\",\"message\":\"x\","
	                  "\"attachment\":\"https://example.com/f.pdf\"}",
	                  &f));
	assert_int_equal(f.receiver_id, 123);
	assert_string_equal(f.attachment, "https://example.com/f.pdf");
	json_decref(f.root);
	assert_null(parse("{\"receiver_id\":1,\"message\":\"x\",\"attachment\":null}", &f));
	assert_null(f.attachment);
	json_decref(f.root);
}

static void test_json_shape_errors(void **state)
{
	(void)state;
	expect_error("{", GW_E_INVALID_JSON);
	expect_error("", GW_E_INVALID_JSON);
	expect_error("{\"receiver_id\":1,\"receiver_id\":2,\"message\":\"x\"}", GW_E_INVALID_JSON);
	expect_error("[1]", GW_E_NOT_OBJECT);
	expect_error("\"x\"", GW_E_NOT_OBJECT);
	expect_error("3", GW_E_NOT_OBJECT);
}

static void test_receiver_errors(void **state)
{
	(void)state;
	expect_error("{\"message\":\"x\"}", GW_E_RECEIVER_REQUIRED);
	expect_error("{\"receiver_id\":null,\"message\":\"x\"}", GW_E_RECEIVER_REQUIRED);
	const char *bad[] = {"0",       "-1",   "1.5",    "\"abc\"",
	                     "\"12a\"", "\"\"", "\"-3\"", "\" 1\"",
	                     "true",    "{}",   "[]",     "\"99999999999999999999\""};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char frame[128];
		snprintf(frame, sizeof frame, "{\"receiver_id\":%s,\"message\":\"x\"}", bad[i]);
		expect_error(frame, GW_E_RECEIVER_INVALID);
	}
}

static void test_message_errors(void **state)
{
	(void)state;
	expect_error("{\"receiver_id\":1}", GW_E_MESSAGE_REQUIRED);
	expect_error("{\"receiver_id\":1,\"message\":123}", GW_E_MESSAGE_TYPE);
	expect_error("{\"receiver_id\":1,\"message\":null}", GW_E_MESSAGE_TYPE);
	expect_error("{\"receiver_id\":1,\"message\":[]}", GW_E_MESSAGE_TYPE);
	expect_error("{\"receiver_id\":1,\"message\":\"\"}", GW_E_MESSAGE_EMPTY);
	expect_error("{\"receiver_id\":1,\"message\":\" \\t\\n\"}", GW_E_MESSAGE_EMPTY);
	/* limit is 10 characters in these tests */
	expect_error("{\"receiver_id\":1,\"message\":\"01234567890\"}", GW_E_MESSAGE_TOO_LONG);
}

static void test_length_counts_characters(void **state)
{
	(void)state;
	struct gw_chat_frame f;
	/* ten 2-byte characters: 20 bytes, 10 characters: allowed */
	assert_null(parse("{\"receiver_id\":1,\"message\":\"éééééééééé\"}", &f));
	assert_int_equal(f.message_len, 20);
	json_decref(f.root);
	expect_error("{\"receiver_id\":1,\"message\":\"ééééééééééé\"}", GW_E_MESSAGE_TOO_LONG);
	assert_int_equal(gw_utf8_chars("a\xc3\xa9\xe2\x82\xac", 6), 3);
}

static void test_attachment_errors(void **state)
{
	(void)state;
	const char *bad[] = {"5",
	                     "\"ftp://x\"",
	                     "\"javascript:alert(1)\"",
	                     "\"http://\"",
	                     "\"https://a b\"",
	                     "\"\"",
	                     "{}",
	                     "true"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char frame[128];
		snprintf(frame, sizeof frame,
		         "{\"receiver_id\":1,\"message\":\"x\",\"attachment\":%s}", bad[i]);
		expect_error(frame, GW_E_ATTACHMENT);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_minimal),
	    cmocka_unit_test(test_string_receiver_and_attachment),
	    cmocka_unit_test(test_json_shape_errors),
	    cmocka_unit_test(test_receiver_errors),
	    cmocka_unit_test(test_message_errors),
	    cmocka_unit_test(test_length_counts_characters),
	    cmocka_unit_test(test_attachment_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
