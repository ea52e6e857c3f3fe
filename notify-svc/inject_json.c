/*
 * inject_json: the notify.send.json parser (see injection.h for the accepted shape).
 *
 * Design: pure, so it is unit-tested and fuzzed as it is. The size ceiling is checked
 * before jansson sees a byte, so a hostile publisher cannot make the service build a
 * huge tree. Duplicate keys are refused by the parser (JSON_REJECT_DUPLICATES): with
 * two "user_id" keys there is no right answer. Values must have the exact JSON type:
 * an id is a JSON integer (5, not "5", not 5.0), so a publisher's bug surfaces as a
 * refusal with a reason instead of a notification to the wrong person.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "injection.h"

/* Absent and null are the same thing for every field. */
static json_t *field(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_null(v) ? NULL : v;
}

/* A JSON integer in 1..INT64_MAX (ids are stored as SQLite INTEGER). */
static int positive_id(const json_t *v, uint64_t *out)
{
	if (!json_is_integer(v))
		return -1;
	json_int_t i = json_integer_value(v);
	if (i < 1)
		return -1;
	*out = (uint64_t)i;
	return 0;
}

static enum notify_reject parse_targets(json_t *root, const struct notify_limits *lim,
                                        struct notify_injection *out)
{
	json_t *uid = field(root, "user_id");
	json_t *uids = field(root, "user_ids");
	json_t *all = field(root, "all");
	if (all && !json_is_boolean(all))
		return NOTIFY_E_ALL;
	int kinds = (uid != NULL) + (uids != NULL) + (all && json_is_true(all));
	if (kinds != 1)
		return NOTIFY_E_TARGET;
	if (all && json_is_true(all)) {
		out->all = 1;
		return NOTIFY_OK;
	}
	if (uid) {
		uint64_t id;
		if (positive_id(uid, &id) < 0)
			return NOTIFY_E_USER_ID;
		out->user_ids = malloc(sizeof *out->user_ids);
		if (!out->user_ids)
			return NOTIFY_E_NOMEM;
		out->user_ids[0] = id;
		out->n_user_ids = 1;
		return NOTIFY_OK;
	}
	if (!json_is_array(uids))
		return NOTIFY_E_USER_IDS;
	size_t n = json_array_size(uids);
	if (n == 0)
		return NOTIFY_E_USER_IDS_EMPTY;
	if (n > lim->max_targets)
		return NOTIFY_E_TOO_MANY;
	out->user_ids = malloc(n * sizeof *out->user_ids);
	if (!out->user_ids)
		return NOTIFY_E_NOMEM;
	for (size_t i = 0; i < n; i++)
		if (positive_id(json_array_get(uids, i), &out->user_ids[i]) < 0)
			return NOTIFY_E_USER_IDS;
	out->n_user_ids = notify_ids_normalize(out->user_ids, n);
	return NOTIFY_OK;
}

/* A string field: NULL/0 when absent, -1 when present but not a string. */
static int string_field(json_t *root, const char *key, const char **s, size_t *len)
{
	json_t *v = field(root, key);
	*s = NULL;
	*len = 0;
	if (!v)
		return 0;
	if (!json_is_string(v))
		return -1;
	*s = json_string_value(v);
	*len = json_string_length(v);
	return 0;
}

enum notify_reject notify_inject_parse_json(const void *data, size_t len,
                                            const struct notify_limits *lim,
                                            struct notify_injection *out)
{
	memset(out, 0, sizeof *out);
	if (len > notify_limits_max_payload(lim))
		return NOTIFY_E_TOO_LARGE;
	if (len == 0 || !data)
		return NOTIFY_E_JSON;
	json_error_t jerr;
	json_t *root = json_loadb(data, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return NOTIFY_E_JSON;
	enum notify_reject why = NOTIFY_OK;
	const char *title, *message, *type;
	size_t title_len, message_len, type_len;
	if (!json_is_object(root))
		why = NOTIFY_E_NOT_OBJECT;
	if (why == NOTIFY_OK)
		why = parse_targets(root, lim, out);
	if (why == NOTIFY_OK && string_field(root, "title", &title, &title_len) < 0)
		why = NOTIFY_E_TITLE_TYPE;
	if (why == NOTIFY_OK && string_field(root, "message", &message, &message_len) < 0)
		why = NOTIFY_E_MESSAGE_TYPE;
	if (why == NOTIFY_OK && string_field(root, "notification_type", &type, &type_len) < 0)
		why = NOTIFY_E_NTYPE_TYPE;
	if (why == NOTIFY_OK)
		why = notify_injection_finish(title, title_len, message, message_len, type,
		                              type_len, lim, out);
	json_decref(root);
	if (why != NOTIFY_OK)
		notify_injection_clear(out);
	return why;
}
