/*
 * render: server -> client JSON, written straight into the frame's buffer.
 *
 * Design: every frame the server sends has a fixed shape (SPEC §2), so it is written
 * field by field, keys in the order the client guide prints them, instead of building a
 * jansson object and dumping it: at chat-max that took a third of the gateway loop's
 * time (perf: json_dumpb 21 %, the objects' mallocs, integers through vsnprintf). The
 * output is byte for byte what jansson's json_dumpb(JSON_COMPACT) gave (tests/unit/
 * test_render.c checks it against jansson); parsing what clients send stays jansson's
 * (frame.c). Two passes: measure, then write into one exact-size allocation.
 */
#include "render.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb_util.h"

/* The length of the UTF-8 sequence starting at s[0] (n bytes left), or 0 when it is not
 * valid UTF-8 (overlong, surrogate, past U+10FFFF, cut short). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return len;
}

/* Writes the escaped body of s (no quotes) at out, or only counts it when out is NULL.
 * As jansson: '"' and '\\' escaped, control characters as \b \f \n \r \t or \u00XX,
 * everything else (UTF-8 included) as is. A byte that is not valid UTF-8 becomes
 * U+FFFD (jansson refuses such a string; upstream validation keeps them out). */
static size_t escape(char *out, const char *str, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *s = (const unsigned char *)str;
	size_t w = 0;
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		const char *esc = NULL;
		char u[6];
		size_t k = 0;
		if (c == '"')
			esc = "\\\"";
		else if (c == '\\')
			esc = "\\\\";
		else if (c == '\b')
			esc = "\\b";
		else if (c == '\f')
			esc = "\\f";
		else if (c == '\n')
			esc = "\\n";
		else if (c == '\r')
			esc = "\\r";
		else if (c == '\t')
			esc = "\\t";
		else if (c < 0x20) {
			memcpy(u, "\\u00", 4);
			u[4] = hex[c >> 4];
			u[5] = hex[c & 15];
			if (out)
				memcpy(out + w, u, 6);
			w += 6;
			i++;
			continue;
		} else if (c < 0x80 || (k = utf8_seq(s + i, n - i)) != 0) {
			size_t run = k ? k : 1;
			if (out)
				memcpy(out + w, s + i, run);
			w += run;
			i += run;
			continue;
		} else {
			esc = "\xEF\xBF\xBD"; /* U+FFFD */
		}
		size_t el = strlen(esc);
		if (out)
			memcpy(out + w, esc, el);
		w += el;
		i++;
	}
	return w;
}

/* The frame being written: measured first (buf NULL), then written. */
struct writer {
	char *buf;
	size_t len;
};

