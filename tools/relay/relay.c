/*
 * relay: the bare relay's callback, user table and per-socket queues (see relay.h).
 *
 * Deliberately the least work that still behaves like the protocol: a hand scan finds
 * receiver_id and the message string (copied as it came, escapes and all), one
 * snprintf builds each outgoing frame, and a socket's frames wait in a bounded FIFO
 * written one per WRITEABLE callback, as lws wants. Users and tokens live in two
 * chained hash tables.
 */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_log.h"
#include "sb_util.h"
#include "tokens.h"

#define USER_BUCKETS  (1u << 17)
#define MAX_FRAME     65536
#define MAX_TOKEN_LEN 1024

enum { KIND_CHAT = 1, KIND_NOTIFY = 2 };

struct frame {
	struct frame *next;
	size_t len;
	unsigned char data[]; /* LWS_PRE + len */
};

struct session {
	struct lws *wsi;
	struct session *next_of_user; /* the user's other chat sockets */
	struct user *user;
	int kind;
	struct frame *head, *tail;
	int64_t queued;
	char *rx;
	size_t rx_len;
};

struct user {
	uint64_t uid;
	struct user *next; /* hash chain */
	struct session *chat;
};

struct token {
	struct token *next;
	uint64_t uid;
	const char *text;
};

struct relay {
	struct user *users[USER_BUCKETS];
	struct token **tokens;
	struct token *token_pool; /* one allocation for every entry */
	size_t token_buckets;
	struct lg_tokens *file;
	int64_t max_queue;
	uint64_t next_id;
	uint64_t frames_in, frames_out, conns;
	int64_t ts_second;
	char ts[32];
};

static uint64_t hash_str(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

static uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

int relay_create(struct relay **out, const char *tokens_path, int64_t max_queue)
{
	struct relay *r = calloc(1, sizeof *r);
	if (!r)
		return -1;
	r->max_queue = max_queue;
	if (tokens_path && *tokens_path) {
		if (lg_tokens_load(tokens_path, SIZE_MAX / 2, &r->file) < 0) {
			free(r);
			return -1;
		}
		r->token_buckets = 1;
		while (r->token_buckets < 2 * r->file->n)
			r->token_buckets *= 2;
		r->tokens = calloc(r->token_buckets, sizeof *r->tokens);
		struct token *t = calloc(r->file->n ? r->file->n : 1, sizeof *t);
		r->token_pool = t;
		if (!r->tokens || !t) {
			relay_destroy(r);
			return -1;
		}
		for (size_t i = 0; i < r->file->n; i++) {
			const char *text = r->file->token[i];
			size_t b = hash_str(text, strlen(text)) & (r->token_buckets - 1);
			t[i] = (struct token){r->tokens[b], r->file->uid[i], text};
			r->tokens[b] = &t[i];
		}
	}
	*out = r;
	return 0;
}

void relay_destroy(struct relay *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < USER_BUCKETS; i++)
		for (struct user *u = r->users[i], *next; u; u = next) {
			next = u->next;
			free(u);
		}
	free(r->token_pool);
	free(r->tokens);
	lg_tokens_destroy(r->file);
	free(r);
}

size_t relay_session_size(void)
{
	return sizeof(struct session);
}

void relay_stats(const struct relay *r, uint64_t *frames_in, uint64_t *frames_out, uint64_t *conns)
{
	*frames_in = r->frames_in;
	*frames_out = r->frames_out;
	*conns = r->conns;
}

static struct user *user_get(struct relay *r, uint64_t uid, int create)
{
	size_t b = hash_u64(uid) & (USER_BUCKETS - 1);
	for (struct user *u = r->users[b]; u; u = u->next)
		if (u->uid == uid)
			return u;
	if (!create)
		return NULL;
	struct user *u = calloc(1, sizeof *u);
	if (u) {
		u->uid = uid;
		u->next = r->users[b];
		r->users[b] = u;
	}
	return u;
}

