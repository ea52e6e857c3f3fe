/*
 * handle_verify: auth.verify (gateway -> auth-svc, request/reply, queue "auth-svc").
 *
 * VerifyRequest{token} -> VerifyReply{ok, user_id, display_name, token_hash, expires_at}
 * or VerifyReply{ok = false, reason}. Design: every refusal has the same shape, so the
 * gateway needs one code path; `reason` is for its logs only. A string that is not
 * token-shaped is refused before any look-up (auth_store checks the shape first), so
 * junk costs no SQLite work. A storage failure is not a refusal: it is answered with
 * Error{ERR_STORAGE} so the gateway can say "unavailable" rather than 403. The token
 * never reaches a log line; the user id and hash prefix do, at debug level.
 */
#include <string.h>

#include "auth_svc.h"
#include "jwt.h"
#include "sb_log.h"
#include "sb_msg.h"
#include "sb_util.h"

/* A simplejwt access token: signature and claims here, the user (and its display
 * name) from the store, so a removed user's JWTs stop working too. */
static enum auth_status verify_jwt(struct auth_svc *svc, const char *token, size_t len,
                                   struct auth_verdict *v)
{
	uint64_t uid = 0;
	int64_t exp_s = 0;
	const char *why = auth_jwt_verify(svc->jwt_secret, strlen(svc->jwt_secret), token, len,
	                                  sb_now_ms() / 1000, &uid, &exp_s);
	if (sb_token_hash(token, len, v->hash) < 0)
		return AUTH_ERROR;
	if (why) {
		SB_DEBUG("jwt_refused", "reason=\"%s\"", why);
		v->refusal = !strcmp(why, "expired") ? AUTH_TOKEN_EXPIRED : AUTH_TOKEN_MALFORMED;
		return AUTH_OK;
	}
	enum auth_status s = auth_store_user_get(svc->store, uid, v->name);
	if (s == AUTH_NOT_FOUND) {
		v->refusal = AUTH_TOKEN_UNKNOWN;
		return AUTH_OK;
	}
	if (s != AUTH_OK)
		return s;
	v->refusal = AUTH_TOKEN_VALID;
	v->user_id = uid;
	v->expires_ms = exp_s * 1000;
	return AUTH_OK;
}

static void answer(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req)
{
	struct auth_verdict v;
	enum auth_status s = AUTH_OK;
	char rid[AUTH_RID_BUF];
	char hp[AUTH_HASH_PREFIX_BUF];

	memset(&v, 0, sizeof v);
	v.refusal = AUTH_TOKEN_MALFORMED;
	if (req && req->body_case == SB__ENVELOPE__BODY_VERIFY_REQUEST && req->verify_request) {
		const char *token = req->verify_request->token ? req->verify_request->token : "";
		size_t len = strlen(token);
		if (*svc->jwt_secret && auth_jwt_shaped(token, len))
			s = verify_jwt(svc, token, len, &v);
		else
			s = auth_store_token_verify(svc->store, token, len, sb_now_ms(), &v);
	}
	if (s != AUTH_OK) {
		SB_ERROR("verify_failed", "rid=%s error=storage", auth_log_rid(req, rid));
		auth_reply_error(svc, msg, req, SB__ERROR_CODE__ERR_STORAGE, "storage error");
		sb_metric_inc(&svc->verify_errors, 1);
		return;
	}

	Sb__VerifyReply vr = SB__VERIFY_REPLY__INIT;
	Sb__Envelope rep = SB__ENVELOPE__INIT;
	rep.body_case = SB__ENVELOPE__BODY_VERIFY_REPLY;
	rep.verify_reply = &vr;
	vr.ok = v.refusal == AUTH_TOKEN_VALID;
	vr.reason = (char *)auth_refusal_reason(v.refusal);
	if (vr.ok) {
		vr.user_id = v.user_id;
		vr.display_name = v.name;
		vr.token_hash.data = v.hash;
		vr.token_hash.len = sizeof v.hash;
		vr.expires_at = v.expires_ms / 1000;
	}
	if (v.refusal == AUTH_TOKEN_MALFORMED)
		SB_DEBUG("verify", "rid=%s ok=0 reason=malformed", auth_log_rid(req, rid));
	else
		SB_DEBUG("verify", "rid=%s ok=%d user=%llu hash=%s reason=\"%s\"",
		         auth_log_rid(req, rid), vr.ok ? 1 : 0, (unsigned long long)v.user_id,
		         auth_log_hash(v.hash, hp), vr.reason);
	auth_reply(svc, msg, req, &rep, "verify_reply_failed");
	sb_metric_inc(vr.ok ? &svc->verify_ok : &svc->verify_refused, 1);
}

void auth_handle_verify(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	struct auth_svc *svc = closure;
	int64_t t0 = sb_mono_us();
	Sb__Envelope *req = auth_decode(msg);
	answer(svc, msg, req);
	sb_metric_observe_us(&svc->request_seconds, (uint64_t)(sb_mono_us() - t0));
	sb_envelope_free(req);
	sb_msg_free(msg);
}
