/*
 * Unit tests for gateway/render.c: every frame the server sends is byte for byte what
 * jansson's json_dumpb(JSON_COMPACT) of the same object gives (the renderer before it
 * wrote frames itself), for random texts full of quotes, backslashes, control
 * characters and multi-byte UTF-8; bytes that are not UTF-8 become U+FFFD and the frame
 * stays valid JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "render.h"
#include "sb_util.h"

/* ---- the reference: the jansson objects render.c used to build ---- */

static char *dump(json_t *o, size_t *len)
{
	assert_non_null(o);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	assert_non_null(s);
	*len = strlen(s);
	return s;
}

static json_t *ts_json(int64_t ms)
{
	char ts[32];
	return json_string(sb_rfc3339(ms, ts, sizeof ts));
}

static char *ref_chat(const Sb__ChatMessage *m, size_t *len)
{
	json_t *o = json_object();
	json_object_set_new(o, "type", json_string("chat_message"));
	json_object_set_new(o, "id", json_integer((json_int_t)m->id));
	json_object_set_new(o, "sender_id", json_integer((json_int_t)m->sender_id));
	json_object_set_new(o, "sender_name", json_string(m->sender_name));
	json_object_set_new(o, "message", json_string(m->message));
	json_object_set_new(o, "attachment",
	                    m->has_attachment ? json_string(m->attachment) : json_null());
	json_object_set_new(o, "timestamp", ts_json(m->timestamp_ms));
	return dump(o, len);
}

static char *ref_sent(const Sb__ChatSent *s, size_t *len)
{
	json_t *o = json_object();
	json_object_set_new(o, "type", json_string("message_sent"));
	json_object_set_new(o, "id", json_integer((json_int_t)s->id));
	json_object_set_new(o, "receiver_id", json_integer((json_int_t)s->receiver_id));
	json_object_set_new(o, "timestamp", ts_json(s->timestamp_ms));
	return dump(o, len);
}

static char *ref_notify(const Sb__Notification *n, size_t *len)
{
	json_t *o = json_object();
	json_object_set_new(o, "type", json_string("notify"));
	json_object_set_new(o, "id", json_integer((json_int_t)n->id));
	json_object_set_new(o, "title", json_string(n->title));
	json_object_set_new(o, "message", json_string(n->message));
	json_object_set_new(o, "notification_type",
	                    json_string(*n->notification_type ? n->notification_type : "info"));
	json_object_set_new(o, "timestamp", ts_json(n->timestamp_ms));
	return dump(o, len);
}

static char *ref_error(const char *sentence, size_t *len)
{
	json_t *o = json_object();
	json_object_set_new(o, "type", json_string("error"));
	json_object_set_new(o, "error", json_string(sentence));
	return dump(o, len);
}

/* ---- inputs ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

/* A random valid UTF-8 text of up to max - 1 bytes, weighted towards what needs
 * escaping. */
static void random_text(char *out, size_t max)
{
	static const char *const pieces[] = {"\"",
	                                     "\\",
	                                     "/",
	                                     "\b",
	                                     "\f",
	                                     "\n",
	                                     "\r",
	                                     "\t",
	                                     "\x01",
	                                     "\x1f",
	                                     "\x7f",
	                                     " ",
	                                     "a",
	                                     "Z",
	                                     "0",
	                                     "{",
	                                     "}",
	                                     "\xc3\xa9",
	                                     "\xdf\xbf",
	                                     "\xe2\x82\xac",
	                                     "\xe2\x80\xa8",
	                                     "\xef\xbf\xbf",
	                                     "\xed\x9f\xbf",
	                                     "\xf0\x9f\x98\x80",
	                                     "\xf4\x8f\xbf\xbf",
	                                     "Hello!",
	                                     "\\u0000"};
	size_t n = 0, want = next() % (max / 4);
	while (n < want) {
		const char *p = pieces[next() % (sizeof pieces / sizeof *pieces)];
		size_t l = strlen(p);
		if (n + l >= max)
			break;
		memcpy(out + n, p, l);
		n += l;
	}
	out[n] = '\0';
}

static void expect_same(struct gw_buf *b, char *want, size_t want_len)
{
	assert_non_null(b);
	assert_int_equal(b->refs, 1);
	const char *got = (const char *)b->data + LWS_PRE;
	if (b->len != want_len || memcmp(got, want, want_len) != 0)
		fail_msg("rendered %.*s\n   jansson %s", (int)b->len, got, want);
	free(want);
	gw_buf_unref(b);
}

/* A delivery also carries what the receipt needs. */
static void expect_delivery(struct gw_buf *b, enum gw_kind kind, uint64_t id, uint64_t user_id,
                            char *want, size_t want_len)
{
	assert_non_null(b);
	assert_int_equal(b->kind, kind);
	assert_true(b->id == id && b->user_id == user_id);
	expect_same(b, want, want_len);
}

