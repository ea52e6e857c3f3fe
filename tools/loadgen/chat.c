/*
 * chat: pairs, message text and per-message accounting shared by chat-rate and
 * chat-max (see chat.h). Per sequence number a pair keeps one byte of flags, so a
 * run of a million messages costs a megabyte and every figure (lost, duplicated, out
 * of order) is exact rather than sampled.
 */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frames.h"

#define LG_M_SENT      1
#define LG_M_ACKED     2
#define LG_M_DELIVERED 4
#define LG_M_REFUSED   8

#define FIFO_MAX  (1u << 20) /* messages of one sender awaiting message_sent */
#define MARKS_MAX (1u << 26) /* messages one pair may send in a run */
#define MSG_MAX   8000       /* --msg-bytes ceiling */

int lg_chat_plan(struct lg_run *run)
{
	struct lg_opts *o = run->o;
	if (o->pairs < 1) {
		fprintf(stderr, "error: --pairs must be at least 1\n");
		return -1;
	}
	if (o->duration_s < 1 || o->drain_s < 0) {
		fprintf(stderr, "error: --duration must be at least 1 and --drain at least 0\n");
		return -1;
	}
	if (o->msg_bytes < 0 || o->msg_bytes > MSG_MAX) {
		fprintf(stderr, "error: --msg-bytes must be in 0..%d\n", MSG_MAX);
		return -1;
	}
	if ((uint64_t)(o->user_offset + 2 * o->pairs) > run->tokens->n) {
		fprintf(stderr, "error: %lld pairs need %lld users from offset %lld; %s has %zu\n",
		        (long long)o->pairs, (long long)(2 * o->pairs), (long long)o->user_offset,
		        o->tokens_path, run->tokens->n);
		return -1;
	}
	run->nconns = (uint64_t)(2 * o->pairs);
	run->unit = 2;
	return 0;
}

int lg_chat_worker_init(struct lg_worker *w, uint64_t first, uint64_t count)
{
	w->npairs = (uint32_t)(count / 2);
	w->pair_base = (uint32_t)(first / 2);
	w->pairs = calloc(w->npairs ? w->npairs : 1, sizeof *w->pairs);
	if (!w->pairs)
		return -1;
	for (uint32_t i = 0; i < w->npairs; i++) {
		struct lg_pair *p = &w->pairs[i];
		struct lg_conn *tx = &w->conns[2 * i], *rx = &w->conns[2 * i + 1];
		uint64_t u = (uint64_t)w->o->user_offset + first + 2 * i;
		tx->kind = rx->kind = LG_CHAT;
		tx->user = (uint32_t)u;
		rx->user = (uint32_t)u + 1;
		tx->pair = rx->pair = (int32_t)i;
		p->tx = tx;
		p->rx = rx;
		p->receiver_uid = w->tokens->uid[u + 1];
		p->phase = (double)i / (double)w->npairs;
		p->fifo_cap = 256;
		p->fifo = malloc(p->fifo_cap * sizeof *p->fifo);
		p->marks_cap = 4096;
		p->marks = calloc(p->marks_cap, 1);
		if (!p->fifo || !p->marks)
			return -1;
	}
	return 0;
}

static int grow_marks(struct lg_pair *p, uint32_t seq)
{
	if (seq < p->marks_cap)
		return 0;
	if (seq >= MARKS_MAX)
		return -1;
	uint32_t cap = p->marks_cap;
	while (cap <= seq)
		cap *= 2;
	uint8_t *m = realloc(p->marks, cap);
	if (!m)
		return -1;
	memset(m + p->marks_cap, 0, cap - p->marks_cap);
	p->marks = m;
	p->marks_cap = cap;
	return 0;
}

static int fifo_push(struct lg_pair *p, uint32_t seq, int64_t t_ns, int64_t t_write_ns)
{
	if (p->tail - p->head == p->fifo_cap) {
		if (p->fifo_cap >= FIFO_MAX)
			return -1;
		struct lg_flight *f = malloc(2 * p->fifo_cap * sizeof *f);
		if (!f)
			return -1;
		for (uint32_t i = 0; i < p->fifo_cap; i++)
			f[i] = p->fifo[(p->head + i) & (p->fifo_cap - 1)];
		free(p->fifo);
		p->fifo = f;
		p->tail = p->fifo_cap;
		p->head = 0;
		p->fifo_cap *= 2;
	}
	p->fifo[p->tail++ & (p->fifo_cap - 1)] = (struct lg_flight){seq, t_ns, t_write_ns};
	return 0;
}

