/*
 * receipts: batched delivery receipts, see receipts.h.
 */
#include "receipts.h"

#include <stdlib.h>

#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"
#include "timer.h"

#define FLUSH_US    (5 * LWS_US_PER_MS)
#define MAX_PENDING 65536

static int cmp_receipt(const void *a, const void *b)
{
	const struct gw_receipt *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->user_id != y->user_id)
		return x->user_id < y->user_id ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static void publish_group(struct gw *gw, const struct gw_receipt *r, size_t n, uint64_t *ids)
{
	for (size_t i = 0; i < n; i++)
		ids[i] = r[i].id;
	Sb__Delivered d = SB__DELIVERED__INIT;
	d.user_id = r->user_id;
	d.n_ids = n;
	d.ids = ids;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	env.body_case = SB__ENVELOPE__BODY_DELIVERED;
	env.delivered = &d;
	char subj[64];
	if (r->kind == GW_CHAT)
		snprintf(subj, sizeof subj, SB_SUBJ_CHAT_DELIVERED ".%u",
		         sb_partition(r->user_id, (uint32_t)gw->cfg.partitions));
	else
		snprintf(subj, sizeof subj, SB_SUBJ_NOTIFY_DELIVERED);
	if (sb_bus_publish(gw->bus, subj, NULL, &env) == NATS_OK)
		gw->m.receipts_sent++;
}

void gw_receipts_flush(struct gw *gw)
{
	size_t n = gw->receipts_len;
	if (!n)
		return;
	struct gw_receipt *r = gw->receipts;
	qsort(r, n, sizeof *r, cmp_receipt);
	uint64_t *ids = malloc(n * sizeof *ids);
	if (ids) {
		size_t start = 0;
		for (size_t i = 1; i <= n; i++) {
			if (i == n || r[i].kind != r[start].kind ||
			    r[i].user_id != r[start].user_id) {
				publish_group(gw, r + start, i - start, ids);
				start = i;
			}
		}
		free(ids);
	}
	gw->receipts_len = 0;
}

static void on_flush(lws_sorted_usec_list_t *sul)
{
	struct gw *gw = lws_container_of(sul, struct gw, receipts_sul);
	gw->receipts_scheduled = 0;
	gw_receipts_flush(gw);
}

void gw_receipts_add(struct gw *gw, enum gw_kind kind, uint64_t user_id, uint64_t id)
{
	if (gw->receipts_len == gw->receipts_cap) {
		if (gw->receipts_cap >= MAX_PENDING) {
			gw_receipts_flush(gw);
		} else {
			size_t cap = gw->receipts_cap ? gw->receipts_cap * 2 : 256;
			struct gw_receipt *grown = realloc(gw->receipts, cap * sizeof *grown);
			if (!grown) {
				gw_receipts_flush(gw);
			} else {
				gw->receipts = grown;
				gw->receipts_cap = cap;
			}
		}
	}
	if (gw->receipts_len == gw->receipts_cap)
		return; /* out of memory even after a flush: the replay will dedup */
	gw->receipts[gw->receipts_len++] = (struct gw_receipt){kind, user_id, id};
	if (!gw->receipts_scheduled) {
		gw->receipts_scheduled = 1;
		gw_timer_schedule(gw, &gw->receipts_sul, on_flush, FLUSH_US);
	}
}

void gw_receipts_destroy(struct gw *gw)
{
	lws_sul_cancel(&gw->receipts_sul);
	free(gw->receipts);
	gw->receipts = NULL;
	gw->receipts_len = gw->receipts_cap = 0;
}
