/*
 * test_notify_inject: the injection parsers of notify-svc (notify-svc/inject_json.c,
 * inject_proto.c, injection.c): every accepted form of notify.send.json and
 * notify.send, and every refusal reason with its exact sentence, since publishers see
 * those sentences in their Sb-Reply outcome.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "injection.h"
#include "switchboard.pb-c.h"

static const struct notify_limits lim = {
    .max_title_bytes = 16,
    .max_message_bytes = 32,
    .max_type_bytes = 8,
    .max_targets = 4,
};

static enum notify_reject json(const char *text, struct notify_injection *out)
{
	return notify_inject_parse_json(text, strlen(text), &lim, out);
}

/* Parse text, expect refusal why with sentence text_of_why, and a zeroed result. */
static void refused(const char *text, enum notify_reject why, const char *sentence)
{
	struct notify_injection inj;
	enum notify_reject got = json(text, &inj);
	if (got != why)
		fail_msg("%s: got %d (%s), want %d (%s)", text, got, notify_reject_text(got), why,
		         sentence);
	assert_string_equal(notify_reject_text(got), sentence);
	assert_null(inj.user_ids);
	assert_null(inj.title);
	assert_int_equal(inj.n_user_ids, 0);
}

static void test_json_single_user(void **state)
{
	(void)state;
	struct notify_injection inj;
	assert_int_equal(json("{\"user_id\":5,\"title\":\"New Notice\",\"message\":\"Exam "
	                      "schedule released\",\"notification_type\":\"notice\"}",
	                      &inj),
	                 NOTIFY_OK);
	assert_false(inj.all);
	assert_int_equal(inj.n_user_ids, 1);
	assert_int_equal(inj.user_ids[0], 5);
	assert_string_equal(inj.title, "New Notice");
	assert_string_equal(inj.message, "Exam schedule released");
	assert_string_equal(inj.type, "notice");
	notify_injection_clear(&inj);
	assert_null(inj.title);
}

static void test_json_user_list_sorted_unique(void **state)
{
	(void)state;
	struct notify_injection inj;
	assert_int_equal(json("{\"user_ids\":[9,3,9,1],\"message\":\"m\"}", &inj), NOTIFY_OK);
	assert_int_equal(inj.n_user_ids, 3);
	assert_int_equal(inj.user_ids[0], 1);
	assert_int_equal(inj.user_ids[1], 3);
	assert_int_equal(inj.user_ids[2], 9);
	assert_string_equal(inj.title, "");
	assert_string_equal(inj.type, "info");
	notify_injection_clear(&inj);
}

static void test_json_broadcast_and_defaults(void **state)
{
	(void)state;
	struct notify_injection inj;
	assert_int_equal(json("{\"all\":true,\"title\":\"t\"}", &inj), NOTIFY_OK);
	assert_true(inj.all);
	assert_int_equal(inj.n_user_ids, 0);
	assert_string_equal(inj.title, "t");
	assert_string_equal(inj.message, "");
	assert_string_equal(inj.type, "info");
	notify_injection_clear(&inj);

	/* null means absent; "all": false means absent; an empty type is the default;
	 * unknown keys are ignored; white space anywhere. */
	assert_int_equal(json(" { \"user_id\" : 7 , \"all\" : false , \"title\" : null ,"
	                      " \"message\" : \"hi\" , \"notification_type\" : \"\" ,"
	                      " \"priority\" : {\"x\":1} } ",
	                      &inj),
	                 NOTIFY_OK);
	assert_false(inj.all);
	assert_int_equal(inj.user_ids[0], 7);
	assert_string_equal(inj.title, "");
	assert_string_equal(inj.type, "info");
	notify_injection_clear(&inj);
}

static void test_json_limits_are_inclusive(void **state)
{
	(void)state;
	struct notify_injection inj;
	/* 16-byte title, 32-byte message, 8-byte type, 4 targets: all exactly at the limit;
	 * "é" is 2 bytes of UTF-8, escaped or not. */
	assert_int_equal(json("{\"user_ids\":[1,2,3,4],\"title\":\"0123456789abcd\\u00e9\","
	                      "\"message\":\"0123456789abcdef0123456789abcdef\","
	                      "\"notification_type\":\"12345678\"}",
	                      &inj),
	                 NOTIFY_OK);
	assert_int_equal(strlen(inj.title), 16);
	assert_int_equal(inj.n_user_ids, 4);
	notify_injection_clear(&inj);
	/* The largest id that fits SQLite's INTEGER. */
	assert_int_equal(json("{\"user_id\":9223372036854775807,\"title\":\"t\"}", &inj),
	                 NOTIFY_OK);
	assert_int_equal(inj.user_ids[0], (uint64_t)INT64_MAX);
	notify_injection_clear(&inj);
}

