/*
 * receipts: batched delivery receipts, see receipts.h.
 *
 * A flush sorts what is pending by (kind, partition, user, id) and publishes one
 * DeliveredBatch per subject -- chat.delivered.<p> or notify.delivered -- holding
 * one Delivered per user. A broadcast written to 3,000 sockets thus leaves as a few
 * bus messages instead of 3,000, which the services also take in one go.
 */
#include "receipts.h"

#include <stdlib.h>
#include <string.h>

#include "busloop.h"
#include "conn.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"
#include "timer.h"

#define FLUSH_US    (5 * LWS_US_PER_MS)
#define HOLD_US     (100 * LWS_US_PER_MS) /* the next look while the bus is down */
#define MAX_PENDING 65536
/* Ids per bus message (so per user in it too): a message stays far below NATS'
 * max_payload and below chat-svc's CHAT_DELIVERED_MAX_IDS per receipt. */
#define BATCH_MAX_IDS 8192

static int cmp_receipt(const void *a, const void *b)
{
	const struct gw_receipt *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->partition != y->partition)
		return x->partition < y->partition ? -1 : 1;
	if (x->user_id != y->user_id)
		return x->user_id < y->user_id ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int same_subject(const struct gw_receipt *x, const struct gw_receipt *y)
{
	return x->kind == y->kind && x->partition == y->partition;
}

static void publish_batch(struct gw *gw, const struct gw_receipt *first, Sb__Delivered **items,
                          size_t n_items)
{
	Sb__DeliveredBatch b = SB__DELIVERED_BATCH__INIT;
	b.n_receipts = n_items;
	b.receipts = items;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	env.body_case = SB__ENVELOPE__BODY_DELIVERED_BATCH;
	env.delivered_batch = &b;
	char subj[64];
	if (first->kind == GW_CHAT)
		snprintf(subj, sizeof subj, SB_SUBJ_CHAT_DELIVERED ".%u", first->partition);
	else
		snprintf(subj, sizeof subj, SB_SUBJ_NOTIFY_DELIVERED);
	if (sb_bus_publish(gw->bus, subj, NULL, &env) == NATS_OK)
		gw->m.receipts_sent++;
}

static void on_flush(lws_sorted_usec_list_t *sul);

void gw_receipts_flush(struct gw *gw)
{
	size_t n = gw->receipts_len;
	if (!n)
		return;
	if (!gw_bus_up(gw)) {
		/* Kept for when the bus is back (a publish now could wait for libnats'
		 * reconnect attempt); add() drops beyond MAX_PENDING. */
		if (!gw->receipts_scheduled && !gw->done) {
			gw->receipts_scheduled = 1;
			gw_timer_schedule(gw, &gw->receipts_sul, on_flush, HOLD_US);
		}
		return;
	}
	struct gw_receipt *r = gw->receipts;
	qsort(r, n, sizeof *r, cmp_receipt);
	/* ids[i] belongs to r[i]: each user's ids are a contiguous run of it. */
	uint64_t *ids = malloc(n * sizeof *ids);
	Sb__Delivered *items = malloc(n * sizeof *items);
	Sb__Delivered **ptrs = malloc(n * sizeof *ptrs);
	if (ids && items && ptrs) {
		size_t i = 0, used = 0;
		while (i < n) {
			const struct gw_receipt *first = &r[i];
			size_t n_items = 0, n_ids = 0;
			while (i < n && same_subject(&r[i], first) && n_ids < BATCH_MAX_IDS) {
				Sb__Delivered *d = &items[used++];
				sb__delivered__init(d);
				d->user_id = r[i].user_id;
				d->ids = &ids[i];
				while (i < n && same_subject(&r[i], first) &&
				       r[i].user_id == d->user_id && n_ids < BATCH_MAX_IDS) {
					/* Two sockets of one user wrote the same id: report it
					 * once. */
					if (d->n_ids == 0 || d->ids[d->n_ids - 1] != r[i].id) {
						d->ids[d->n_ids++] = r[i].id;
						n_ids++;
					}
					i++;
				}
				ptrs[n_items++] = d;
			}
			publish_batch(gw, first, ptrs, n_items);
		}
	} else {
		SB_ERROR("out_of_memory",
		         "where=receipts receipts=%zu msg=\"dropped; those "
		         "messages replay on next connect, de-duplicated\"",
		         n);
	}
	free(ids);
	free(items);
	free(ptrs);
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
	if (gw->receipts_len == gw->receipts_cap) {
		/* out of memory even after a flush, or the bus down: the replay will dedup */
		gw->m.receipts_dropped++;
		return;
	}
	uint32_t part = kind == GW_CHAT ? sb_partition(user_id, (uint32_t)gw->cfg.partitions) : 0;
	gw->receipts[gw->receipts_len++] = (struct gw_receipt){kind, part, user_id, id};
	if (!gw->receipts_scheduled) {
		gw->receipts_scheduled = 1;
		gw_timer_schedule(gw, &gw->receipts_sul, on_flush, FLUSH_US);
	}
}

