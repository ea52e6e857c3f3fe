/*
 * sb_metrics: Prometheus counters, gauges and histograms for the back-end services.
 * A service keeps its metrics in its own struct sb_metrics (no global registry); every
 * update is an atomic add, so any thread may record, and /metrics renders a snapshot.
 */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SB_HIST_BUCKETS 14

enum sb_metric_type { SB_COUNTER, SB_GAUGE, SB_HISTOGRAM };

struct sb_metric {
	const char *name;   /* e.g. "sb_chat_messages_stored_total" */
	const char *labels; /* e.g. "reason=\"unknown receiver\"", or NULL */
	const char *help;
	enum sb_metric_type type;
	_Atomic int64_t value; /* counter / gauge */
	/* histogram (seconds): cumulative rendering of per-bucket counts */
	_Atomic uint64_t buckets[SB_HIST_BUCKETS + 1];
	_Atomic uint64_t count;
	_Atomic uint64_t sum_us;
	struct sb_metric *next;
};

struct sb_metrics {
	_Atomic(struct sb_metric *) head;
};

/* Register m (static storage, zero-initialised values) with a registry. Thread-safe. */
void sb_metrics_add(struct sb_metrics *reg, struct sb_metric *m);

static inline void sb_metric_inc(struct sb_metric *m, int64_t by)
{
	atomic_fetch_add(&m->value, by);
}

static inline void sb_metric_set(struct sb_metric *m, int64_t v)
{
	atomic_store(&m->value, v);
}

/* Record a duration in microseconds into a histogram. */
void sb_metric_observe_us(struct sb_metric *m, uint64_t us);

/* Render the registry as Prometheus text into a malloc'd buffer; NULL on OOM. */
char *sb_metrics_render(struct sb_metrics *reg, size_t *len);

#endif