static int lookup_token(struct relay *r, const char *text, uint64_t *uid)
{
	if (!r->tokens)
		return -1;
	size_t b = hash_str(text, strlen(text)) & (r->token_buckets - 1);
	for (struct token *t = r->tokens[b]; t; t = t->next)
		if (!strcmp(t->text, text)) {
			*uid = t->uid;
			return 0;
		}
	return -1;
}

/* Who is connecting, and to which endpoint; -1 refuses the upgrade. */
static int identify(struct relay *r, struct lws *wsi, struct session *s)
{
	char path[256], arg[MAX_TOKEN_LEN + 16];
	if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0)
		return -1;
	if (!strncmp(path, "/ws/chat", 8))
		s->kind = KIND_CHAT;
	else if (!strncmp(path, "/ws/notifications", 17))
		s->kind = KIND_NOTIFY;
	else
		return -1;
	uint64_t uid = 0;
	const char *v = lws_get_urlarg_by_name(wsi, "uid=", arg, sizeof arg);
	if (v) {
		if (sb_parse_u64(v, UINT64_MAX / 2, &uid) < 0)
			return -1;
	} else {
		v = lws_get_urlarg_by_name(wsi, "token=", arg, sizeof arg);
		if (!v || lookup_token(r, v, &uid) < 0)
			return -1;
	}
	s->user = user_get(r, uid, 1);
	return s->user ? 0 : -1;
}

static void drop_session(struct session *s)
{
	if (s->user && s->kind == KIND_CHAT) {
		for (struct session **pp = &s->user->chat; *pp; pp = &(*pp)->next_of_user)
			if (*pp == s) {
				*pp = s->next_of_user;
				break;
			}
	}
	for (struct frame *f = s->head, *next; f; f = next) {
		next = f->next;
		free(f);
	}
	s->head = s->tail = NULL;
	free(s->rx);
	s->rx = NULL;
}

static const char *timestamp(struct relay *r)
{
	int64_t ms = sb_now_ms();
	if (ms / 1000 != r->ts_second) {
		r->ts_second = ms / 1000;
		sb_rfc3339(ms, r->ts, sizeof r->ts);
	}
	return r->ts;
}

/* Queue a formatted frame on s; a socket over the ceiling is closed (1008). */
static void enqueue(struct relay *r, struct session *s, const char *text, size_t len)
{
	if (s->queued >= r->max_queue) {
		static const char reason[] = "slow consumer";
		lws_close_reason(s->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)reason,
		                 sizeof reason - 1);
		lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
		return;
	}
	struct frame *f = malloc(sizeof *f + LWS_PRE + len);
	if (!f)
		return;
	f->next = NULL;
	f->len = len;
	memcpy(f->data + LWS_PRE, text, len);
	if (s->tail)
		s->tail->next = f;
	else
		s->head = f;
	s->tail = f;
	s->queued++;
	lws_callback_on_writable(s->wsi);
}

static void send_error(struct relay *r, struct session *s, const char *sentence)
{
	char buf[256];
	int n = snprintf(buf, sizeof buf, "{\"type\":\"error\",\"error\":\"%s\"}", sentence);
	enqueue(r, s, buf, (size_t)n);
}

/* The raw JSON string value after `key` (escapes kept); NULL when absent. */
static const char *string_after(const char *data, size_t len, const char *key, size_t *out_len)
{
	const char *p = memmem(data, len, key, strlen(key));
	if (!p)
		return NULL;
	const char *end = data + len;
	p += strlen(key);
	while (p < end && (*p == ' ' || *p == ':'))
		p++;
	if (p >= end || *p != '"')
		return NULL;
	const char *start = ++p;
	for (; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"') {
			*out_len = (size_t)(p - start);
			return start;
		}
	}
	return NULL;
}

static int receiver_of(const char *data, size_t len, uint64_t *uid)
{
	static const char key[] = "\"receiver_id\"";
	const char *p = memmem(data, len, key, sizeof key - 1);
	if (!p)
		return -1;
	const char *end = data + len;
	p += sizeof key - 1;
	while (p < end && (*p == ' ' || *p == ':' || *p == '"'))
		p++;
	uint64_t v = 0;
	const char *start = p;
	while (p < end && *p >= '0' && *p <= '9' && v < UINT64_MAX / 20)
		v = v * 10 + (uint64_t)(*p++ - '0');
	if (p == start || v == 0)
		return -1;
	*uid = v;
	return 0;
}

