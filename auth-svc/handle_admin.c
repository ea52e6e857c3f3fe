/*
 * handle_admin: auth.admin (sbctl -> auth-svc, request/reply, queue "auth-svc").
 *
 *   UserAdd{user_id, display_name}  -> AdminReply{ok}            (upsert: renames)
 *   UserRemove{user_id}             -> AdminReply{ok, count}     + auth.revoked(all_of_user)
 *   TokenIssue{user_id, ttl_seconds}-> TokenIssued{token, expires_at}
 *   TokenRevoke{token} | {user_id}  -> AdminReply{ok, count}     + auth.revoked
 *
 * Failures are AdminReply{ok = false, error}: "bad request" (not an admin body, or a
 * "bad request: <detail>" for a field out of range), "no such user", "no such token",
 * "storage error". Design: auth.revoked is published before the reply, so by the time
 * the operator's command returns, every gateway has been told (NATS keeps one
 * connection's messages in order). It is published even when nothing was still live:
 * a gateway that missed the first notice gets a second chance, and closing is
 * idempotent. One line per change at info level: these are the audit trail.
 */
#include <string.h>

#include "auth_svc.h"
#include "sb_log.h"
#include "sb_msg.h"
#include "sb_subjects.h"
#include "sb_util.h"

static void reply_admin(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req, int ok,
                        const char *error, uint64_t count)
{
	Sb__AdminReply ar = SB__ADMIN_REPLY__INIT;
	Sb__Envelope rep = SB__ENVELOPE__INIT;
	ar.ok = ok != 0;
	ar.count = count;
	if (error)
		ar.error = (char *)error;
	rep.body_case = SB__ENVELOPE__BODY_ADMIN_REPLY;
	rep.admin_reply = &ar;
	auth_reply(svc, msg, req, &rep, "admin_reply_failed");
}

/* The AdminReply error text for a store status other than AUTH_OK. */
static const char *status_error(enum auth_status s, const char *not_found, const char *invalid)
{
	switch (s) {
	case AUTH_OK:
		return NULL;
	case AUTH_INVALID:
		return invalid;
	case AUTH_NOT_FOUND:
		return not_found;
	case AUTH_ERROR:
		break;
	}
	return "storage error";
}

static void publish_revoked(struct auth_svc *svc, const Sb__Envelope *req, uint64_t user_id,
                            const uint8_t *hash)
{
	Sb__Revoked rv = SB__REVOKED__INIT;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	ProtobufCBinaryData h = {SB_TOKEN_HASH_LEN, (uint8_t *)hash};
	rv.user_id = user_id;
	if (hash) {
		rv.n_token_hashes = 1;
		rv.token_hashes = &h;
	} else {
		rv.all_of_user = 1;
	}
	env.body_case = SB__ENVELOPE__BODY_REVOKED;
	env.revoked = &rv;
	env.request_id = req->request_id;
	natsStatus s = sb_bus_publish(svc->bus, SB_SUBJ_AUTH_REVOKED, NULL, &env);
	if (s != NATS_OK) {
		char rid[AUTH_RID_BUF];
		SB_ERROR("revoked_publish_failed", "rid=%s user=%llu error=\"%s\"",
		         auth_log_rid(req, rid), (unsigned long long)user_id,
		         natsStatus_GetText(s));
	}
}

static void user_add(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req)
{
	const Sb__UserAdd *a = req->user_add;
	int created = 0;
	enum auth_status s =
	    auth_store_user_put(svc->store, a->user_id, a->display_name, sb_now_ms(), &created);
	char rid[AUTH_RID_BUF];
	if (s == AUTH_OK)
		SB_INFO(created ? "user_added" : "user_renamed", "rid=%s user=%llu",
		        auth_log_rid(req, rid), (unsigned long long)a->user_id);
	reply_admin(svc, msg, req, s == AUTH_OK,
	            status_error(s, "no such user",
	                         "bad request: user id must be 1..2^63-1 and the name 1..256 bytes "
	                         "of UTF-8 without control characters"),
	            0);
}

static void user_remove(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req)
{
	uint64_t id = req->user_remove->user_id;
	uint64_t tokens = 0;
	enum auth_status s = auth_store_user_remove(svc->store, id, &tokens);
	char rid[AUTH_RID_BUF];
	if (s == AUTH_OK) {
		SB_INFO("user_removed", "rid=%s user=%llu tokens_revoked=%llu",
		        auth_log_rid(req, rid), (unsigned long long)id, (unsigned long long)tokens);
		publish_revoked(svc, req, id, NULL);
	}
	reply_admin(svc, msg, req, s == AUTH_OK, status_error(s, "no such user", "no such user"),
	            tokens);
}

