/*
 * sb_token: opaque bearer tokens. A token is "sb_" followed by 64 hex digits
 * (32 bytes from the OS's CSPRNG via OpenSSL RAND_bytes): URL-safe, so it goes into
 * a query string unescaped. Only its SHA-256 is ever stored.
 */
#ifndef SB_TOKEN_H
#define SB_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define SB_TOKEN_LEN      67 /* "sb_" + 64 hex */
#define SB_TOKEN_HASH_LEN 32

/* Write a new NUL-terminated token into out (at least SB_TOKEN_LEN + 1 bytes). 0 / -1. */
int sb_token_generate(char *out, size_t size);

/* SHA-256 of the token bytes into hash[32]. 0 / -1. */
int sb_token_hash(const char *token, size_t len, uint8_t hash[SB_TOKEN_HASH_LEN]);

/* Cheap syntactic check before any look-up: 1 when it has the token shape. */
int sb_token_well_formed(const char *token, size_t len);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void sb_hex(const uint8_t *in, size_t n, char *out);

#endif
