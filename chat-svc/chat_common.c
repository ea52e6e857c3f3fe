/*
 * chat_common: helpers shared by the subject handlers (see chat_common.h).
 */
#include "chat_common.h"
#include "chat_svc.h"

#include "sb_bus.h"
#include "sb_log.h"
#include "sb_util.h"

const char *chat_safe_rid(const char *rid, char buf[CHAT_RID_MAX])
{
	size_t n = 0;
	for (const char *p = rid; p && *p && n < CHAT_RID_MAX - 1; p++) {
		char c = *p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '_' || c == ':' || c == '-')
			buf[n++] = c;
	}
	if (n == 0)
		buf[n++] = '-';
	buf[n] = 0;
	return buf;
}

void chat_reply_error(struct sb_bus *bus, const char *reply, const char *request_id,
                      Sb__ErrorCode code, const char *text)
{
	if (!reply || !*reply)
		return;
	Sb__Error err = SB__ERROR__INIT;
	err.code = code;
	err.text = (char *)text;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	if (request_id)
		env.request_id = (char *)request_id;
	env.body_case = SB__ENVELOPE__BODY_ERROR;
	env.error = &err;
	natsStatus s = sb_bus_publish(bus, reply, NULL, &env);
	if (s != NATS_OK) {
		char rid[CHAT_RID_MAX];
		SB_WARN("reply_failed", "request_id=%s error=\"%s\"",
		        chat_safe_rid(request_id, rid), natsStatus_GetText(s));
	}
}

int chat_log_allow(_Atomic int64_t *last, int64_t interval_ms)
{
	int64_t now = sb_mono_ms();
	int64_t prev = atomic_load(last);
	if (prev != 0 && now - prev < interval_ms)
		return 0;
	return atomic_compare_exchange_strong(last, &prev, now);
}

void chat_metrics_init(struct chat_svc *svc)
{
	svc->acked = (struct sb_metric){.name = "sb_chat_messages_acked_total",
	                                .help = "Messages stored and acknowledged.",
	                                .type = SB_COUNTER};
	svc->send_errors = (struct sb_metric){.name = "sb_chat_send_errors_total",
	                                      .help = "Sends refused (nothing stored).",
	                                      .type = SB_COUNTER};
	svc->synced = (struct sb_metric){.name = "sb_chat_backlog_messages_total",
	                                 .help = "Messages served by chat.sync (backlog replay).",
	                                 .type = SB_COUNTER};
	svc->parked = (struct sb_metric){
	    .name = "sb_chat_sends_parked_total",
	    .help = "Sends that waited, without holding up others, for their receiver's first "
	            "auth look-up.",
	    .type = SB_COUNTER};
	svc->commit_seconds = (struct sb_metric){.name = "sb_chat_commit_seconds",
	                                         .help = "SQLite group-commit transaction time "
	                                                 "(commits that fsync the WAL).",
	                                         .type = SB_HISTOGRAM};
	svc->unsynced_commits = (struct sb_metric){
	    .name = "sb_chat_unsynced_commits_total",
	    .help = "Commits of delivery receipts alone, which leave the fsync to the next "
	            "commit of a message.",
	    .type = SB_COUNTER};
	svc->checkpoint_bg_seconds = (struct sb_metric){
	    .name = "sb_chat_checkpoint_seconds",
	    .labels = "by=\"background\"",
	    .help = "WAL checkpoint time: the background thread's, the writer's short ones.",
	    .type = SB_HISTOGRAM};
	svc->checkpoint_writer_seconds = svc->checkpoint_bg_seconds;
	svc->checkpoint_writer_seconds.labels = "by=\"writer\"";
	sb_metrics_add(&svc->metrics, &svc->checkpoint_writer_seconds);
	sb_metrics_add(&svc->metrics, &svc->checkpoint_bg_seconds);
	sb_metrics_add(&svc->metrics, &svc->commit_seconds);
	sb_metrics_add(&svc->metrics, &svc->unsynced_commits);
	sb_metrics_add(&svc->metrics, &svc->synced);
	sb_metrics_add(&svc->metrics, &svc->parked);
	sb_metrics_add(&svc->metrics, &svc->send_errors);
	sb_metrics_add(&svc->metrics, &svc->acked);
}
