/*
 * injection: what a notification injection is once it has been read off the bus, why
 * one can be refused, and the two parsers that produce it (notify.send.json ->
 * inject_json.c, notify.send -> inject_proto.c).
 *
 * Design: the parsers are pure functions of (bytes, limits): no I/O, no clock, no
 * global state, so they are unit-tested exhaustively and fuzzed as they are. Both
 * wire formats end in the same checks (notify_injection_finish), so a protobuf and a
 * JSON injection with the same fields are accepted or refused alike, with the same
 * reason. Reasons are an enum (a per-reason counter is an array index) with one
 * stable sentence each: publishers see that sentence in their Sb-Reply outcome.
 */
#ifndef NOTIFY_INJECTION_H
#define NOTIFY_INJECTION_H

#include <stddef.h>
#include <stdint.h>

/* Why an injection was refused. NOTIFY_OK (0) means it was not. Append only: the
 * values index counters, the sentences are an interface. */
enum notify_reject {
	NOTIFY_E_NOMEM = -1, /* not a refusal: out of memory, try the message again later */
	NOTIFY_OK = 0,
	NOTIFY_E_TOO_LARGE,      /* "payload is too large" */
	NOTIFY_E_JSON,           /* "invalid JSON" */
	NOTIFY_E_PROTOBUF,       /* "invalid protobuf" */
	NOTIFY_E_NOT_OBJECT,     /* "payload must be a JSON object" */
	NOTIFY_E_TARGET,         /* "exactly one of user_id, user_ids or all is required" */
	NOTIFY_E_USER_ID,        /* "user_id must be a positive integer" */
	NOTIFY_E_USER_IDS,       /* "user_ids must be an array of positive integers" */
	NOTIFY_E_USER_IDS_EMPTY, /* "user_ids must not be empty" */
	NOTIFY_E_TOO_MANY,       /* "too many user_ids" */
	NOTIFY_E_ALL,            /* "all must be true or false" */
	NOTIFY_E_TITLE_TYPE,     /* "title must be a string" */
	NOTIFY_E_MESSAGE_TYPE,   /* "message must be a string" */
	NOTIFY_E_NTYPE_TYPE,     /* "notification_type must be a string" */
	NOTIFY_E_EMPTY,          /* "title or message is required" */
	NOTIFY_E_TITLE_LONG,     /* "title is too long" */
	NOTIFY_E_MESSAGE_LONG,   /* "message is too long" */
	NOTIFY_E_NTYPE_LONG,     /* "notification_type is too long" */
	NOTIFY_E_TITLE_UTF8,     /* "title must be valid UTF-8" */
	NOTIFY_E_MESSAGE_UTF8,   /* "message must be valid UTF-8" */
	NOTIFY_E_NTYPE_UTF8,     /* "notification_type must be valid UTF-8" */
	NOTIFY_E_SUBJECT,        /* "unsupported subject" */
	NOTIFY_E_COUNT
};

/* The stable sentence for a reason ("" for NOTIFY_OK, "out of memory" for
 * NOTIFY_E_NOMEM, "unknown reason" out of range). */
const char *notify_reject_text(enum notify_reject why);

/* A short machine name for a reason ("invalid_json"), for log fields and metrics. */
const char *notify_reject_name(enum notify_reject why);

/* Ceilings an injection must stay under (bytes are UTF-8 bytes). */
struct notify_limits {
	size_t max_title_bytes;   /* e.g. 256 */
	size_t max_message_bytes; /* e.g. 4096 */
	size_t max_type_bytes;    /* e.g. 64 */
	size_t max_targets;       /* user ids per injection, e.g. 1000 */
};

#define NOTIFY_DEFAULT_TYPE   "info"
#define NOTIFY_MAX_TYPE_BYTES 64

/* The largest payload worth parsing under lim: every string fully \u-escaped plus
 * the longest user id list, with room for keys and white space. Anything longer is
 * refused with NOTIFY_E_TOO_LARGE before it is parsed. */
size_t notify_limits_max_payload(const struct notify_limits *lim);

/* An accepted injection. Owns everything it points to (notify_injection_clear). */
struct notify_injection {
	int all;            /* 1: a broadcast, user_ids is empty */
	uint64_t *user_ids; /* ascending, no duplicates, each in 1..INT64_MAX */
	size_t n_user_ids;
	char *title;   /* never NULL; "" when absent */
	char *message; /* never NULL; "" when absent */
	char *type;    /* never NULL; NOTIFY_DEFAULT_TYPE when absent or empty */
};

/* Free what inj owns and zero it. Safe on a zeroed or already-cleared struct. */
void notify_injection_clear(struct notify_injection *inj);

/* Parse a notify.send.json payload:
 *   {"user_id": N} | {"user_ids": [N, ...]} | {"all": true}   (exactly one)
 *   "title": string, "message": string (at least one non-empty),
 *   "notification_type": string (optional, default "info").
 * null counts as absent; "all": false counts as absent; unknown keys are ignored
 * (forward compatibility); duplicate keys are invalid JSON. Returns NOTIFY_OK and
 * fills *out (caller clears it), or a reason with *out zeroed. Pure; any thread. */
enum notify_reject notify_inject_parse_json(const void *data, size_t len,
                                            const struct notify_limits *lim,
                                            struct notify_injection *out);

/* Parse a notify.send payload: a bare serialized sb.NotifyRequest (not an Envelope).
 * Same rules and reasons as JSON (user_ids must be non-empty unless all is set).
 * Returns NOTIFY_OK and fills *out, or a reason with *out zeroed. Pure; any thread. */
enum notify_reject notify_inject_parse_proto(const void *data, size_t len,
                                             const struct notify_limits *lim,
                                             struct notify_injection *out);

/* ---- shared by the two parsers (injection.c) ---- */

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int notify_utf8_valid(const char *s, size_t len);

/* Sort and de-duplicate ids in place; returns the new count. */
size_t notify_ids_normalize(uint64_t *ids, size_t n);

/* The checks both formats share, on fields already known to be strings (or NULL for
 * absent): at least one of title/message non-empty, lengths, UTF-8; then takes
 * copies into out (type defaulted). Returns NOTIFY_OK, a reason, or NOTIFY_E_NOMEM;
 * on failure the caller clears out. */
enum notify_reject notify_injection_finish(const char *title, size_t title_len, const char *message,
                                           size_t message_len, const char *type, size_t type_len,
                                           const struct notify_limits *lim,
                                           struct notify_injection *out);

#endif