static void test_json_rejections(void **state)
{
	(void)state;
	refused("", NOTIFY_E_JSON, "invalid JSON");
	refused("{\"user_id\":1,\"title\":\"t\"", NOTIFY_E_JSON, "invalid JSON");
	refused("{\"user_id\":1,\"title\":\"t\"} trailing", NOTIFY_E_JSON, "invalid JSON");
	refused("{\"user_id\":1,\"user_id\":2,\"title\":\"t\"}", NOTIFY_E_JSON, "invalid JSON");
	refused("{\"user_id\":1,\"title\":\"a\\u0000b\"}", NOTIFY_E_JSON, "invalid JSON");
	refused("{\"user_id\":1,\"title\":\"\xff\"}", NOTIFY_E_JSON, "invalid JSON");
	refused("{\"user_id\":99999999999999999999,\"title\":\"t\"}", NOTIFY_E_JSON,
	        "invalid JSON");
	refused("[1,2]", NOTIFY_E_NOT_OBJECT, "payload must be a JSON object");
	refused("\"text\"", NOTIFY_E_NOT_OBJECT, "payload must be a JSON object");
	refused("42", NOTIFY_E_NOT_OBJECT, "payload must be a JSON object");
	refused("null", NOTIFY_E_NOT_OBJECT, "payload must be a JSON object");

	const char *target = "exactly one of user_id, user_ids or all is required";
	refused("{\"title\":\"t\"}", NOTIFY_E_TARGET, target);
	refused("{\"all\":false,\"title\":\"t\"}", NOTIFY_E_TARGET, target);
	refused("{\"user_id\":null,\"title\":\"t\"}", NOTIFY_E_TARGET, target);
	refused("{\"user_id\":1,\"user_ids\":[2],\"title\":\"t\"}", NOTIFY_E_TARGET, target);
	refused("{\"user_id\":1,\"all\":true,\"title\":\"t\"}", NOTIFY_E_TARGET, target);
	refused("{\"user_ids\":[],\"all\":true,\"title\":\"t\"}", NOTIFY_E_TARGET, target);
	refused("{\"all\":\"yes\",\"title\":\"t\"}", NOTIFY_E_ALL, "all must be true or false");
	refused("{\"all\":1,\"title\":\"t\"}", NOTIFY_E_ALL, "all must be true or false");

	const char *uid = "user_id must be a positive integer";
	refused("{\"user_id\":0,\"title\":\"t\"}", NOTIFY_E_USER_ID, uid);
	refused("{\"user_id\":-3,\"title\":\"t\"}", NOTIFY_E_USER_ID, uid);
	refused("{\"user_id\":1.5,\"title\":\"t\"}", NOTIFY_E_USER_ID, uid);
	refused("{\"user_id\":5.0,\"title\":\"t\"}", NOTIFY_E_USER_ID, uid);
	refused("{\"user_id\":\"5\",\"title\":\"t\"}", NOTIFY_E_USER_ID, uid);
	refused("{\"user_id\":true,\"title\":\"t\"}", NOTIFY_E_USER_ID, uid);
	refused("{\"user_id\":[5],\"title\":\"t\"}", NOTIFY_E_USER_ID, uid);

	const char *uids = "user_ids must be an array of positive integers";
	refused("{\"user_ids\":5,\"title\":\"t\"}", NOTIFY_E_USER_IDS, uids);
	refused("{\"user_ids\":[1,0],\"title\":\"t\"}", NOTIFY_E_USER_IDS, uids);
	refused("{\"user_ids\":[1,-2],\"title\":\"t\"}", NOTIFY_E_USER_IDS, uids);
	refused("{\"user_ids\":[1,\"2\"],\"title\":\"t\"}", NOTIFY_E_USER_IDS, uids);
	refused("{\"user_ids\":[1,null],\"title\":\"t\"}", NOTIFY_E_USER_IDS, uids);
	refused("{\"user_ids\":[],\"title\":\"t\"}", NOTIFY_E_USER_IDS_EMPTY,
	        "user_ids must not be empty");
	refused("{\"user_ids\":[1,2,3,4,5],\"title\":\"t\"}", NOTIFY_E_TOO_MANY,
	        "too many user_ids");

	refused("{\"user_id\":1,\"title\":5}", NOTIFY_E_TITLE_TYPE, "title must be a string");
	refused("{\"user_id\":1,\"title\":[\"t\"],\"message\":\"m\"}", NOTIFY_E_TITLE_TYPE,
	        "title must be a string");
	refused("{\"user_id\":1,\"message\":{}}", NOTIFY_E_MESSAGE_TYPE,
	        "message must be a string");
	refused("{\"user_id\":1,\"title\":\"t\",\"notification_type\":3}", NOTIFY_E_NTYPE_TYPE,
	        "notification_type must be a string");

	refused("{\"user_id\":1}", NOTIFY_E_EMPTY, "title or message is required");
	refused("{\"user_id\":1,\"title\":\"\",\"message\":\"\"}", NOTIFY_E_EMPTY,
	        "title or message is required");
	refused("{\"all\":true,\"title\":null,\"message\":null}", NOTIFY_E_EMPTY,
	        "title or message is required");

	refused("{\"user_id\":1,\"title\":\"0123456789abcdefX\"}", NOTIFY_E_TITLE_LONG,
	        "title is too long");
	refused("{\"user_id\":1,\"title\":\"0123456789abcde\\u00e9\"}", NOTIFY_E_TITLE_LONG,
	        "title is too long");
	refused("{\"user_id\":1,\"message\":\"0123456789abcdef0123456789abcdefX\"}",
	        NOTIFY_E_MESSAGE_LONG, "message is too long");
	refused("{\"user_id\":1,\"title\":\"t\",\"notification_type\":\"123456789\"}",
	        NOTIFY_E_NTYPE_LONG, "notification_type is too long");
}

