/*
 * inject_proto: the notify.send parser: a bare serialized sb.NotifyRequest.
 *
 * Design: pure, like inject_json.c, and ending in the same shared checks. Proto3 has
 * no "absent" for scalars, so the target rule reads: user_ids non-empty XOR all.
 * The size ceiling is applied before protobuf-c allocates anything.
 */
#include <stdlib.h>
#include <string.h>

#include "injection.h"
#include "switchboard.pb-c.h"

static size_t len_of(const char *s)
{
	return s ? strlen(s) : 0;
}

enum notify_reject notify_inject_parse_proto(const void *data, size_t len,
                                             const struct notify_limits *lim,
                                             struct notify_injection *out)
{
	memset(out, 0, sizeof *out);
	if (len > notify_limits_max_payload(lim))
		return NOTIFY_E_TOO_LARGE;
	Sb__NotifyRequest *req = sb__notify_request__unpack(NULL, len, data);
	if (!req)
		return NOTIFY_E_PROTOBUF;
	enum notify_reject why = NOTIFY_OK;
	if ((req->n_user_ids > 0) + (req->all != 0) != 1)
		why = NOTIFY_E_TARGET;
	else if (req->n_user_ids > lim->max_targets)
		why = NOTIFY_E_TOO_MANY;
	for (size_t i = 0; why == NOTIFY_OK && i < req->n_user_ids; i++)
		if (req->user_ids[i] < 1 || req->user_ids[i] > (uint64_t)INT64_MAX)
			why = NOTIFY_E_USER_IDS;
	if (why == NOTIFY_OK && req->n_user_ids > 0) {
		out->user_ids = malloc(req->n_user_ids * sizeof *out->user_ids);
		if (!out->user_ids) {
			why = NOTIFY_E_NOMEM;
		} else {
			memcpy(out->user_ids, req->user_ids,
			       req->n_user_ids * sizeof *out->user_ids);
			out->n_user_ids = notify_ids_normalize(out->user_ids, req->n_user_ids);
		}
	}
	out->all = req->all != 0;
	if (why == NOTIFY_OK)
		why = notify_injection_finish(req->title, len_of(req->title), req->message,
		                              len_of(req->message), req->notification_type,
		                              len_of(req->notification_type), lim, out);
	sb__notify_request__free_unpacked(req, NULL);
	if (why != NOTIFY_OK)
		notify_injection_clear(out);
	return why;
}
