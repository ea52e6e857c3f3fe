/*
 * auth_svc: what the subject handlers share: decoding, replying, and the log-safe
 * renderings of request ids and token hashes.
 */
#include "auth_svc.h"

#include <string.h>

#include "sb_log.h"

Sb__Envelope *auth_decode(natsMsg *msg)
{
	return sb_envelope_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
}

void auth_reply(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req, Sb__Envelope *reply,
                const char *event)
{
	if (req && req->request_id)
		reply->request_id = req->request_id; /* borrowed until the publish returns */
	natsStatus s = sb_bus_reply(svc->bus, msg, reply);
	if (s != NATS_OK) {
		char rid[AUTH_RID_BUF];
		SB_WARN(event, "rid=%s error=\"%s\"", auth_log_rid(req, rid),
		        natsStatus_GetText(s));
	}
}

void auth_reply_error(struct auth_svc *svc, natsMsg *msg, const Sb__Envelope *req,
                      Sb__ErrorCode code, const char *text)
{
	Sb__Error err = SB__ERROR__INIT;
	Sb__Envelope rep = SB__ENVELOPE__INIT;
	err.code = code;
	err.text = (char *)text;
	rep.body_case = SB__ENVELOPE__BODY_ERROR;
	rep.error = &err;
	auth_reply(svc, msg, req, &rep, "reply_failed");
}

const char *auth_log_rid(const Sb__Envelope *req, char buf[AUTH_RID_BUF])
{
	const char *rid = req && req->request_id ? req->request_id : "";
	size_t n = 0;
	for (; rid[n] && n < AUTH_RID_BUF - 1; n++) {
		char c = rid[n];
		int safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
		buf[n] = safe ? c : '_';
	}
	if (n == 0)
		buf[n++] = '-';
	buf[n] = 0;
	return buf;
}

const char *auth_log_hash(const uint8_t hash[SB_TOKEN_HASH_LEN], char buf[AUTH_HASH_PREFIX_BUF])
{
	sb_hex(hash, 4, buf);
	return buf;
}

void auth_metrics_init(struct auth_svc *svc)
{
	static const char verify[] = "sb_auth_verify_total";
	static const char verify_help[] = "auth.verify answers by outcome.";
	svc->verify_ok = (struct sb_metric){
	    .name = verify, .labels = "outcome=\"ok\"", .help = verify_help, .type = SB_COUNTER};
	svc->verify_refused = (struct sb_metric){.name = verify,
	                                         .labels = "outcome=\"refused\"",
	                                         .help = verify_help,
	                                         .type = SB_COUNTER};
	svc->verify_errors = (struct sb_metric){
	    .name = verify, .labels = "outcome=\"error\"", .help = verify_help, .type = SB_COUNTER};
	svc->lookups = (struct sb_metric){.name = "sb_auth_lookups_total",
	                                  .help = "auth.lookup requests answered.",
	                                  .type = SB_COUNTER};
	svc->admin_requests = (struct sb_metric){.name = "sb_auth_admin_requests_total",
	                                         .help = "auth.admin requests answered.",
	                                         .type = SB_COUNTER};
	svc->request_seconds = (struct sb_metric){.name = "sb_auth_request_seconds",
	                                          .help = "Time to answer a bus request.",
	                                          .type = SB_HISTOGRAM};
	sb_metrics_add(&svc->metrics, &svc->request_seconds);
	sb_metrics_add(&svc->metrics, &svc->admin_requests);
	sb_metrics_add(&svc->metrics, &svc->lookups);
	sb_metrics_add(&svc->metrics, &svc->verify_errors);
	sb_metrics_add(&svc->metrics, &svc->verify_refused);
	sb_metrics_add(&svc->metrics, &svc->verify_ok);
}
