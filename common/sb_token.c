/*
 * sb_token: token generation and hashing on OpenSSL (RAND_bytes, EVP SHA-256).
 */
#include "sb_token.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

void sb_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
}

int sb_token_generate(char *out, size_t size)
{
	uint8_t raw[32];
	if (size < SB_TOKEN_LEN + 1 || RAND_bytes(raw, sizeof raw) != 1)
		return -1;
	memcpy(out, "sb_", 3);
	sb_hex(raw, sizeof raw, out + 3);
	return 0;
}

int sb_token_hash(const char *token, size_t len, uint8_t hash[SB_TOKEN_HASH_LEN])
{
	unsigned int hl = 0;
	if (EVP_Digest(token, len, hash, &hl, EVP_sha256(), NULL) != 1 || hl != SB_TOKEN_HASH_LEN)
		return -1;
	return 0;
}

int sb_token_well_formed(const char *token, size_t len)
{
	if (len != SB_TOKEN_LEN || memcmp(token, "sb_", 3) != 0)
		return 0;
	for (size_t i = 3; i < len; i++) {
		char c = token[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return 0;
	}
	return 1;
}
