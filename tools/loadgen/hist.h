/*
 * hist: a fixed-bucket, log-linear latency histogram (the idea of HdrHistogram, cut
 * down). Values below 128 have a bucket each; above, every power of two is split into
 * 64 equal buckets, so a reported percentile is at most 1/64 (1.6 %) above the true
 * value. Fixed size and no pointers, so a histogram can live in memory shared between
 * the load generator's processes and be merged by adding counts.
 */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <jansson.h>
#include <stdint.h>

#define LG_HIST_LINEAR  128
#define LG_HIST_SUB     64
#define LG_HIST_OCTAVES 40 /* up to 2^47 units: 1.6 days in microseconds */
#define LG_HIST_BUCKETS (LG_HIST_LINEAR + LG_HIST_OCTAVES * LG_HIST_SUB)

struct lg_hist {
	uint64_t count;
	uint64_t sum;
	uint64_t min;
	uint64_t max;
	uint64_t b[LG_HIST_BUCKETS];
};

/* Empty a histogram. */
void lg_hist_reset(struct lg_hist *h);

/* Count one value (negative values count as 0). */
void lg_hist_add(struct lg_hist *h, int64_t v);

/* Add every count of src into dst. */
void lg_hist_merge(struct lg_hist *dst, const struct lg_hist *src);

/* The smallest recorded value v such that at least `rank` values are <= v (rank is
 * 1-based), reported as the upper edge of its bucket clamped to the maximum seen.
 * Returns -1 when fewer than `rank` values were recorded. */
int64_t lg_hist_at_rank(const struct lg_hist *h, uint64_t rank);

/* The q-quantile (0 < q <= 1) of the recorded values, or -1 when empty. */
int64_t lg_hist_quantile(const struct lg_hist *h, double q);

/* {"count","mean","p50","p90","p99","p999","max"} as a new JSON object. */
json_t *lg_hist_json(const struct lg_hist *h);

#endif
