/* Fuzz target: notification injections from any NATS client
 * (notify-svc/inject_json.c, inject_proto.c). A first byte 'P' selects
 * protobuf, anything else JSON; the rest is the payload. An accepted injection
 * must satisfy the invariants the store relies on; a refused one must hand
 * nothing out. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "injection.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct notify_limits lim = {256, 4096, NOTIFY_MAX_TYPE_BYTES, 1000};
	if (size < 1)
		return 0;
	struct notify_injection inj;
	enum notify_reject why = data[0] == 'P'
	                             ? notify_inject_parse_proto(data + 1, size - 1, &lim, &inj)
	                             : notify_inject_parse_json(data + 1, size - 1, &lim, &inj);
	if (why == NOTIFY_OK) {
		if (!inj.title || !inj.message || !inj.type || !*inj.type)
			abort();
		if (!*inj.title && !*inj.message)
			abort();
		if (strlen(inj.title) > lim.max_title_bytes ||
		    strlen(inj.message) > lim.max_message_bytes ||
		    strlen(inj.type) > lim.max_type_bytes)
			abort();
		if (inj.all ? inj.n_user_ids != 0
		            : inj.n_user_ids == 0 || inj.n_user_ids > lim.max_targets)
			abort();
		for (size_t i = 0; i < inj.n_user_ids; i++)
			if (inj.user_ids[i] == 0 || inj.user_ids[i] > (uint64_t)INT64_MAX ||
			    (i && inj.user_ids[i] <= inj.user_ids[i - 1]))
				abort();
	} else if (inj.title || inj.user_ids) {
		abort(); /* refused: nothing handed out */
	}
	notify_injection_clear(&inj);
	return 0;
}
