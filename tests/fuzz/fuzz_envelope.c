/* Fuzz target: protobuf envelopes from the bus (common/sb_bus.c). A malformed one must
 * be refused (NULL), a decoded one must re-encode. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "sb_bus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Sb__Envelope *env = sb_envelope_unpack(data, size);
	if (env) {
		uint8_t *buf;
		size_t len;
		if (sb_envelope_pack(env, &buf, &len) == 0)
			free(buf);
		sb_envelope_free(env);
	}
	return 0;
}
