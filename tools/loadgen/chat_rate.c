/*
 * chat-rate: open loop. Every pair sends at --rate / --pairs messages per second for
 * --duration seconds, on a fixed schedule that does not wait for answers, so a slow
 * server cannot slow the offered load down (no coordinated omission). Latencies are
 * measured from the time a message was due, not from when it was written; the gap
 * between the two is reported on its own (send_lag_us) and stays near zero while the
 * load generator keeps up with its schedule.
 */
#include <stdio.h>

#include "chat.h"

/* When message `seq` of pair p is due. */
static int64_t due_at(struct lg_worker *w, struct lg_pair *p, uint32_t seq)
{
	int64_t t0 = atomic_load_explicit(&w->sh->t_start_ns, memory_order_relaxed);
	return t0 + (int64_t)(((double)seq + p->phase) * w->period_ns);
}

static int plan(struct lg_run *run)
{
	if (run->o->rate < 1) {
		fprintf(stderr, "error: chat-rate needs --rate (messages per second, all pairs)\n");
		return -1;
	}
	return lg_chat_plan(run);
}

static int worker_init(struct lg_worker *w, uint64_t first, uint64_t count)
{
	w->period_ns = 1e9 * (double)w->o->pairs / (double)w->o->rate;
	return lg_chat_worker_init(w, first, count);
}

static void on_writeable(struct lg_worker *w, struct lg_conn *c)
{
	if (w->phase != LG_PHASE_RUN || c->pair < 0)
		return;
	struct lg_pair *p = &w->pairs[c->pair];
	if (p->tx != c)
		return;
	int64_t now = lg_now_ns();
	int64_t due = due_at(w, p, p->next_seq);
	if (due > now)
		return;
	if (lg_chat_send(w, p, due) < 0)
		return;
	lg_hist_add(&w->st->lag_us, (now - due) / 1000);
	int64_t next = due_at(w, p, p->next_seq);
	if (next <= now)
		lg_conn_want_write(c);
	else
		lg_pace_by(w, next);
}

static void on_frame(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len)
{
	lg_chat_on_frame(w, c, data, len);
}

static void on_tick(struct lg_worker *w, int64_t now)
{
	(void)now;
	lg_chat_check_done(w);
}

/* Every sender whose next message is due asks to write; returns the next due time. */
static int64_t pace(struct lg_worker *w, int64_t now)
{
	if (w->phase != LG_PHASE_RUN)
		return 0;
	int64_t next = 0;
	for (uint32_t i = 0; i < w->npairs; i++) {
		struct lg_pair *p = &w->pairs[i];
		if (p->tx->writing)
			continue; /* its writeable callback sends and looks again */
		int64_t due = due_at(w, p, p->next_seq);
		if (due <= now)
			lg_conn_want_write(p->tx);
		else if (!next || due < next)
			next = due;
	}
	return next;
}

const struct lg_scenario lg_chat_rate = {
    .name = "chat-rate",
    .plan = plan,
    .worker_init = worker_init,
    .on_writeable = on_writeable,
    .on_frame = on_frame,
    .on_tick = on_tick,
    .pace = pace,
    .worker_finish = lg_chat_finish,
    .drive = lg_chat_drive,
    .report = lg_chat_report,
};