static void put(struct writer *w, const char *lit, size_t n)
{
	if (w->buf)
		memcpy(w->buf + w->len, lit, n);
	w->len += n;
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

static void put_int(struct writer *w, uint64_t v)
{
	/* As json_integer: ids are json_int_t (signed 64-bit) */
	char tmp[24];
	size_t n = 0;
	int neg = (int64_t)v < 0;
	uint64_t u = neg ? 0 - v : v;
	do {
		tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (neg)
		tmp[sizeof tmp - 1 - n++] = '-';
	put(w, tmp + sizeof tmp - n, n);
}

static void put_str(struct writer *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	PUT_LIT(w, "\"");
	w->len += escape(w->buf ? w->buf + w->len : NULL, s ? s : "", n);
	PUT_LIT(w, "\"");
}

/* RFC 3339 UTC with seconds, as sb_rfc3339 ("2026-01-06T10:30:00Z"), quoted. Frames
 * of one second share the text: each thread keeps the last second it formatted. */
static void put_time(struct writer *w, int64_t ms)
{
	static _Thread_local int64_t last_sec = INT64_MIN;
	static _Thread_local char ts[32];
	static _Thread_local size_t ts_len;
	int64_t sec = ms / 1000;
	if (sec != last_sec) {
		ts_len = strlen(sb_rfc3339(ms, ts, sizeof ts));
		last_sec = sec;
	}
	PUT_LIT(w, "\"");
	put(w, ts, ts_len);
	PUT_LIT(w, "\"");
}

struct fields {
	const Sb__ChatMessage *chat;
	const Sb__ChatSent *sent;
	const Sb__Notification *note;
	const char *error;
	enum gw_kind kind; /* a delivery: reported once written */
	uint64_t id, user_id;
};

static void write_frame(struct writer *w, const struct fields *f)
{
	if (f->chat) {
		const Sb__ChatMessage *m = f->chat;
		PUT_LIT(w, "{\"type\":\"chat_message\",\"id\":");
		put_int(w, m->id);
		PUT_LIT(w, ",\"sender_id\":");
		put_int(w, m->sender_id);
		PUT_LIT(w, ",\"sender_name\":");
		put_str(w, m->sender_name);
		PUT_LIT(w, ",\"message\":");
		put_str(w, m->message);
		PUT_LIT(w, ",\"attachment\":");
		if (m->has_attachment)
			put_str(w, m->attachment);
		else
			PUT_LIT(w, "null");
		PUT_LIT(w, ",\"timestamp\":");
		put_time(w, m->timestamp_ms);
	} else if (f->sent) {
		PUT_LIT(w, "{\"type\":\"message_sent\",\"id\":");
		put_int(w, f->sent->id);
		PUT_LIT(w, ",\"receiver_id\":");
		put_int(w, f->sent->receiver_id);
		PUT_LIT(w, ",\"timestamp\":");
		put_time(w, f->sent->timestamp_ms);
	} else if (f->note) {
		const Sb__Notification *n = f->note;
		PUT_LIT(w, "{\"type\":\"notify\",\"id\":");
		put_int(w, n->id);
		PUT_LIT(w, ",\"title\":");
		put_str(w, n->title);
		PUT_LIT(w, ",\"message\":");
		put_str(w, n->message);
		PUT_LIT(w, ",\"notification_type\":");
		put_str(w, n->notification_type && *n->notification_type ? n->notification_type
		                                                         : "info");
		PUT_LIT(w, ",\"timestamp\":");
		put_time(w, n->timestamp_ms);
	} else {
		PUT_LIT(w, "{\"type\":\"error\",\"error\":");
		put_str(w, f->error);
	}
	PUT_LIT(w, "}");
}

static struct gw_buf *render(const struct fields *f)
{
	struct writer w = {NULL, 0};
	write_frame(&w, f); /* measure */
	struct gw_buf *b = malloc(sizeof *b + LWS_PRE + w.len);
	if (!b)
		return NULL;
	memset(b, 0, sizeof *b);
	b->refs = 1;
	b->kind = f->kind;
	b->id = f->id;
	b->user_id = f->user_id;
	w = (struct writer){(char *)b->data + LWS_PRE, 0};
	write_frame(&w, f);
	b->len = w.len;
	return b;
}

struct gw_buf *gw_render_chat_message(const Sb__ChatMessage *m)
{
	return render(
	    &(struct fields){.chat = m, .kind = GW_CHAT, .id = m->id, .user_id = m->receiver_id});
}

struct gw_buf *gw_render_message_sent(const Sb__ChatSent *s)
{
	return render(&(struct fields){.sent = s});
}

struct gw_buf *gw_render_error(const char *sentence)
{
	return render(&(struct fields){.error = sentence});
}

struct gw_buf *gw_render_notify(const Sb__Notification *n)
{
	return render(
	    &(struct fields){.note = n, .kind = GW_NOTIFY, .id = n->id, .user_id = n->user_id});
}

void gw_buf_ref(struct gw_buf *b)
{
	b->refs++;
}

void gw_buf_unref(struct gw_buf *b)
{
	if (b && --b->refs == 0)
		free(b);
}
