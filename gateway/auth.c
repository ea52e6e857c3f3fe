/*
 * auth: origin and token checks before the upgrade, revocation after. See auth.h.
 */
#include "auth.h"

#include <stdlib.h>
#include <string.h>

#include "busloop.h"
#include "conn.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_token.h"
#include "sb_util.h"
#include "users.h"

int gw_auth_endpoint(const char *path)
{
	if (!strcmp(path, "/ws/chat/") || !strcmp(path, "/ws/chat"))
		return GW_CHAT;
	if (!strcmp(path, "/ws/notifications/") || !strcmp(path, "/ws/notifications"))
		return GW_NOTIFY;
	return 0;
}

int gw_auth_origin_allowed(const char *list, const char *origin)
{
	if (!list || !*list || !origin)
		return 1;
	size_t olen = strlen(origin);
	while (olen && origin[olen - 1] == '/')
		olen--;
	const char *p = list;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *end = p;
		while (*end && *end != ',')
			end++;
		size_t len = (size_t)(end - p);
		while (len && (p[len - 1] == ' ' || p[len - 1] == '/'))
			len--;
		if (len && (len == olen && !strncasecmp(p, origin, len)))
			return 1;
		if (len == 1 && *p == '*')
			return 1;
		p = end;
	}
	return 0;
}

int gw_auth_jwt_shaped(const char *t, size_t len)
{
	int dots = 0;
	for (size_t i = 0; i < len; i++) {
		char c = t[i];
		if (c == '.')
			dots++;
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		           (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return dots == 2 && len >= 5;
}

/* Copy the value of ?token= into buf; returns its length, 0 when absent or empty. */
static size_t query_token(struct lws *wsi, char *buf, size_t size)
{
	char frag[GW_MAX_TOKEN + 8];
	for (int n = 0; n < 32; n++) {
		int len = lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, n);
		if (len < 0)
			break;
		if (len > 6 && !strncmp(frag, "token=", 6)) {
			size_t tl = (size_t)len - 6;
			if (tl >= size)
				return 0;
			memcpy(buf, frag + 6, tl);
			buf[tl] = 0;
			return tl;
		}
	}
	return 0;
}

int gw_auth_precheck(struct gw *gw, const char *path, const char *origin, const char *token,
                     size_t tlen)
{
	if (gw->draining)
		return 503;
	if (!gw_auth_origin_allowed(gw->cfg.allowed_origins, origin)) {
		gw->m.conns_refused_origin++;
		SB_INFO("refused", "reason=origin endpoint=%s", path);
		return 403;
	}
	if (!tlen || !(sb_token_well_formed(token, tlen) || gw_auth_jwt_shaped(token, tlen))) {
		gw->m.conns_refused_auth++;
		SB_INFO("refused", "reason=%s endpoint=%s", tlen ? "malformed_token" : "no_token",
		        path);
		return 403;
	}
	if (!gw_bus_up(gw) || sb_mono_ms() < gw->auth_down_until_ms) {
		gw->m.conns_refused_unavailable++;
		return 503;
	}
	return 0;
}

int gw_auth_verdict(struct gw *gw, const Sb__Envelope *reply, enum gw_kind kind, const char *path,
                    struct gw_conn *c)
{
	if (!reply) {
		gw->auth_down_until_ms = sb_mono_ms() + 1000;
		gw->m.conns_refused_unavailable++;
		char bus[128];
		gw_busloop_describe(gw, bus, sizeof bus);
		SB_WARN("auth_unavailable", "msg=\"auth-svc did not answer\" endpoint=%s %s", path,
		        bus);
		return 503;
	}
	if (reply->body_case == SB__ENVELOPE__BODY_ERROR) {
		/* auth-svc could not look (storage): not the client's fault. */
		gw->m.conns_refused_unavailable++;
		SB_WARN("auth_error", "text=\"%s\"", reply->error->text);
		return 503;
	}
	if (reply->body_case == SB__ENVELOPE__BODY_VERIFY_REPLY && reply->verify_reply->ok &&
	    reply->verify_reply->user_id > 0) {
		const Sb__VerifyReply *v = reply->verify_reply;
		c->kind = kind;
		c->user_id = v->user_id;
		c->user_name = strdup(v->display_name);
		if (v->token_hash.len == sizeof c->token_hash)
			memcpy(c->token_hash, v->token_hash.data, sizeof c->token_hash);
		return c->user_name ? 0 : 503;
	}
	gw->m.conns_refused_auth++;
	SB_INFO("refused", "reason=\"%s\" endpoint=%s",
	        reply->body_case == SB__ENVELOPE__BODY_VERIFY_REPLY ? reply->verify_reply->reason
	                                                            : "bad reply",
	        path);
	return 403;
}

int gw_auth_check(struct gw *gw, struct lws *wsi, struct gw_conn *c)
{
	char path[128];
	if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0)
		return 404;
	int kind = gw_auth_endpoint(path);
	if (!kind)
		return 404;
	char origin[256];
	int olen = lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN);
	char token[GW_MAX_TOKEN + 1];
	size_t tlen = query_token(wsi, token, sizeof token);
	int status = gw_auth_precheck(gw, path, olen > 0 ? origin : NULL, token, tlen);
	if (status)
		return status;
	Sb__VerifyRequest vr = SB__VERIFY_REQUEST__INIT;
	vr.token = token;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	env.body_case = SB__ENVELOPE__BODY_VERIFY_REQUEST;
	env.verify_request = &vr;
	Sb__Envelope *reply = NULL;
	natsStatus s = sb_bus_request(gw->bus, SB_SUBJ_AUTH_VERIFY, &env,
	                              (int)gw->cfg.auth_timeout_ms, &reply);
	memset(token, 0, sizeof token);
	status = gw_auth_verdict(gw, s == NATS_OK ? reply : NULL, (enum gw_kind)kind, path, c);
	sb_envelope_free(reply);
	return status;
}

struct revoke_match {
	const Sb__Revoked *r;
	int closed;
};

static void maybe_close(struct gw *gw, struct gw_conn *c, void *arg)
{
	(void)gw;
	struct revoke_match *m = arg;
	int hit = m->r->all_of_user && m->r->user_id == c->user_id;
	for (size_t i = 0; !hit && i < m->r->n_token_hashes; i++)
		hit = m->r->token_hashes[i].len == sizeof c->token_hash &&
		      !memcmp(m->r->token_hashes[i].data, c->token_hash, sizeof c->token_hash);
	if (hit) {
		gw_conn_cut(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "token revoked");
		m->closed++;
	}
}

void gw_auth_on_revoked(struct gw *gw, natsMsg *msg)
{
	Sb__Envelope *env =
	    sb_envelope_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	if (env && env->body_case == SB__ENVELOPE__BODY_REVOKED) {
		struct revoke_match m = {env->revoked, 0};
		gw_users_foreach_conn(gw, maybe_close, &m);
		if (m.closed)
			SB_INFO("revoked_closed", "user=%llu sockets=%d",
			        (unsigned long long)env->revoked->user_id, m.closed);
	}
	sb_envelope_free(env);
}