/* Receipts one socket may hold for its probe; beyond, a client that reads but never
 * answers PINGs gets those messages again on its next connect. */
#define UNCONF_MAX 65536

static void on_probe_timer(lws_sorted_usec_list_t *sul);

void gw_receipts_init(struct gw *gw)
{
	static const int delay_ms[] = {[GW_PROBES_CHAT] = GW_PROBE_DELAY_CHAT_MS,
	                               [GW_PROBES_NOTIFY] = GW_PROBE_DELAY_NOTIFY_MS,
	                               [GW_PROBES_RETRY] = GW_PROBE_RETRY_MS};
	for (int i = 0; i < 3; i++)
		gw->probes[i] = (struct gw_probe_list){
		    .gw = gw, .delay = (lws_usec_t)delay_ms[i] * LWS_US_PER_MS};
}

void gw_receipts_stop(struct gw *gw)
{
	lws_sul_cancel(&gw->receipts_sul);
	gw->receipts_scheduled = 0;
	for (int i = 0; i < 3; i++)
		lws_sul_cancel(&gw->probes[i].sul);
}

static void probe_unlink(struct gw *gw, struct gw_conn *c)
{
	if (!c->probe_waiting)
		return;
	struct gw_probe_list *l = &gw->probes[c->probe_list];
	if (c->probe_prev)
		c->probe_prev->probe_next = c->probe_next;
	else
		l->head = c->probe_next;
	if (c->probe_next)
		c->probe_next->probe_prev = c->probe_prev;
	else
		l->tail = c->probe_prev;
	c->probe_next = c->probe_prev = NULL;
	c->probe_waiting = 0;
}

/* Put c at the end of list `id`: its wait ends a delay from now. Every wait in a list
 * is as long, so the list stays in deadline order. */
static void probe_enlist(struct gw *gw, struct gw_conn *c, int id)
{
	probe_unlink(gw, c);
	struct gw_probe_list *l = &gw->probes[id];
	c->probe_waiting = 1;
	c->probe_list = id;
	c->probe_at = lws_now_usecs() + l->delay;
	c->probe_next = NULL;
	c->probe_prev = l->tail;
	if (l->tail)
		l->tail->probe_next = c;
	else
		l->head = c;
	l->tail = c;
	if (l->head == c)
		gw_timer_schedule(gw, &l->sul, on_probe_timer, l->delay);
}

/* c has receipts waiting and no probe owed or out: probe it after its kind's delay. */
static void probe_later(struct gw *gw, struct gw_conn *c)
{
	if (c->probe_waiting || c->probe_due || c->probe_out || !c->unconf_len)
		return;
	probe_enlist(gw, c, c->kind == GW_NOTIFY ? GW_PROBES_NOTIFY : GW_PROBES_CHAT);
}

static void on_probe_timer(lws_sorted_usec_list_t *sul)
{
	struct gw_probe_list *l = lws_container_of(sul, struct gw_probe_list, sul);
	lws_usec_t now = lws_now_usecs();
	struct gw_conn *c;
	while ((c = l->head) && c->probe_at <= now) {
		probe_unlink(l->gw, c);
		if (c->probe_out) {
			/* no PONG in GW_PROBE_RETRY_MS: ask again, and still take the old one */
			c->prev_seq = c->probe_seq;
			c->prev_covers = c->probe_covers;
			c->probe_out = 0;
		}
		c->probe_due = 1;
		gw_conn_send_probe(l->gw, c);
	}
	if (c)
		gw_timer_schedule(l->gw, &l->sul, on_probe_timer, c->probe_at - now);
}

void gw_receipts_probe_now(struct gw *gw, struct gw_conn *c)
{
	if (!c->probe_waiting || c->probe_list == GW_PROBES_RETRY)
		return;
	probe_unlink(gw, c);
	c->probe_due = 1;
	gw_conn_send_probe(gw, c);
}