static int fifo_pop(struct lg_pair *p, struct lg_flight *out)
{
	if (p->head == p->tail)
		return -1;
	*out = p->fifo[p->head++ & (p->fifo_cap - 1)];
	return 0;
}

/* The next message of pair p, due at t_ns, as its JSON text in out (cap bytes), with its
 * flight recorded; the length, or -1 (stalled: nothing recorded). */
static int compose(struct lg_worker *w, struct lg_pair *p, int64_t t_ns, char *out, size_t cap)
{
	char text[MSG_MAX + 128];
	uint32_t seq = p->next_seq;
	int64_t now = lg_now_ns();
	uint64_t v[4] = {w->pair_base + (uint64_t)(p - w->pairs), seq, (uint64_t)t_ns,
	                 (uint64_t)now};
	int tl = lg_frame_format_marker(text, sizeof text, w->run_id, v, 4, 0);
	if (w->o->msg_bytes > tl + 1)
		tl = lg_frame_format_marker(text, sizeof text, w->run_id, v, 4,
		                            (size_t)(w->o->msg_bytes - tl - 1));
	if (grow_marks(p, seq) < 0 || fifo_push(p, seq, t_ns, now) < 0) {
		lg_add(&w->st->stalled, 1);
		return -1;
	}
	int n = snprintf(out, cap, "{\"receiver_id\":%llu,\"message\":\"%s\"}",
	                 (unsigned long long)p->receiver_uid, text);
	if (n < 0 || (size_t)n >= cap) {
		p->tail--;
		return -1;
	}
	return n;
}

/* The message composed last went out. */
static void sent_one(struct lg_worker *w, struct lg_pair *p)
{
	p->marks[p->next_seq] |= LG_M_SENT;
	p->next_seq++;
	w->inflight++;
	w->undelivered++;
	lg_add(&w->st->sent, 1);
}

int lg_chat_send(struct lg_worker *w, struct lg_pair *p, int64_t t_ns)
{
	static unsigned char buf[LWS_PRE + MSG_MAX + 128];
	int n = compose(w, p, t_ns, (char *)buf + LWS_PRE, MSG_MAX + 128);
	if (n < 0)
		return -1;
	if (lg_conn_write(p->tx, buf + LWS_PRE, (size_t)n) < 0) {
		p->tail--; /* not sent after all */
		return -1;
	}
	sent_one(w, p);
	return 0;
}

