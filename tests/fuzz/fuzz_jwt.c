/* Fuzz target: JWT verification (auth-svc/jwt.c). Random input must never verify. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char secret[] = "fuzz-secret";
	uint64_t uid = 0;
	int64_t exp = 0;
	auth_jwt_shaped((const char *)data, size);
	const char *why =
	    auth_jwt_verify(secret, sizeof secret - 1, (const char *)data, size, 0, &uid, &exp);
	(void)why;
	return 0;
}
