/* Fuzz target: client chat frames (gateway/frame.c), the gateway's main parser of
 * untrusted input. Any input must yield either a frame or one of the error sentences. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_chat_frame f;
	const char *err = gw_frame_parse_chat((const char *)data, size, 4096, &f);
	if (!err) {
		if (f.receiver_id == 0 || !f.message || f.message_len == 0)
			__builtin_trap();
		json_decref(f.root);
	} else if (f.root) {
		__builtin_trap();
	}
	return 0;
}
