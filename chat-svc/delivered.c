/*
 * delivered: chat.delivered.<p> -- delivery receipts from gateways.
 *
 * A receipt marks rows delivered so the next sync does not replay them. Receipts ride
 * the same writer queue as sends, so they share the group commit instead of paying an
 * fsync each. Only rows whose receiver is the receipt's user change: a gateway can
 * only retire its own user's messages. No reply (it is a publish); a receipt lost
 * under overload costs a replay, which gateways de-duplicate by id.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "chat_common.h"
#include "chat_store.h"
#include "chat_svc.h"
#include "chat_writer.h"
#include "sb_bus.h"
#include "sb_log.h"
#include "sb_util.h"

struct delivered_job {
	struct chat_job base;
	struct chat_partition *part;
	Sb__Envelope *env; /* owned; body_case is DELIVERED */
	size_t marked;
};

/* Writer thread, inside the batch transaction. */
static int delivered_store(struct chat_job *base, struct chat_store *st)
{
	struct delivered_job *job = (struct delivered_job *)base;
	const Sb__Delivered *d = job->env->delivered;
	return chat_store_mark_delivered(st, d->user_id, d->ids, d->n_ids, &job->marked);
}

/* Writer thread, after commit or rollback. */
static void delivered_finish(struct chat_job *base, int committed)
{
	struct delivered_job *job = (struct delivered_job *)base;
	char rid[CHAT_RID_MAX];
	SB_DEBUG("delivered", "request_id=%s user_id=%llu ids=%zu marked=%zu committed=%d",
	         chat_safe_rid(job->env->request_id, rid),
	         (unsigned long long)job->env->delivered->user_id, job->env->delivered->n_ids,
	         job->marked, committed);
	sb_envelope_free(job->env);
	free(job);
}

static const struct chat_job_ops delivered_ops = {delivered_store, delivered_finish};

/* libnats delivery thread. */
void chat_delivered_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	static _Atomic int64_t last_warn_ms;
	(void)nc;
	(void)sub;
	struct chat_partition *part = closure;
	int len = natsMsg_GetDataLength(msg);
	Sb__Envelope *env = sb_envelope_unpack(natsMsg_GetData(msg), (size_t)len);
	const char *why = NULL;
	if (!env || env->body_case != SB__ENVELOPE__BODY_DELIVERED || !env->delivered)
		why = "malformed";
	else if (env->delivered->user_id == 0 ||
	         sb_partition(env->delivered->user_id, part->svc->partitions) != part->id)
		why = "user not in this partition";
	else if (env->delivered->n_ids == 0)
		goto done; /* nothing to do */
	else if (env->delivered->n_ids > CHAT_DELIVERED_MAX_IDS)
		why = "too many ids";
	if (why) {
		if (chat_log_allow(&last_warn_ms, 1000))
			SB_WARN("delivered_ignored", "partition=%u reason=\"%s\"", part->id, why);
		goto done;
	}
	struct delivered_job *job = calloc(1, sizeof *job);
	if (!job) {
		SB_ERROR("out_of_memory", "where=chat_delivered");
		goto done;
	}
	job->base.ops = &delivered_ops;
	job->base.bytes = sizeof *job + 2 * (size_t)len;
	job->part = part;
	job->env = env;
	struct chat_job *queued = &job->base;
	if (chat_writer_submit(part->writer, &queued) < 0) {
		free(job); /* the writer logged the refusal; the rows replay on next sync */
		goto done;
	}
	env = NULL; /* owned by the queued job */
done:
	sb_envelope_free(env);
	natsMsg_Destroy(msg);
}
