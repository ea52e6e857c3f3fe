/*
 * handle_lookup: auth.lookup (chat-svc -> auth-svc, request/reply, queue "auth-svc").
 *
 * UserLookup{user_id} -> UserInfo{found, user_id, display_name}. Design: "no such user"
 * is an answer (found = false), not an error; a request that is not a UserLookup is
 * answered Error{ERR_BAD_REQUEST} and a storage failure Error{ERR_STORAGE}, so a caller
 * can tell "unknown receiver" from "ask again later".
 */
#include "auth_svc.h"
#include "sb_log.h"
#include "sb_msg.h"

static void answer(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req)
{
	char rid[AUTH_RID_BUF];
	if (!req || req->body_case != SB__ENVELOPE__BODY_USER_LOOKUP || !req->user_lookup) {
		SB_WARN("lookup_bad_request", "rid=%s", auth_log_rid(req, rid));
		auth_reply_error(svc, msg, req, SB__ERROR_CODE__ERR_BAD_REQUEST, "bad request");
		return;
	}
	uint64_t id = req->user_lookup->user_id;
	char name[AUTH_NAME_MAX + 1] = "";
	enum auth_status s = auth_store_user_get(svc->store, id, name);
	if (s == AUTH_ERROR) {
		SB_ERROR("lookup_failed", "rid=%s user=%llu error=storage", auth_log_rid(req, rid),
		         (unsigned long long)id);
		auth_reply_error(svc, msg, req, SB__ERROR_CODE__ERR_STORAGE, "storage error");
		return;
	}
	Sb__UserInfo info = SB__USER_INFO__INIT;
	Sb__Envelope rep = SB__ENVELOPE__INIT;
	rep.body_case = SB__ENVELOPE__BODY_USER_INFO;
	rep.user_info = &info;
	info.found = s == AUTH_OK;
	info.user_id = id;
	if (info.found)
		info.display_name = name;
	SB_DEBUG("lookup", "rid=%s user=%llu found=%d", auth_log_rid(req, rid),
	         (unsigned long long)id, info.found ? 1 : 0);
	auth_reply(svc, msg, req, &rep, "lookup_reply_failed");
}

void auth_handle_lookup(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	struct auth_svc *svc = closure;
	Sb__Envelope *req = auth_decode(msg);
	answer(svc, msg, req);
	sb_metric_inc(&svc->lookups, 1);
	sb_envelope_free(req);
	sb_msg_free(msg);
}
