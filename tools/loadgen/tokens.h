/*
 * tokens: the token file the load generator reads instead of talking to auth-svc,
 * so it stays a pure client of the public protocol. One "USER_ID TOKEN" per line
 * (what `sbctl token issue --stdin` prints, pasted next to the ids); blank lines and
 * lines starting with '#' are skipped.
 */
#ifndef LG_TOKENS_H
#define LG_TOKENS_H

#include <stddef.h>
#include <stdint.h>

struct lg_tokens {
	size_t n;
	uint64_t *uid;
	const char **token; /* point into buf */
	char *buf;
};

/* Read at most `max` entries from path. Returns 0 and sets *out, or -1 after printing
 * why on stderr. Free with lg_tokens_destroy. */
int lg_tokens_load(const char *path, size_t max, struct lg_tokens **out);

/* NULL is a no-op. */
void lg_tokens_destroy(struct lg_tokens *t);

#endif
