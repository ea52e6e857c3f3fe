/* Fuzz target: the handshake's string checks on untrusted input: the token shapes the
 * gateway accepts before asking auth-svc, the Origin allow-list match, endpoint paths
 * and the decimal id parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "sb_token.h"
#include "sb_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	if (sb_token_well_formed(s, size) && (size != SB_TOKEN_LEN || memcmp(s, "sb_", 3)))
		__builtin_trap();
	gw_auth_jwt_shaped(s, size);
	gw_auth_endpoint(s);
	gw_auth_origin_allowed("https://a.example, http://b.example:8080/,*x", s);
	gw_auth_origin_allowed(s, "https://a.example");
	uint64_t v;
	if (sb_parse_u64(s, UINT64_MAX, &v) == 0 && v == 0)
		__builtin_trap();
	int64_t secs;
	sb_parse_duration(s, &secs);
	free(s);
	return 0;
}
