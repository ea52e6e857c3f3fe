/*
 * sb_metrics: lock-free registry (a list that only grows, pushed with CAS) and the
 * Prometheus text rendering. Histogram bounds are fixed (100 us .. 10 s), which covers
 * bus round trips and SQLite commits alike.
 */
#include "sb_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bounds_s[SB_HIST_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 10};

void sb_metrics_add(struct sb_metrics *reg, struct sb_metric *m)
{
	struct sb_metric *head = atomic_load(&reg->head);
	do {
		m->next = head;
	} while (!atomic_compare_exchange_weak(&reg->head, &head, m));
}

void sb_metric_observe_us(struct sb_metric *m, uint64_t us)
{
	double s = (double)us / 1e6;
	int i = 0;
	while (i < SB_HIST_BUCKETS && s > bounds_s[i])
		i++;
	atomic_fetch_add(&m->buckets[i], 1);
	atomic_fetch_add(&m->count, 1);
	atomic_fetch_add(&m->sum_us, us);
}

static const char *type_name(enum sb_metric_type t)
{
	return t == SB_COUNTER ? "counter" : t == SB_GAUGE ? "gauge" : "histogram";
}

char *sb_metrics_render(struct sb_metrics *reg, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	if (!f)
		return NULL;
	const char *last = NULL;
	/* Registration order is reversed by the list; names repeat for labelled series, and
	 * HELP/TYPE are printed once per name (the first series seen). */
	for (struct sb_metric *m = atomic_load(&reg->head); m; m = m->next) {
		int seen = 0;
		for (struct sb_metric *p = atomic_load(&reg->head); p != m; p = p->next)
			if (!strcmp(p->name, m->name))
				seen = 1;
		if (!seen && (!last || strcmp(last, m->name)))
			fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
			        type_name(m->type));
		last = m->name;
		const char *lb = m->labels ? m->labels : "";
		if (m->type != SB_HISTOGRAM) {
			fprintf(f, "%s%s%s%s %lld\n", m->name, *lb ? "{" : "", lb, *lb ? "}" : "",
			        (long long)atomic_load(&m->value));
			continue;
		}
		uint64_t cum = 0;
		for (int i = 0; i <= SB_HIST_BUCKETS; i++) {
			cum += atomic_load(&m->buckets[i]);
			char le[32];
			if (i < SB_HIST_BUCKETS)
				snprintf(le, sizeof le, "%g", bounds_s[i]);
			else
				snprintf(le, sizeof le, "+Inf");
			fprintf(f, "%s_bucket{%s%sle=\"%s\"} %llu\n", m->name, lb, *lb ? "," : "",
			        le, (unsigned long long)cum);
		}
		fprintf(f, "%s_sum%s%s%s %.6f\n", m->name, *lb ? "{" : "", lb, *lb ? "}" : "",
		        (double)atomic_load(&m->sum_us) / 1e6);
		fprintf(f, "%s_count%s%s%s %llu\n", m->name, *lb ? "{" : "", lb, *lb ? "}" : "",
		        (unsigned long long)atomic_load(&m->count));
	}
	fclose(f);
	*len = size;
	return buf;
}
