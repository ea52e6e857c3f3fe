/*
 * notify_stats: the service's counters and timings (see notify_svc.h): registered with
 * the shared sb_metrics registry for /metrics, and summarised as one log line.
 *
 * Design: counters are sb_metrics atomics bumped where things happen; every rejection
 * reason is its own labelled series, registered up front at zero, so a publisher
 * sending bad payloads shows up by name and an alert can watch a reason that has
 * never fired yet.
 */
#include <stdio.h>

#include "notify_svc.h"
#include "sb_log.h"

static void add(struct notify_stats *st, struct sb_metric *m, const char *name, const char *labels,
                const char *help, enum sb_metric_type type)
{
	m->name = name;
	m->labels = labels;
	m->help = help;
	m->type = type;
	sb_metrics_add(&st->reg, m);
}

void notify_stats_init(struct notify_stats *st)
{
	/* Registered in reverse: the registry renders the last added first. */
	add(st, &st->sync_seconds, "sb_notify_sync_seconds", NULL,
	    "Time to answer a notify.sync request.", SB_HISTOGRAM);
	add(st, &st->batch_seconds, "sb_notify_batch_commit_seconds", NULL,
	    "Time to store one fetched batch (one transaction).", SB_HISTOGRAM);
	add(st, &st->purged, "sb_notify_purged_rows_total", NULL,
	    "Notification rows deleted after the retention window.", SB_COUNTER);
	add(st, &st->receipts_dropped, "sb_notify_receipts_dropped_total", NULL,
	    "Delivery receipts dropped because the cursor queue was full.", SB_COUNTER);
	add(st, &st->receipts, "sb_notify_receipts_total", NULL,
	    "Delivery receipts received (one per user of a notify.delivered message).", SB_COUNTER);
	add(st, &st->syncs, "sb_notify_sync_requests_total", NULL, "notify.sync requests received.",
	    SB_COUNTER);
	add(st, &st->store_failures, "sb_notify_store_failures_total", NULL,
	    "Batches that failed to commit (retried).", SB_COUNTER);
	for (int i = NOTIFY_E_COUNT - 1; i > 0; i--) {
		snprintf(st->reject_labels[i], sizeof st->reject_labels[i], "reason=\"%s\"",
		         notify_reject_name((enum notify_reject)i));
		add(st, &st->rejected[i], "sb_notify_rejected_total", st->reject_labels[i],
		    "Injections refused (terminated, never redelivered), by reason.", SB_COUNTER);
	}
	add(st, &st->published, "sb_notify_published_total", NULL,
	    "Notifications published on deliver.notify.*.", SB_COUNTER);
	add(st, &st->rows, "sb_notify_rows_stored_total", NULL,
	    "Notification rows stored (one per target user; one per broadcast).", SB_COUNTER);
	add(st, &st->duplicates, "sb_notify_injections_duplicate_total", NULL,
	    "Redelivered injections found already stored (published again, not stored).",
	    SB_COUNTER);
	add(st, &st->stored, "sb_notify_injections_stored_total", NULL, "Injections stored.",
	    SB_COUNTER);
}

static long long val(struct sb_metric *m)
{
	return (long long)atomic_load(&m->value);
}

void notify_stats_log(struct notify_svc *svc, const char *event)
{
	struct notify_stats *st = &svc->stats;
	char reasons[1024];
	size_t used = 0;
	long long rejected = 0;
	reasons[0] = 0;
	for (int i = 1; i < NOTIFY_E_COUNT; i++) {
		long long v = val(&st->rejected[i]);
		if (!v)
			continue;
		rejected += v;
		int w = snprintf(reasons + used, sizeof reasons - used, " rejected_%s=%lld",
		                 notify_reject_name((enum notify_reject)i), v);
		if (w > 0 && (size_t)w < sizeof reasons - used)
			used += (size_t)w;
	}
	SB_INFO(event,
	        "stored=%lld rows=%lld duplicates=%lld published=%lld rejected=%lld "
	        "store_failures=%lld syncs=%lld receipts=%lld receipts_dropped=%lld purged=%lld%s",
	        val(&st->stored), val(&st->rows), val(&st->duplicates), val(&st->published),
	        rejected, val(&st->store_failures), val(&st->syncs), val(&st->receipts),
	        val(&st->receipts_dropped), val(&st->purged), reasons);
}
