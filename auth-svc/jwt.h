/*
 * jwt: HS256 JSON Web Tokens as djangorestframework-simplejwt issues them
 * ({"alg":"HS256"} header; "user_id", "exp", "token_type":"access" claims), so an
 * existing Django site can keep minting tokens. Pure (no I/O): unit-tested and fuzzed.
 *
 * Design: the algorithm is pinned (a token saying "none" or "RS256" is refused, never
 * "interpreted"), the signature is checked with OpenSSL HMAC and compared in constant
 * time before any claim is trusted, and expiry is mandatory.
 */
#ifndef AUTH_JWT_H
#define AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_JWT_MAX_LEN 4096

/* 1 when the string has the JWT shape (three base64url segments), so callers can
 * route it here instead of to the opaque-token store. */
int auth_jwt_shaped(const char *token, size_t len);

/* Verify token with the HMAC secret at time now_s (unix seconds). Returns NULL and sets
 * *user_id and *exp_s when valid, else the refusal reason: "malformed", "bad signature",
 * "unsupported algorithm", "expired", "not an access token", "no user_id". */
const char *auth_jwt_verify(const char *secret, size_t secret_len, const char *token, size_t len,
                            int64_t now_s, uint64_t *user_id, int64_t *exp_s);

#endif