static void on_chat_frame(struct relay *r, struct session *s, const char *data, size_t len)
{
	uint64_t to;
	size_t mlen = 0;
	if (receiver_of(data, len, &to) < 0) {
		send_error(r, s, "receiver_id is required");
		return;
	}
	const char *msg = string_after(data, len, "\"message\"", &mlen);
	if (!msg) {
		send_error(r, s, "message must be a string");
		return;
	}
	const char *ts = timestamp(r);
	uint64_t id = ++r->next_id;
	size_t cap = mlen + 256;
	char stackbuf[1024];
	char *buf = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
	if (!buf)
		return;
	struct user *u = user_get(r, to, 0);
	if (u && u->chat) {
		int n = snprintf(buf, cap,
		                 "{\"type\":\"chat_message\",\"id\":%llu,\"sender_id\":%llu,"
		                 "\"sender_name\":\"User %llu\",\"message\":\"%.*s\","
		                 "\"attachment\":null,\"timestamp\":\"%s\"}",
		                 (unsigned long long)id, (unsigned long long)s->user->uid,
		                 (unsigned long long)s->user->uid, (int)mlen, msg, ts);
		for (struct session *t = u->chat; t; t = t->next_of_user)
			enqueue(r, t, buf, (size_t)n);
	}
	int n = snprintf(buf, cap,
	                 "{\"type\":\"message_sent\",\"id\":%llu,\"receiver_id\":%llu,"
	                 "\"timestamp\":\"%s\"}",
	                 (unsigned long long)id, (unsigned long long)to, ts);
	enqueue(r, s, buf, (size_t)n);
	if (buf != stackbuf)
		free(buf);
}

static int on_receive(struct relay *r, struct lws *wsi, struct session *s, const char *in,
                      size_t len)
{
	size_t remaining = lws_remaining_packet_payload(wsi);
	int complete = lws_is_final_fragment(wsi) && remaining == 0;
	const char *data = in;
	size_t dlen = len;
	if (!complete || s->rx_len) {
		if (s->rx_len + len + remaining > MAX_FRAME)
			return -1;
		char *grown = realloc(s->rx, s->rx_len + len + remaining + 1);
		if (!grown)
			return -1;
		s->rx = grown;
		memcpy(s->rx + s->rx_len, in, len);
		s->rx_len += len;
		if (!complete)
			return 0;
		data = s->rx;
		dlen = s->rx_len;
	}
	r->frames_in++;
	if (s->kind == KIND_CHAT)
		on_chat_frame(r, s, data, dlen);
	else
		send_error(r, s, "notification sockets are receive-only");
	free(s->rx);
	s->rx = NULL;
	s->rx_len = 0;
	return 0;
}

static int on_writeable(struct relay *r, struct session *s)
{
	struct frame *f = s->head;
	if (!f)
		return 0;
	s->head = f->next;
	if (!s->head)
		s->tail = NULL;
	s->queued--;
	int n = lws_write(s->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
	free(f);
	if (n < 0)
		return -1;
	r->frames_out++;
	if (s->head)
		lws_callback_on_writable(s->wsi);
	return 0;
}

int relay_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
	struct relay *r = lws_context_user(lws_get_context(wsi));
	struct session *s = user;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		memset(s, 0, sizeof *s);
		return identify(r, wsi, s);
	case LWS_CALLBACK_ESTABLISHED:
		s->wsi = wsi;
		r->conns++;
		if (s->kind == KIND_CHAT) {
			s->next_of_user = s->user->chat;
			s->user->chat = s;
		}
		break;
	case LWS_CALLBACK_RECEIVE:
		return on_receive(r, wsi, s, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return on_writeable(r, s);
	case LWS_CALLBACK_CLOSED:
		drop_session(s);
		break;
	default:
		break;
	}
	return 0;
}
