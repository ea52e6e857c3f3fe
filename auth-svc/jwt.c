/*
 * jwt: HS256 verification, see jwt.h.
 */
#include "jwt.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "sb_util.h"

static int b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

int auth_jwt_shaped(const char *token, size_t len)
{
	if (len < 5 || len > AUTH_JWT_MAX_LEN)
		return 0;
	int dots = 0;
	size_t seg = 0;
	for (size_t i = 0; i < len; i++) {
		if (token[i] == '.') {
			if (seg == 0)
				return 0;
			dots++;
			seg = 0;
		} else if (b64url_char(token[i])) {
			seg++;
		} else {
			return 0;
		}
	}
	return dots == 2 && seg > 0;
}

/* Decode base64url (no padding) into a malloc'd buffer; NULL when invalid. */
static unsigned char *b64url_decode(const char *in, size_t len, size_t *out_len)
{
	if (len % 4 == 1)
		return NULL;
	size_t padded = (len + 3) / 4 * 4;
	char *tmp = malloc(padded + 1);
	unsigned char *out = malloc(padded / 4 * 3 + 1);
	if (!tmp || !out) {
		free(tmp);
		free(out);
		return NULL;
	}
	for (size_t i = 0; i < len; i++)
		tmp[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
	for (size_t i = len; i < padded; i++)
		tmp[i] = '=';
	tmp[padded] = 0;
	int n = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)padded);
	free(tmp);
	if (n < 0) {
		free(out);
		return NULL;
	}
	*out_len = (size_t)n - (padded - len); /* EVP_DecodeBlock counts padding as zeros */
	return out;
}

static json_t *decode_json(const char *seg, size_t len)
{
	size_t n = 0;
	unsigned char *raw = b64url_decode(seg, len, &n);
	if (!raw)
		return NULL;
	json_t *j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
	free(raw);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

const char *auth_jwt_verify(const char *secret, size_t secret_len, const char *token, size_t len,
                            int64_t now_s, uint64_t *user_id, int64_t *exp_s)
{
	if (!auth_jwt_shaped(token, len) || !secret_len)
		return "malformed";
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
	size_t signed_len = (size_t)(dot2 - token);
	const char *sig_b64 = dot2 + 1;
	size_t sig_b64_len = len - signed_len - 1;

	json_t *hdr = decode_json(token, (size_t)(dot1 - token));
	if (!hdr)
		return "malformed";
	json_t *alg = json_object_get(hdr, "alg");
	int alg_ok = json_is_string(alg) && !strcmp(json_string_value(alg), "HS256");
	json_decref(hdr);
	if (!alg_ok)
		return "unsupported algorithm";

	size_t sig_len = 0;
	unsigned char *sig = b64url_decode(sig_b64, sig_b64_len, &sig_len);
	if (!sig)
		return "malformed";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	int ok = HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)token,
	              signed_len, mac, &mac_len) != NULL &&
	         mac_len == sig_len && CRYPTO_memcmp(mac, sig, mac_len) == 0;
	free(sig);
	if (!ok)
		return "bad signature";

	json_t *claims = decode_json(dot1 + 1, signed_len - (size_t)(dot1 + 1 - token));
	if (!claims)
		return "malformed";
	const char *err = NULL;
	json_t *exp = json_object_get(claims, "exp");
	json_t *type = json_object_get(claims, "token_type");
	json_t *uid = json_object_get(claims, "user_id");
	uint64_t id = 0;
	if (!json_is_number(exp))
		err = "malformed";
	else if ((int64_t)json_number_value(exp) <= now_s)
		err = "expired";
	else if (type && (!json_is_string(type) || strcmp(json_string_value(type), "access")))
		err = "not an access token";
	else if (json_is_integer(uid) && json_integer_value(uid) > 0)
		id = (uint64_t)json_integer_value(uid);
	else if (!json_is_string(uid) || sb_parse_u64(json_string_value(uid), INT64_MAX, &id) < 0)
		err = "no user_id";
	if (!err) {
		*user_id = id;
		*exp_s = (int64_t)json_number_value(exp);
	}
	json_decref(claims);
	return err;
}
