/* Fuzz target: the gateway's reading of an untrusted HTTP request head before the
 * upgrade (gateway/preauth.c): header look-up and the ?token= decoder. Outputs must
 * stay NUL-terminated inside their buffers whatever the input. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "preauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *head = (const char *)data;
	char out[64] = "";
	size_t n = gw_preauth_header(head, size, "origin", out, sizeof out);
	if (n >= sizeof out || out[n] != 0)
		__builtin_trap();
	gw_preauth_header(head, size, "upgrade", out, 1);
	char tok[128] = "";
	n = gw_preauth_query_token(head, size, tok, sizeof tok);
	if (n >= sizeof tok || (n && tok[n] != 0))
		__builtin_trap();
	return 0;
}
