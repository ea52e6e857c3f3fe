/*
 * delivered: chat.delivered.<p> -- delivery receipts from gateways.
 *
 * A receipt marks rows delivered so the next sync does not replay them. It comes as
 * a Delivered (one user) or, from current gateways, a DeliveredBatch (every user a
 * gateway wrote to in one flush interval): one job, one pass through the writer.
 * Receipts ride the same writer queue as sends, so they share the group commit
 * instead of paying an fsync each. Only rows whose receiver is the receipt's user change: a gateway
 * can only retire its own user's messages. No reply (it is a publish); a receipt lost under
 * overload costs a replay, which gateways de-duplicate by id.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "chat_common.h"
#include "chat_store.h"
#include "chat_svc.h"
#include "chat_writer.h"
#include "sb_bus.h"
#include "sb_log.h"
#include "sb_msg.h"
#include "sb_util.h"

struct delivered_job {
	struct chat_job base;
	struct chat_partition *part;
	Sb__Envelope *env;       /* owned; body DELIVERED or DELIVERED_BATCH */
	Sb__Delivered *const *d; /* the receipts in env, each validated */
	size_t n;
	size_t ids, marked;
};

/* Writer thread, inside the batch transaction. */
static int delivered_store(struct chat_job *base, struct chat_store *st)
{
	struct delivered_job *job = (struct delivered_job *)base;
	for (size_t i = 0; i < job->n; i++) {
		size_t marked = 0;
		const Sb__Delivered *d = job->d[i];
		if (chat_store_mark_delivered(st, d->user_id, d->ids, d->n_ids, &marked) < 0)
			return -1;
		job->marked += marked;
	}
	return 0;
}

/* Writer thread, after commit or rollback. */
static void delivered_finish(struct chat_job *base, int committed)
{
	struct delivered_job *job = (struct delivered_job *)base;
	char rid[CHAT_RID_MAX];
	SB_DEBUG("delivered", "request_id=%s users=%zu ids=%zu marked=%zu committed=%d",
	         chat_safe_rid(job->env->request_id, rid), job->n, job->ids, job->marked,
	         committed);
	sb_envelope_free(job->env);
	free(job);
}

static const struct chat_job_ops delivered_ops = {delivered_store, delivered_finish, 0};

/* NULL, or why the receipt cannot be this partition's. */
static const char *receipt_invalid(const struct chat_partition *part, const Sb__Delivered *d)
{
	if (!d || d->user_id == 0 || sb_partition(d->user_id, part->svc->partitions) != part->id)
		return "user not in this partition";
	return NULL;
}

/*
 * The receipts of env, validated: a Delivered (one user) or a DeliveredBatch (one
 * per user, what a gateway wrote in one flush). NULL with *why set when the message
 * is refused as a whole; a batch with a receipt of another partition is refused, as
 * no correct gateway sends one.
 */
static Sb__Delivered *const *receipts_of(const struct chat_partition *part, Sb__Envelope *env,
                                         size_t *n, size_t *ids, const char **why)
{
	Sb__Delivered *const *d = sb_envelope_receipts(env, n);
	if (!d) {
		*why = "malformed";
		return NULL;
	}
	*ids = 0;
	for (size_t i = 0; i < *n; i++) {
		if ((*why = receipt_invalid(part, d[i])) != NULL)
			return NULL;
		*ids += d[i]->n_ids;
	}
	if (*ids > CHAT_DELIVERED_MAX_IDS) {
		*why = "too many ids";
		return NULL;
	}
	return d;
}

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
	size_t n = 0, ids = 0;
	Sb__Delivered *const *d = receipts_of(part, env, &n, &ids, &why);
	if (!d) {
		if (chat_log_allow(&last_warn_ms, 1000))
			SB_WARN("delivered_ignored", "partition=%u reason=\"%s\"", part->id, why);
		goto done;
	}
	if (ids == 0)
		goto done; /* nothing to do */
	struct delivered_job *job = calloc(1, sizeof *job);
	if (!job) {
		SB_ERROR("out_of_memory", "where=chat_delivered");
		goto done;
	}
	job->base.ops = &delivered_ops;
	job->base.bytes = sizeof *job + 2 * (size_t)len;
	job->part = part;
	job->env = env;
	job->d = d;
	job->n = n;
	job->ids = ids;
	struct chat_job *queued = &job->base;
	if (chat_writer_submit(part->writer, &queued) < 0) {
		free(job); /* the writer logged the refusal; the rows replay on next sync */
		goto done;
	}
	env = NULL; /* owned by the queued job */
done:
	sb_envelope_free(env);
	sb_msg_free(msg);
}