static void test_json_oversized_refused_before_parsing(void **state)
{
	(void)state;
	size_t max = notify_limits_max_payload(&lim);
	char *big = malloc(max + 2);
	assert_non_null(big);
	/* Valid JSON padded with white space: refused on size alone. */
	memset(big, ' ', max + 1);
	memcpy(big, "{\"all\":true,\"title\":\"t\"}", 24);
	big[max + 1] = 0;
	struct notify_injection inj;
	assert_int_equal(notify_inject_parse_json(big, max + 1, &lim, &inj), NOTIFY_E_TOO_LARGE);
	assert_string_equal(notify_reject_text(NOTIFY_E_TOO_LARGE), "payload is too large");
	/* At the ceiling it is parsed. */
	assert_int_equal(notify_inject_parse_json(big, max, &lim, &inj), NOTIFY_OK);
	notify_injection_clear(&inj);
	free(big);
}

/* ---- protobuf (notify.send) ---- */

static enum notify_reject proto(const Sb__NotifyRequest *req, struct notify_injection *out)
{
	size_t n = sb__notify_request__get_packed_size(req);
	uint8_t *buf = malloc(n ? n : 1);
	assert_non_null(buf);
	sb__notify_request__pack(req, buf);
	enum notify_reject why = notify_inject_parse_proto(buf, n, &lim, out);
	free(buf);
	return why;
}

static void test_proto_forms(void **state)
{
	(void)state;
	struct notify_injection inj;
	uint64_t ids[] = {4, 2, 4};
	Sb__NotifyRequest req = SB__NOTIFY_REQUEST__INIT;
	req.n_user_ids = 3;
	req.user_ids = ids;
	req.title = "T";
	req.message = "M";
	assert_int_equal(proto(&req, &inj), NOTIFY_OK);
	assert_int_equal(inj.n_user_ids, 2);
	assert_int_equal(inj.user_ids[0], 2);
	assert_int_equal(inj.user_ids[1], 4);
	assert_string_equal(inj.type, "info");
	notify_injection_clear(&inj);

	Sb__NotifyRequest all = SB__NOTIFY_REQUEST__INIT;
	all.all = 1;
	all.message = "everyone";
	all.notification_type = "alert";
	assert_int_equal(proto(&all, &inj), NOTIFY_OK);
	assert_true(inj.all);
	assert_string_equal(inj.title, "");
	assert_string_equal(inj.type, "alert");
	notify_injection_clear(&inj);
}