static uint64_t random_id(void)
{
	switch (next() % 4) {
	case 0:
		return 1;
	case 1:
		return INT64_MAX;
	case 2:
		return next();
	default:
		return ((uint64_t)next() << 31) ^ next();
	}
}

static void test_chat_message_matches_jansson(void **state)
{
	(void)state;
	char name[256], text[4096], url[512];
	for (int i = 0; i < 5000; i++) {
		random_text(name, sizeof name);
		random_text(text, sizeof text);
		random_text(url, sizeof url);
		Sb__ChatMessage m = SB__CHAT_MESSAGE__INIT;
		m.id = random_id();
		m.sender_id = random_id();
		m.receiver_id = random_id();
		m.sender_name = name;
		m.message = text;
		m.has_attachment = next() % 2;
		m.attachment = m.has_attachment ? url : NULL;
		m.timestamp_ms = (int64_t)(next() % 4000000000u) * 1000 + next() % 1000;
		size_t len;
		char *want = ref_chat(&m, &len);
		expect_delivery(gw_render_chat_message(&m), GW_CHAT, m.id, m.receiver_id, want,
		                len);
	}
}

static void test_message_sent_matches_jansson(void **state)
{
	(void)state;
	for (int i = 0; i < 2000; i++) {
		Sb__ChatSent s = SB__CHAT_SENT__INIT;
		s.id = random_id();
		s.receiver_id = random_id();
		/* seconds that change from frame to frame and stay: the timestamp cache */
		s.timestamp_ms = 1767695400000 + (int64_t)(i / 3) * 997;
		size_t len;
		char *want = ref_sent(&s, &len);
		expect_same(gw_render_message_sent(&s), want, len);
	}
}

static void test_notify_matches_jansson(void **state)
{
	(void)state;
	char title[256], text[2048], type[64];
	for (int i = 0; i < 3000; i++) {
		random_text(title, sizeof title);
		random_text(text, sizeof text);
		random_text(type, sizeof type);
		Sb__Notification n = SB__NOTIFICATION__INIT;
		n.id = random_id();
		n.user_id = next() % 3 ? random_id() : 0;
		n.title = title;
		n.message = text;
		n.notification_type = i % 4 ? type : (char *)""; /* "" renders as "info" */
		n.timestamp_ms = (int64_t)(next() % 4000000000u) * 1000;
		size_t len;
		char *want = ref_notify(&n, &len);
		expect_delivery(gw_render_notify(&n), GW_NOTIFY, n.id, n.user_id, want, len);
	}
}

static void test_error_matches_jansson(void **state)
{
	(void)state;
	const char *sentences[] = {"receiver_id is required", "invalid JSON",
	                           "attachment must be an http(s) URL or null", ""};
	for (size_t i = 0; i < sizeof sentences / sizeof *sentences; i++) {
		size_t len;
		char *want = ref_error(sentences[i], &len);
		expect_same(gw_render_error(sentences[i]), want, len);
	}
}

/* Bytes that are not UTF-8 (jansson would refuse the whole string) become U+FFFD, one
 * per bad byte, and the frame is still JSON that jansson reads back. */
static void test_invalid_utf8_becomes_replacement_characters(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"a\xff"
	     "b",
	     "a\xef\xbf\xbd"
	     "b"},
	    {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
	    {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
	    {"\xf4\x90\x80\x80",
	     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
	    {"cut \xe2\x82", "cut \xef\xbf\xbd\xef\xbf\xbd"},
	    {"\x80"
	     "ok \xc3\xa9",
	     "\xef\xbf\xbd"
	     "ok \xc3\xa9"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		Sb__ChatMessage m = SB__CHAT_MESSAGE__INIT;
		m.id = 7;
		m.sender_id = 8;
		m.sender_name = "N";
		m.message = (char *)cases[i].in;
		struct gw_buf *b = gw_render_chat_message(&m);
		assert_non_null(b);
		json_error_t err;
		json_t *o = json_loadb((const char *)b->data + LWS_PRE, b->len, 0, &err);
		if (!o)
			fail_msg("case %zu: not JSON (%s): %.*s", i, err.text, (int)b->len,
			         (const char *)b->data + LWS_PRE);
		assert_string_equal(json_string_value(json_object_get(o, "message")), cases[i].out);
		assert_true(json_is_null(json_object_get(o, "attachment")));
		json_decref(o);
		gw_buf_unref(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_chat_message_matches_jansson),
	    cmocka_unit_test(test_message_sent_matches_jansson),
	    cmocka_unit_test(test_notify_matches_jansson),
	    cmocka_unit_test(test_error_matches_jansson),
	    cmocka_unit_test(test_invalid_utf8_becomes_replacement_characters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
