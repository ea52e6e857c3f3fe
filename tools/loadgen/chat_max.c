/*
 * chat-max: closed loop. Every sender keeps --window messages in flight (sent but not
 * yet answered with message_sent or an error) for --duration seconds, so the offered
 * load rises until the server is saturated: the delivered rate is the most the server
 * sustains for this many pairs, and the latencies are the price of that rate.
 */
#include <stdio.h>

#include "chat.h"

static int plan(struct lg_run *run)
{
	if (run->o->window < 1 || run->o->window > 65536) {
		fprintf(stderr, "error: --window must be in 1..65536\n");
		return -1;
	}
	return lg_chat_plan(run);
}

static uint32_t in_flight(struct lg_pair *p)
{
	return p->tail - p->head;
}

static void on_writeable(struct lg_worker *w, struct lg_conn *c)
{
	if (w->phase != LG_PHASE_RUN || c->pair < 0)
		return;
	struct lg_pair *p = &w->pairs[c->pair];
	if (p->tx != c || in_flight(p) >= (uint32_t)w->o->window)
		return;
	/* everything the window allows, in one write: one message per write would make the
	 * load generator's send() calls, not the server, the limit */
	int room = (int)((uint32_t)w->o->window - in_flight(p));
	int sent = room > 1 ? lg_chat_send_many(w, p, lg_now_ns(), room)
	                    : (lg_chat_send(w, p, lg_now_ns()) == 0 ? 1 : -1);
	if (sent > 0 && in_flight(p) < (uint32_t)w->o->window)
		lg_conn_want_write(c);
}

static void on_frame(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len)
{
	struct lg_pair *p = lg_chat_on_frame(w, c, data, len);
	if (p && w->phase == LG_PHASE_RUN)
		lg_conn_want_write(p->tx);
}

static void on_phase(struct lg_worker *w)
{
	if (w->phase != LG_PHASE_RUN)
		return;
	for (uint32_t i = 0; i < w->npairs; i++)
		lg_conn_want_write(w->pairs[i].tx);
}

static void on_tick(struct lg_worker *w, int64_t now)
{
	(void)now;
	lg_chat_check_done(w);
}

const struct lg_scenario lg_chat_max = {
    .name = "chat-max",
    .plan = plan,
    .worker_init = lg_chat_worker_init,
    .on_writeable = on_writeable,
    .on_frame = on_frame,
    .on_tick = on_tick,
    .on_phase = on_phase,
    .worker_finish = lg_chat_finish,
    .drive = lg_chat_drive,
    .report = lg_chat_report,
};
