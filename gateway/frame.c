/*
 * frame: client chat frame validation. Every rule of SPEC §2 is one check here with
 * one stable sentence; the order of checks decides which sentence a frame with
 * several faults gets (receiver first, as the seed's own "receiver_id is required").
 */
#include "frame.h"

#include <string.h>
#include <strings.h>

#include "sb_util.h"

size_t gw_utf8_chars(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

static int all_space(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return 0;
	return 1;
}

static const char *parse_receiver(json_t *v, uint64_t *out)
{
	if (!v || json_is_null(v))
		return GW_E_RECEIVER_REQUIRED;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i <= 0)
			return GW_E_RECEIVER_INVALID;
		*out = (uint64_t)i;
		return NULL;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (strlen(s) != json_string_length(v) || sb_parse_u64(s, INT64_MAX, out) < 0)
			return GW_E_RECEIVER_INVALID;
		return NULL;
	}
	return GW_E_RECEIVER_INVALID;
}

static int valid_url(const char *s, size_t len)
{
	size_t scheme;
	if (len > 7 && strncasecmp(s, "http://", 7) == 0)
		scheme = 7;
	else if (len > 8 && strncasecmp(s, "https://", 8) == 0)
		scheme = 8;
	else
		return 0;
	if (len > GW_MAX_ATTACHMENT_BYTES || len == scheme)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f)
			return 0;
	}
	return 1;
}

const char *gw_frame_parse_chat(const char *data, size_t len, size_t max_chars,
                                struct gw_chat_frame *out)
{
	json_error_t jerr;
	memset(out, 0, sizeof *out);
	json_t *root = json_loadb(data, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return GW_E_INVALID_JSON;
	const char *err = NULL;
	if (!json_is_object(root)) {
		err = GW_E_NOT_OBJECT;
		goto fail;
	}
	err = parse_receiver(json_object_get(root, "receiver_id"), &out->receiver_id);
	if (err)
		goto fail;
	json_t *msg = json_object_get(root, "message");
	if (!msg) {
		err = GW_E_MESSAGE_REQUIRED;
		goto fail;
	}
	if (!json_is_string(msg)) {
		err = GW_E_MESSAGE_TYPE;
		goto fail;
	}
	out->message = json_string_value(msg);
	out->message_len = json_string_length(msg);
	if (out->message_len == 0 || all_space(out->message, out->message_len)) {
		err = GW_E_MESSAGE_EMPTY;
		goto fail;
	}
	if (gw_utf8_chars(out->message, out->message_len) > max_chars) {
		err = GW_E_MESSAGE_TOO_LONG;
		goto fail;
	}
	json_t *att = json_object_get(root, "attachment");
	if (att && !json_is_null(att)) {
		if (!json_is_string(att) ||
		    !valid_url(json_string_value(att), json_string_length(att))) {
			err = GW_E_ATTACHMENT;
			goto fail;
		}
		out->attachment = json_string_value(att);
		out->attachment_len = json_string_length(att);
	}
	out->root = root;
	return NULL;
fail:
	json_decref(root);
	memset(out, 0, sizeof *out);
	return err;
}