static void token_issue(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req)
{
	const Sb__TokenIssue *ti = req->token_issue;
	char token[SB_TOKEN_LEN + 1];
	int64_t expires_ms = 0;
	uint8_t hash[SB_TOKEN_HASH_LEN];
	enum auth_status s = auth_store_token_issue(svc->store, ti->user_id, ti->ttl_seconds,
	                                            sb_now_ms(), token, &expires_ms, hash);
	if (s != AUTH_OK) {
		reply_admin(
		    svc, msg, req, 0,
		    status_error(s, "no such user",
		                 "bad request: ttl_seconds must be 0 (never) or 1..3153600000"),
		    0);
		return;
	}
	char rid[AUTH_RID_BUF];
	char hp[AUTH_HASH_PREFIX_BUF];
	SB_INFO("token_issued", "rid=%s user=%llu hash=%s expires_at=%lld", auth_log_rid(req, rid),
	        (unsigned long long)ti->user_id, auth_log_hash(hash, hp),
	        (long long)(expires_ms / 1000));
	Sb__TokenIssued out = SB__TOKEN_ISSUED__INIT;
	Sb__Envelope rep = SB__ENVELOPE__INIT;
	out.token = token;
	out.expires_at = expires_ms / 1000;
	rep.body_case = SB__ENVELOPE__BODY_TOKEN_ISSUED;
	rep.token_issued = &out;
	auth_reply(svc, msg, req, &rep, "admin_reply_failed");
	/* The only copy of the token leaves with the reply. */
	memset(token, 0, sizeof token);
}

static void token_revoke(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req)
{
	const Sb__TokenRevoke *tr = req->token_revoke;
	char rid[AUTH_RID_BUF];
	char hp[AUTH_HASH_PREFIX_BUF];
	uint64_t count = 0;
	enum auth_status s;
	if (tr->token && *tr->token) {
		uint8_t hash[SB_TOKEN_HASH_LEN];
		uint64_t user = 0;
		s = auth_store_token_revoke(svc->store, tr->token, strlen(tr->token), &user, hash,
		                            &count);
		if (s == AUTH_OK) {
			SB_INFO("token_revoked", "rid=%s user=%llu hash=%s was_live=%llu",
			        auth_log_rid(req, rid), (unsigned long long)user,
			        auth_log_hash(hash, hp), (unsigned long long)count);
			publish_revoked(svc, req, user, hash);
		}
		reply_admin(svc, msg, req, s == AUTH_OK,
		            status_error(s, "no such token", "no such token"), count);
	} else if (tr->user_id) {
		s = auth_store_token_revoke_user(svc->store, tr->user_id, &count);
		if (s == AUTH_OK) {
			SB_INFO("tokens_revoked", "rid=%s user=%llu count=%llu",
			        auth_log_rid(req, rid), (unsigned long long)tr->user_id,
			        (unsigned long long)count);
			publish_revoked(svc, req, tr->user_id, NULL);
		}
		reply_admin(svc, msg, req, s == AUTH_OK,
		            status_error(s, "no such user", "no such user"), count);
	} else {
		reply_admin(svc, msg, req, 0, "bad request: give a token or a user id", 0);
	}
}

static void answer(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req)
{
	Sb__Envelope__BodyCase body = req ? req->body_case : SB__ENVELOPE__BODY__NOT_SET;
	/* protobuf-c leaves the sub-message NULL only for a malformed oneof; check anyway. */
	if (body == SB__ENVELOPE__BODY_USER_ADD && req->user_add)
		user_add(svc, msg, req);
	else if (body == SB__ENVELOPE__BODY_USER_REMOVE && req->user_remove)
		user_remove(svc, msg, req);
	else if (body == SB__ENVELOPE__BODY_TOKEN_ISSUE && req->token_issue)
		token_issue(svc, msg, req);
	else if (body == SB__ENVELOPE__BODY_TOKEN_REVOKE && req->token_revoke)
		token_revoke(svc, msg, req);
	else {
		char rid[AUTH_RID_BUF];
		SB_WARN("admin_bad_request", "rid=%s body=%d", auth_log_rid(req, rid), (int)body);
		reply_admin(svc, msg, req, 0, "bad request", 0);
	}
}

void auth_handle_admin(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	struct auth_svc *svc = closure;
	Sb__Envelope *req = auth_decode(msg);
	answer(svc, msg, req);
	sb_metric_inc(&svc->admin_requests, 1);
	sb_envelope_free(req);
	sb_msg_free(msg);
}
