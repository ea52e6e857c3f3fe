/*
 * Unit tests for the bus envelope codec (common/sb_bus.c) and the rendering of server
 * frames from bus messages (gateway/render.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "render.h"
#include "sb_bus.h"
#include "sb_util.h"

static void test_roundtrip_chat_send(void **state)
{
	(void)state;
	Sb__ChatSend cs = SB__CHAT_SEND__INIT;
	cs.idempotency_key = "gw1:2:3";
	cs.sender_id = 1;
	cs.sender_name = "Alice";
	cs.receiver_id = 2;
	cs.message = "Hello \xe2\x82\xac";
	cs.attachment = "https://example.com/f.pdf";
	cs.has_attachment = 1;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	env.request_id = "req-1";
	env.body_case = SB__ENVELOPE__BODY_CHAT_SEND;
	env.chat_send = &cs;
	uint8_t *buf;
	size_t len;
	assert_int_equal(sb_envelope_pack(&env, &buf, &len), 0);
	Sb__Envelope *out = sb_envelope_unpack(buf, len);
	assert_non_null(out);
	assert_int_equal(out->body_case, SB__ENVELOPE__BODY_CHAT_SEND);
	assert_string_equal(out->request_id, "req-1");
	assert_string_equal(out->chat_send->idempotency_key, "gw1:2:3");
	assert_int_equal(out->chat_send->sender_id, 1);
	assert_int_equal(out->chat_send->receiver_id, 2);
	assert_string_equal(out->chat_send->message, "Hello \xe2\x82\xac");
	assert_true(out->chat_send->has_attachment);
	sb_envelope_free(out);
	free(buf);
}

static void test_unpack_rejects_garbage(void **state)
{
	(void)state;
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
	assert_null(sb_envelope_unpack(junk, sizeof junk));
	sb_envelope_free(NULL);
}

static void test_render_chat_message(void **state)
{
	(void)state;
	Sb__ChatMessage m = SB__CHAT_MESSAGE__INIT;
	m.id = 456;
	m.sender_id = 789;
	m.sender_name = "John \"JD\" Doe";
	m.receiver_id = 123;
	m.message = "Hello!";
	m.timestamp_ms = 1767695400000; /* 2026-01-06T10:30:00Z */
	struct gw_buf *b = gw_render_chat_message(&m);
	assert_non_null(b);
	const char *want = "{\"type\":\"chat_message\",\"id\":456,\"sender_id\":789,"
	                   "\"sender_name\":\"John \\\"JD\\\" Doe\",\"message\":\"Hello!\","
	                   "\"attachment\":null,\"timestamp\":\"2026-01-06T10:30:00Z\"}";
	assert_int_equal(b->len, strlen(want));
	assert_memory_equal(b->data + LWS_PRE, want, b->len);
	assert_int_equal(b->kind, GW_CHAT);
	assert_int_equal(b->id, 456);
	gw_buf_unref(b);
}

static void test_render_sent_and_error(void **state)
{
	(void)state;
	Sb__ChatSent s = SB__CHAT_SENT__INIT;
	s.id = 7;
	s.receiver_id = 2;
	s.timestamp_ms = 1767695400999;
	struct gw_buf *b = gw_render_message_sent(&s);
	const char *want = "{\"type\":\"message_sent\",\"id\":7,\"receiver_id\":2,"
	                   "\"timestamp\":\"2026-01-06T10:30:00Z\"}";
	assert_int_equal(b->len, strlen(want));
	assert_memory_equal(b->data + LWS_PRE, want, b->len);
	gw_buf_unref(b);
	b = gw_render_error("receiver_id is required");
	want = "{\"type\":\"error\",\"error\":\"receiver_id is required\"}";
	assert_int_equal(b->len, strlen(want));
	assert_memory_equal(b->data + LWS_PRE, want, b->len);
	gw_buf_unref(b);
}

static void test_util_parsers(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(sb_parse_u64("42", 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(sb_parse_u64("0", 100, &v), -1);
	assert_int_equal(sb_parse_u64("101", 100, &v), -1);
	assert_int_equal(sb_parse_u64("18446744073709551616", UINT64_MAX, &v), -1);
	int64_t secs;
	assert_int_equal(sb_parse_duration("7d", &secs), 0);
	assert_int_equal(secs, 7 * 86400);
	assert_int_equal(sb_parse_duration("90", &secs), 0);
	assert_int_equal(secs, 90);
	assert_int_equal(sb_parse_duration("5x", &secs), -1);
	char ts[32];
	assert_string_equal(sb_rfc3339(0, ts, sizeof ts), "1970-01-01T00:00:00Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_chat_send),
	    cmocka_unit_test(test_unpack_rejects_garbage),
	    cmocka_unit_test(test_render_chat_message),
	    cmocka_unit_test(test_render_sent_and_error),
	    cmocka_unit_test(test_util_parsers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