/* A client's frame must be masked (RFC 6455 5.3); any key will do for a benchmark. */
static uint32_t mask_key(void)
{
	static uint32_t x = 2463534242u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

int lg_chat_send_many(struct lg_worker *w, struct lg_pair *p, int64_t t_ns, int max)
{
	static unsigned char buf[LWS_PRE + LG_SEND_BATCH_BYTES];
	unsigned char *out = buf + LWS_PRE;
	size_t used = 0;
	int n = 0;
	while (n < max && used + 14 + MSG_MAX + 128 <= LG_SEND_BATCH_BYTES) {
		unsigned char *h = out + used;
		size_t hl = 2 + 4;          /* lengths below 126, the usual case, then the mask */
		char *text = (char *)h + 8; /* room for a 16-bit length */
		int tl = compose(w, p, t_ns, text, MSG_MAX + 128);
		if (tl < 0)
			break;
		h[0] = 0x81;
		if (tl < 126) {
			h[1] = (unsigned char)(0x80 | tl);
			memmove(h + hl, text, (size_t)tl);
		} else {
			hl = 4 + 4;
			h[1] = 0x80 | 126;
			h[2] = (unsigned char)(tl >> 8);
			h[3] = (unsigned char)tl;
		}
		uint32_t k = mask_key();
		unsigned char *mk = h + hl - 4;
		memcpy(mk, &k, 4);
		unsigned char *pl = h + hl;
		for (int i = 0; i < tl; i++)
			pl[i] ^= mk[i & 3];
		used += hl + (size_t)tl;
		/* counted as sent now; undone below if the write fails */
		sent_one(w, p);
		n++;
	}
	if (!n)
		return -1;
	if (lws_write(p->tx->wsi, out, used, LWS_WRITE_RAW) < (int)used) {
		for (int i = 1; i <= n; i++)
			p->marks[p->next_seq - (uint32_t)i] &= (uint8_t)~LG_M_SENT;
		p->tail -= (uint32_t)n;
		p->next_seq -= (uint32_t)n;
		w->inflight -= (uint64_t)n;
		w->undelivered -= (uint64_t)n;
		lg_add(&w->st->sent, (uint64_t) - (int64_t)n);
		return -1;
	}
	return n;
}

/* The text of an {"type":"error","error":"..."} frame, for the refusal table. */
static void note_refusal(struct lg_worker *w, const char *data, size_t len)
{
	static const char key[] = "\"error\":\"";
	const char *p = memmem(data, len, key, sizeof key - 1);
	if (!p) {
		lg_note_error(&w->st->refusals, NULL, 0);
		return;
	}
	p += sizeof key - 1;
	const char *end = memchr(p, '"', (size_t)(data + len - p));
	lg_note_error(&w->st->refusals, p, end ? (size_t)(end - p) : 0);
}

static struct lg_pair *on_answer(struct lg_worker *w, struct lg_conn *c, int refused)
{
	struct lg_pair *p = c->pair >= 0 ? &w->pairs[c->pair] : NULL;
	struct lg_flight f;
	if (!p || p->tx != c || fifo_pop(p, &f) < 0) {
		lg_add(&w->st->foreign, 1);
		return NULL;
	}
	int64_t now = lg_now_ns();
	w->inflight--;
	if (refused) {
		p->marks[f.seq] |= LG_M_REFUSED;
		if (!(p->marks[f.seq] & LG_M_DELIVERED))
			w->undelivered--;
		lg_add(&w->st->errors, 1);
	} else {
		p->marks[f.seq] |= LG_M_ACKED;
		lg_hist_add(&w->st->ack_us, (now - f.t_ns) / 1000);
		lg_hist_add(&w->st->ack_write_us, (now - f.t_write_ns) / 1000);
		lg_add(&w->st->acked, 1);
	}
	return p;
}

static void on_chat_message(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len)
{
	uint64_t f[5];
	if (lg_frame_marker(data, len, f, 5) < 5 || f[0] != w->run_id || f[1] < w->pair_base ||
	    f[1] - w->pair_base >= w->npairs) {
		lg_add(&w->st->foreign, 1);
		return;
	}
	struct lg_pair *p = &w->pairs[f[1] - w->pair_base];
	uint32_t seq = (uint32_t)f[2];
	if (p->rx != c || f[2] >= p->next_seq) {
		lg_add(&w->st->foreign, 1);
		return;
	}
	if (p->marks[seq] & LG_M_DELIVERED) {
		lg_add(&w->st->dup, 1);
		return;
	}
	int64_t now = lg_now_ns();
	p->marks[seq] |= LG_M_DELIVERED;
	if (!(p->marks[seq] & LG_M_REFUSED))
		w->undelivered--;
	lg_add(&w->st->delivered, 1);
	lg_hist_add(&w->st->e2e_us, (now - (int64_t)f[3]) / 1000);
	lg_hist_add(&w->st->e2e_write_us, (now - (int64_t)f[4]) / 1000);
	if (seq + 1 < p->received_top)
		lg_add(&w->st->ooo, 1);
	else
		p->received_top = seq + 1;
}

struct lg_pair *lg_chat_on_frame(struct lg_worker *w, struct lg_conn *c, const char *data,
                                 size_t len)
{
	struct lg_pair *p = NULL;
	switch (lg_frame_type(data, len)) {
	case LG_F_CHAT_MESSAGE:
		on_chat_message(w, c, data, len);
		break;
	case LG_F_MESSAGE_SENT:
		p = on_answer(w, c, 0);
		break;
	case LG_F_ERROR:
		note_refusal(w, data, len);
		p = on_answer(w, c, 1);
		break;
	default:
		lg_add(&w->st->foreign, 1);
		break;
	}
	lg_chat_check_done(w);
	return p;
}

void lg_chat_check_done(struct lg_worker *w)
{
	if (w->phase >= LG_PHASE_STOP && !w->inflight && !w->undelivered &&
	    !atomic_load_explicit(&w->st->done, memory_order_relaxed))
		atomic_store(&w->st->done, 1);
}

void lg_chat_finish(struct lg_worker *w)
{
	uint64_t lost = 0, unanswered = 0;
	for (uint32_t i = 0; i < w->npairs; i++) {
		struct lg_pair *p = &w->pairs[i];
		for (uint32_t s = 0; s < p->next_seq; s++) {
			uint8_t m = p->marks[s];
			if ((m & LG_M_ACKED) && !(m & LG_M_DELIVERED))
				lost++;
			if (!(m & (LG_M_ACKED | LG_M_REFUSED)))
				unanswered++;
		}
	}
	lg_add(&w->st->lost, lost);
	lg_add(&w->st->unanswered, unanswered);
}

void lg_chat_drive(struct lg_run *run)
{
	struct lg_opts *o = run->o;
	if (lg_run_wait(run, lg_now_ns() + o->settle_ms * 1000000LL, NULL) < 0)
		return;
	int64_t t = lg_now_ns() + 2000000; /* every worker sees it before it is due */
	atomic_store(&run->sh->t_start_ns, t);
	run->t_run_ns = t;
	lg_run_mark_cpu(run, 0);
	lg_run_set_phase(run, LG_PHASE_RUN);
	int r = lg_run_wait(run, t + o->duration_s * 1000000000LL, NULL);
	run->t_stop_ns = lg_now_ns();
	run->sent_at_stop = LG_SUM(run, sent);
	run->acked_at_stop = LG_SUM(run, acked);
	run->delivered_at_stop = LG_SUM(run, delivered);
	lg_run_set_phase(run, LG_PHASE_STOP);
	lg_run_mark_cpu(run, 1);
	lg_run_mark_rss(run);
	if (r >= 0)
		lg_run_wait(run, lg_now_ns() + o->drain_s * 1000000000LL, lg_run_all_done);
}

static json_t *hist_of(struct lg_run *run, size_t offset)
{
	struct lg_hist *h = calloc(1, sizeof *h);
	if (!h)
		return json_null();
	lg_report_merge(run, offset, h);
	json_t *j = lg_hist_json(h);
	free(h);
	return j;
}

/* Median of the per-second delivered counts while sending (first and last second
 * left out: they are partial). */
static double sustained_rate(struct lg_run *run)
{
	double v[4096];
	size_t n = 0;
	for (size_t i = 1; i < run->nsamples && n < 4096; i++) {
		const struct lg_sample *a = &run->samples[i - 1], *b = &run->samples[i];
		double ta = (double)run->t0_ns / 1e9 + a->t, tb = (double)run->t0_ns / 1e9 + b->t;
		if (ta < (double)run->t_run_ns / 1e9 + 1.0 || tb > (double)run->t_stop_ns / 1e9)
			continue;
		v[n++] = (double)(b->delivered - a->delivered) / (b->t - a->t);
	}
	if (!n)
		return -1;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double x = v[j];
			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	return v[n / 2];
}

void lg_chat_report(struct lg_run *run, json_t *out)
{
	double secs = (double)(run->t_stop_ns - run->t_run_ns) / 1e9;
	if (secs <= 0)
		secs = 1e-9;
	json_t *m = json_object();
	json_object_set_new(m, "sent", json_integer((json_int_t)LG_SUM(run, sent)));
	json_object_set_new(m, "acked", json_integer((json_int_t)LG_SUM(run, acked)));
	json_object_set_new(m, "refused", json_integer((json_int_t)LG_SUM(run, errors)));
	json_object_set_new(m, "delivered", json_integer((json_int_t)LG_SUM(run, delivered)));
	json_object_set_new(m, "lost", json_integer((json_int_t)LG_SUM(run, lost)));
	json_object_set_new(m, "unanswered", json_integer((json_int_t)LG_SUM(run, unanswered)));
	json_object_set_new(m, "duplicated", json_integer((json_int_t)LG_SUM(run, dup)));
	json_object_set_new(m, "out_of_order", json_integer((json_int_t)LG_SUM(run, ooo)));
	json_object_set_new(m, "foreign", json_integer((json_int_t)LG_SUM(run, foreign)));
	json_object_set_new(m, "stalled", json_integer((json_int_t)LG_SUM(run, stalled)));
	json_object_set_new(out, "messages", m);
	json_object_set_new(out, "refusals",
	                    lg_report_errs(run, offsetof(struct lg_wstats, refusals)));

	json_t *r = json_object();
	json_object_set_new(r, "seconds", json_real(secs));
	json_object_set_new(r, "sent_per_s", json_real((double)run->sent_at_stop / secs));
	json_object_set_new(r, "acked_per_s", json_real((double)run->acked_at_stop / secs));
	json_object_set_new(r, "delivered_per_s", json_real((double)run->delivered_at_stop / secs));
	double sus = sustained_rate(run);
	json_object_set_new(r, "delivered_per_s_median", sus < 0 ? json_null() : json_real(sus));
	json_object_set_new(out, "rate", r);

	json_object_set_new(out, "e2e_us", hist_of(run, offsetof(struct lg_wstats, e2e_us)));
	json_object_set_new(out, "ack_us", hist_of(run, offsetof(struct lg_wstats, ack_us)));
	json_object_set_new(out, "send_lag_us", hist_of(run, offsetof(struct lg_wstats, lag_us)));
	json_object_set_new(out, "e2e_from_write_us",
	                    hist_of(run, offsetof(struct lg_wstats, e2e_write_us)));
	json_object_set_new(out, "ack_from_write_us",
	                    hist_of(run, offsetof(struct lg_wstats, ack_write_us)));
}
