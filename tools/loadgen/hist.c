/*
 * hist: log-linear bucket arithmetic and percentile read-out (see hist.h).
 */
#include "hist.h"

#include <math.h>
#include <string.h>

static unsigned bucket_of(uint64_t v)
{
	if (v < LG_HIST_LINEAR)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
	unsigned octave = msb - 7;
	if (octave >= LG_HIST_OCTAVES)
		return LG_HIST_BUCKETS - 1;
	unsigned shift = msb - 6;
	return LG_HIST_LINEAR + octave * LG_HIST_SUB + (unsigned)((v >> shift) - LG_HIST_SUB);
}

/* The largest value that falls into bucket i. */
static uint64_t bucket_top(unsigned i)
{
	if (i < LG_HIST_LINEAR)
		return i;
	unsigned octave = (i - LG_HIST_LINEAR) / LG_HIST_SUB;
	uint64_t m = (i - LG_HIST_LINEAR) % LG_HIST_SUB + LG_HIST_SUB;
	unsigned shift = octave + 1;
	return ((m + 1) << shift) - 1;
}

void lg_hist_reset(struct lg_hist *h)
{
	memset(h, 0, sizeof *h);
}

void lg_hist_add(struct lg_hist *h, int64_t v)
{
	uint64_t u = v < 0 ? 0 : (uint64_t)v;
	if (h->count == 0 || u < h->min)
		h->min = u;
	if (u > h->max)
		h->max = u;
	h->count++;
	h->sum += u;
	h->b[bucket_of(u)]++;
}

void lg_hist_merge(struct lg_hist *dst, const struct lg_hist *src)
{
	if (!src->count)
		return;
	if (dst->count == 0 || src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
	dst->count += src->count;
	dst->sum += src->sum;
	for (unsigned i = 0; i < LG_HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
}

int64_t lg_hist_at_rank(const struct lg_hist *h, uint64_t rank)
{
	if (rank == 0)
		rank = 1;
	if (h->count < rank)
		return -1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t top = bucket_top(i);
			return (int64_t)(top > h->max ? h->max : top);
		}
	}
	return (int64_t)h->max;
}

int64_t lg_hist_quantile(const struct lg_hist *h, double q)
{
	if (!h->count)
		return -1;
	return lg_hist_at_rank(h, (uint64_t)ceil(q * (double)h->count));
}

json_t *lg_hist_json(const struct lg_hist *h)
{
	json_t *o = json_object();
	json_object_set_new(o, "count", json_integer((json_int_t)h->count));
	if (!h->count) {
		static const char *keys[] = {"mean", "p50", "p90", "p99", "p999", "max"};
		for (unsigned i = 0; i < sizeof keys / sizeof *keys; i++)
			json_object_set_new(o, keys[i], json_null());
		return o;
	}
	json_object_set_new(o, "mean", json_integer((json_int_t)(h->sum / h->count)));
	json_object_set_new(o, "p50", json_integer(lg_hist_quantile(h, 0.50)));
	json_object_set_new(o, "p90", json_integer(lg_hist_quantile(h, 0.90)));
	json_object_set_new(o, "p99", json_integer(lg_hist_quantile(h, 0.99)));
	json_object_set_new(o, "p999", json_integer(lg_hist_quantile(h, 0.999)));
	json_object_set_new(o, "max", json_integer((json_int_t)h->max));
	return o;
}
