/*
 * frame: parse and validate one client chat frame (SPEC §2) with jansson.
 * Pure: no I/O, no globals, so it is unit-tested and fuzzed directly.
 */
#ifndef GW_FRAME_H
#define GW_FRAME_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The stable error sentences clients see (README "Errors"). */
#define GW_E_INVALID_JSON      "invalid JSON"
#define GW_E_NOT_OBJECT        "message must be a JSON object"
#define GW_E_RECEIVER_REQUIRED "receiver_id is required"
#define GW_E_RECEIVER_INVALID  "receiver_id must be a positive integer"
#define GW_E_MESSAGE_REQUIRED  "message is required"
#define GW_E_MESSAGE_TYPE      "message must be a string"
#define GW_E_MESSAGE_EMPTY     "message must not be empty"
#define GW_E_MESSAGE_TOO_LONG  "message is too long"
#define GW_E_ATTACHMENT        "attachment must be an http(s) URL or null"
#define GW_E_BINARY            "binary frames are not supported"
#define GW_E_UNKNOWN_RECEIVER  "unknown receiver"
#define GW_E_UNAVAILABLE       "chat service unavailable, try again later"
#define GW_E_STORAGE           "message could not be stored, try again later"
#define GW_E_NOTIFY_READONLY   "notification sockets do not accept messages"
#define GW_E_OVERLOADED        "too many messages in flight, slow down"
#define GW_E_RATE              "rate limit exceeded"

#define GW_MAX_ATTACHMENT_BYTES 2048

struct gw_chat_frame {
	uint64_t receiver_id;
	const char *message;    /* points into root; valid until json_decref(root) */
	size_t message_len;     /* bytes */
	const char *attachment; /* NULL when absent or null */
	size_t attachment_len;
	json_t *root;
};

/* Parse `len` bytes of a text frame. On success returns NULL and fills *out (the caller
 * owns out->root and releases it with json_decref). On failure returns one of the
 * GW_E_* sentences and leaves nothing to release. max_chars counts Unicode code points. */
const char *gw_frame_parse_chat(const char *data, size_t len, size_t max_chars,
                                struct gw_chat_frame *out);

/* Number of code points in valid UTF-8 text. */
size_t gw_utf8_chars(const char *s, size_t len);

#endif