void gw_receipts_written(struct gw *gw, struct gw_conn *c, uint64_t id)
{
	if (c->unconf_len == c->unconf_cap) {
		size_t cap = c->unconf_cap ? c->unconf_cap * 2 : 16;
		uint64_t *grown =
		    cap <= UNCONF_MAX ? realloc(c->unconf, cap * sizeof *grown) : NULL;
		if (!grown) {
			gw->m.receipts_dropped++;
			return;
		}
		c->unconf = grown;
		c->unconf_cap = cap;
	}
	c->unconf[c->unconf_len++] = id;
	probe_later(gw, c);
}

/* The next probe's payload, "sr" and its sequence number, into p[0..6). */
static void probe_payload(struct gw *gw, struct gw_conn *c, unsigned char *p)
{
	c->probe_seq++;
	c->probe_out = 1;
	c->probe_due = 0;
	gw->m.probes_sent++;
	p[0] = 's';
	p[1] = 'r';
	for (int i = 0; i < 4; i++)
		p[2 + i] = (unsigned char)(c->probe_seq >> (24 - 8 * i));
}

size_t gw_receipts_probe_append(struct gw *gw, struct gw_conn *c, unsigned char *out)
{
	if (!c->probe_due || c->probe_out || c->q_head)
		return 0;
	out[0] = 0x89; /* FIN, PING, unmasked */
	out[1] = 6;
	probe_payload(gw, c, out + 2);
	return GW_PROBE_FRAME_BYTES;
}

/* The probe just written covers everything written before it; if no PONG comes, it
 * is asked again. */
void gw_receipts_probe_sent(struct gw *gw, struct gw_conn *c)
{
	c->probe_covers = c->unconf_len;
	probe_enlist(gw, c, GW_PROBES_RETRY);
}

int gw_receipts_write_probe(struct gw *gw, struct gw_conn *c)
{
	if (!c->probe_due || c->probe_out || c->q_head)
		return 0;
	unsigned char buf[LWS_PRE + 6];
	probe_payload(gw, c, buf + LWS_PRE);
	gw_receipts_probe_sent(gw, c);
	if (lws_write(c->wsi, buf + LWS_PRE, 6, LWS_WRITE_PING) < 6)
		return -1;
	return 1;
}

/* The client has read everything before the probe that confirmed unconf[0..n). */
static void confirm(struct gw *gw, struct gw_conn *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		gw_receipts_add(gw, c->kind, c->user_id, c->unconf[i]);
	memmove(c->unconf, c->unconf + n, (c->unconf_len - n) * sizeof *c->unconf);
	c->unconf_len -= n;
}

void gw_receipts_on_pong(struct gw *gw, struct gw_conn *c, const void *in, size_t len)
{
	const unsigned char *p = in;
	if (len != 6 || p[0] != 's' || p[1] != 'r')
		return; /* a keepalive PONG, or not ours */
	uint32_t seq = (uint32_t)p[2] << 24 | (uint32_t)p[3] << 16 | (uint32_t)p[4] << 8 | p[5];
	if (c->probe_out && seq == c->probe_seq) {
		confirm(gw, c, c->probe_covers);
		c->probe_covers = c->prev_covers = 0;
		c->prev_seq = 0;
		c->probe_out = 0;
		probe_unlink(gw, c); /* from the retry list */
		probe_later(gw, c);
	} else if (c->prev_seq && seq == c->prev_seq) {
		/* the PONG to a probe asked again: what it covered, the newer one covers too */
		confirm(gw, c, c->prev_covers);
		if (c->probe_out)
			c->probe_covers -= c->prev_covers;
		c->prev_covers = 0;
		c->prev_seq = 0;
	}
}

void gw_receipts_conn_closed(struct gw *gw, struct gw_conn *c)
{
	probe_unlink(gw, c);
	gw->m.unconfirmed_lost += c->unconf_len;
	free(c->unconf);
	c->unconf = NULL;
	c->unconf_len = c->unconf_cap = c->probe_covers = c->prev_covers = 0;
	c->probe_out = c->probe_due = 0;
	c->prev_seq = 0;
}

void gw_receipts_destroy(struct gw *gw)
{
	if (gw->receipts_len)
		SB_WARN("receipts_unsent",
		        "receipts=%zu msg=\"the bus was down at exit; those "
		        "messages replay on next connect, de-duplicated\"",
		        gw->receipts_len);
	free(gw->receipts);
	gw->receipts = NULL;
	gw->receipts_len = gw->receipts_cap = 0;
}
