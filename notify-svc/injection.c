/*
 * injection: reasons, limits and the checks both injection formats share (see
 * injection.h).
 *
 * Design: every check that is not about the wire format lives here, once, so the
 * JSON and protobuf entry points cannot drift apart. The order of the checks is part
 * of the contract (a payload with several faults reports the first): types, then
 * emptiness, then lengths, then encoding.
 */
#include "injection.h"

#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	const char *text;
} reasons[NOTIFY_E_COUNT] = {
    [NOTIFY_OK] = {"ok", ""},
    [NOTIFY_E_TOO_LARGE] = {"too_large", "payload is too large"},
    [NOTIFY_E_JSON] = {"invalid_json", "invalid JSON"},
    [NOTIFY_E_PROTOBUF] = {"invalid_protobuf", "invalid protobuf"},
    [NOTIFY_E_NOT_OBJECT] = {"not_object", "payload must be a JSON object"},
    [NOTIFY_E_TARGET] = {"target", "exactly one of user_id, user_ids or all is required"},
    [NOTIFY_E_USER_ID] = {"user_id", "user_id must be a positive integer"},
    [NOTIFY_E_USER_IDS] = {"user_ids", "user_ids must be an array of positive integers"},
    [NOTIFY_E_USER_IDS_EMPTY] = {"user_ids_empty", "user_ids must not be empty"},
    [NOTIFY_E_TOO_MANY] = {"too_many_targets", "too many user_ids"},
    [NOTIFY_E_ALL] = {"all", "all must be true or false"},
    [NOTIFY_E_TITLE_TYPE] = {"title_type", "title must be a string"},
    [NOTIFY_E_MESSAGE_TYPE] = {"message_type", "message must be a string"},
    [NOTIFY_E_NTYPE_TYPE] = {"notification_type_type", "notification_type must be a string"},
    [NOTIFY_E_EMPTY] = {"empty", "title or message is required"},
    [NOTIFY_E_TITLE_LONG] = {"title_too_long", "title is too long"},
    [NOTIFY_E_MESSAGE_LONG] = {"message_too_long", "message is too long"},
    [NOTIFY_E_NTYPE_LONG] = {"notification_type_too_long", "notification_type is too long"},
    [NOTIFY_E_TITLE_UTF8] = {"title_utf8", "title must be valid UTF-8"},
    [NOTIFY_E_MESSAGE_UTF8] = {"message_utf8", "message must be valid UTF-8"},
    [NOTIFY_E_NTYPE_UTF8] = {"notification_type_utf8", "notification_type must be valid UTF-8"},
    [NOTIFY_E_SUBJECT] = {"subject", "unsupported subject"},
};

const char *notify_reject_text(enum notify_reject why)
{
	if (why == NOTIFY_E_NOMEM)
		return "out of memory";
	if ((int)why < 0 || why >= NOTIFY_E_COUNT)
		return "unknown reason";
	return reasons[why].text;
}

const char *notify_reject_name(enum notify_reject why)
{
	if (why == NOTIFY_E_NOMEM)
		return "out_of_memory";
	if ((int)why < 0 || why >= NOTIFY_E_COUNT)
		return "unknown";
	return reasons[why].name;
}

size_t notify_limits_max_payload(const struct notify_limits *lim)
{
	/* "\uXXXX" is 6 bytes per input byte at worst; an id is at most 19 digits plus
	 * a comma and some blanks. 4 KiB covers keys, punctuation and white space. */
	return 6 * (lim->max_title_bytes + lim->max_message_bytes + lim->max_type_bytes) +
	       24 * lim->max_targets + 4096;
}

void notify_injection_clear(struct notify_injection *inj)
{
	if (!inj)
		return;
	free(inj->user_ids);
	free(inj->title);
	free(inj->message);
	free(inj->type);
	memset(inj, 0, sizeof *inj);
}

int notify_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < len) {
		unsigned c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		unsigned min, cp;
		if ((c & 0xe0) == 0xc0) {
			n = 1, min = 0x80, cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, min = 0x800, cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, min = 0x10000, cp = c & 0x07;
		} else {
			return 0;
		}
		if (len - i <= n)
			return 0;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

size_t notify_ids_normalize(uint64_t *ids, size_t n)
{
	if (n < 2)
		return n;
	qsort(ids, n, sizeof *ids, cmp_u64);
	size_t out = 1;
	for (size_t i = 1; i < n; i++)
		if (ids[i] != ids[out - 1])
			ids[out++] = ids[i];
	return out;
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		if (n)
			memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

enum notify_reject notify_injection_finish(const char *title, size_t title_len, const char *message,
                                           size_t message_len, const char *type, size_t type_len,
                                           const struct notify_limits *lim,
                                           struct notify_injection *out)
{
	if (!title)
		title = "", title_len = 0;
	if (!message)
		message = "", message_len = 0;
	if (!type || type_len == 0)
		type = NOTIFY_DEFAULT_TYPE, type_len = strlen(NOTIFY_DEFAULT_TYPE);
	if (title_len == 0 && message_len == 0)
		return NOTIFY_E_EMPTY;
	if (title_len > lim->max_title_bytes)
		return NOTIFY_E_TITLE_LONG;
	if (message_len > lim->max_message_bytes)
		return NOTIFY_E_MESSAGE_LONG;
	if (type_len > lim->max_type_bytes)
		return NOTIFY_E_NTYPE_LONG;
	/* A NUL inside would silently cut the text short in C strings and SQLite. */
	if (!notify_utf8_valid(title, title_len) || memchr(title, 0, title_len))
		return NOTIFY_E_TITLE_UTF8;
	if (!notify_utf8_valid(message, message_len) || memchr(message, 0, message_len))
		return NOTIFY_E_MESSAGE_UTF8;
	if (!notify_utf8_valid(type, type_len) || memchr(type, 0, type_len))
		return NOTIFY_E_NTYPE_UTF8;
	out->title = dup_n(title, title_len);
	out->message = dup_n(message, message_len);
	out->type = dup_n(type, type_len);
	if (!out->title || !out->message || !out->type)
		return NOTIFY_E_NOMEM; /* not the publisher's fault: retried, not refused */
	return NOTIFY_OK;
}