static void test_proto_rejections(void **state)
{
	(void)state;
	struct notify_injection inj;
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
	assert_int_equal(notify_inject_parse_proto(junk, sizeof junk, &lim, &inj),
	                 NOTIFY_E_PROTOBUF);
	assert_string_equal(notify_reject_text(NOTIFY_E_PROTOBUF), "invalid protobuf");

	Sb__NotifyRequest req = SB__NOTIFY_REQUEST__INIT;
	req.title = "t";
	assert_int_equal(proto(&req, &inj), NOTIFY_E_TARGET); /* nobody */
	uint64_t one[] = {1};
	req.n_user_ids = 1;
	req.user_ids = one;
	req.all = 1;
	assert_int_equal(proto(&req, &inj), NOTIFY_E_TARGET); /* both */
	req.all = 0;
	uint64_t zero[] = {3, 0};
	req.n_user_ids = 2;
	req.user_ids = zero;
	assert_int_equal(proto(&req, &inj), NOTIFY_E_USER_IDS);
	uint64_t huge[] = {(uint64_t)INT64_MAX + 1};
	req.n_user_ids = 1;
	req.user_ids = huge;
	assert_int_equal(proto(&req, &inj), NOTIFY_E_USER_IDS);
	uint64_t many[] = {1, 2, 3, 4, 5};
	req.n_user_ids = 5;
	req.user_ids = many;
	assert_int_equal(proto(&req, &inj), NOTIFY_E_TOO_MANY);
	req.n_user_ids = 1;
	req.user_ids = one;
	req.title = "";
	assert_int_equal(proto(&req, &inj), NOTIFY_E_EMPTY);
	req.title = "0123456789abcdefX";
	assert_int_equal(proto(&req, &inj), NOTIFY_E_TITLE_LONG);
	req.title = "\xc3\x28"; /* a broken two-byte sequence */
	assert_int_equal(proto(&req, &inj), NOTIFY_E_TITLE_UTF8);
	req.title = "t";
	req.message = "\xed\xa0\x80"; /* a UTF-16 surrogate encoded as UTF-8 */
	assert_int_equal(proto(&req, &inj), NOTIFY_E_MESSAGE_UTF8);
	req.message = "m";
	req.notification_type = "\xc0\xaf"; /* overlong '/' */
	assert_int_equal(proto(&req, &inj), NOTIFY_E_NTYPE_UTF8);
	req.notification_type = "123456789";
	assert_int_equal(proto(&req, &inj), NOTIFY_E_NTYPE_LONG);
	assert_null(inj.title);
}

static void test_reasons_are_named(void **state)
{
	(void)state;
	for (int i = 1; i < NOTIFY_E_COUNT; i++) {
		const char *text = notify_reject_text((enum notify_reject)i);
		const char *name = notify_reject_name((enum notify_reject)i);
		assert_true(text && *text);
		assert_true(name && *name);
		assert_null(strchr(name, ' '));
		assert_null(strchr(text, '"')); /* safe inside a logfmt or label value */
		for (int j = 1; j < i; j++)
			assert_string_not_equal(name, notify_reject_name((enum notify_reject)j));
	}
	assert_string_equal(notify_reject_text(NOTIFY_E_COUNT), "unknown reason");
	assert_string_equal(notify_reject_text(NOTIFY_E_NOMEM), "out of memory");
}

static void test_utf8(void **state)
{
	(void)state;
	assert_true(notify_utf8_valid("", 0));
	assert_true(notify_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
	assert_false(notify_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 14));
	assert_false(notify_utf8_valid("\x80", 1));
	assert_false(notify_utf8_valid("\xe2\x82", 2));             /* truncated */
	assert_false(notify_utf8_valid("\xf4\x90\x80\x80", 4));     /* > U+10FFFF */
	assert_false(notify_utf8_valid("\xe0\x80\xaf", 3));         /* overlong */
	assert_false(notify_utf8_valid("\xf8\x88\x80\x80\x80", 5)); /* 5-byte form */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_single_user),
	    cmocka_unit_test(test_json_user_list_sorted_unique),
	    cmocka_unit_test(test_json_broadcast_and_defaults),
	    cmocka_unit_test(test_json_limits_are_inclusive),
	    cmocka_unit_test(test_json_rejections),
	    cmocka_unit_test(test_json_oversized_refused_before_parsing),
	    cmocka_unit_test(test_proto_forms),
	    cmocka_unit_test(test_proto_rejections),
	    cmocka_unit_test(test_reasons_are_named),
	    cmocka_unit_test(test_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
