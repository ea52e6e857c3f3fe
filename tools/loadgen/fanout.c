/*
 * fanout: --users notification sockets, then --rounds broadcasts, each one published
 * by this process on NATS (notify.send.json {"all":true,...}, the public injection
 * interface) right after it records the publish time in the shared mapping. Every
 * worker times the arrival of the broadcast's notify frame on each socket against that
 * time; the result is the time until 50 %, 99 % and 100 % of the open sockets had it.
 * The broadcast's text carries the run id and round ("lg RUN ROUND"), so backlog
 * replays of earlier broadcasts are not mistaken for it.
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>

#include "frames.h"
#include "lg.h"

#define SUBJECT "notify.send.json"

static int plan(struct lg_run *run)
{
	struct lg_opts *o = run->o;
	if (o->users < 1 || o->rounds < 1 || o->rounds > LG_MAX_ROUNDS || o->round_timeout_s < 1) {
		fprintf(stderr,
		        "error: fanout needs --users >= 1, --rounds 1..%d, --round-timeout >= 1\n",
		        LG_MAX_ROUNDS);
		return -1;
	}
	if ((uint64_t)(o->user_offset + o->users) > run->tokens->n) {
		fprintf(stderr, "error: %lld users from offset %lld, but %s has %zu\n",
		        (long long)o->users, (long long)o->user_offset, o->tokens_path,
		        run->tokens->n);
		return -1;
	}
	run->nconns = (uint64_t)o->users;
	return 0;
}

static int worker_init(struct lg_worker *w, uint64_t first, uint64_t count)
{
	for (uint64_t i = 0; i < count; i++) {
		w->conns[i].user = (uint32_t)((uint64_t)w->o->user_offset + first + i);
		w->conns[i].kind = LG_NOTIFY;
	}
	return 0;
}

static void on_frame(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len)
{
	uint64_t f[2];
	if (lg_frame_type(data, len) != LG_F_NOTIFY || lg_frame_marker(data, len, f, 2) < 2 ||
	    f[0] != w->run_id || f[1] >= LG_MAX_ROUNDS) {
		lg_add(&w->st->foreign, 1);
		return;
	}
	int r = (int)f[1];
	if (r <= c->round) {
		lg_add(&w->st->dup, 1);
		return;
	}
	int64_t t0 = atomic_load(&w->sh->t_publish_ns[r]);
	c->round = r;
	lg_add(&w->st->fanout_got[r], 1);
	lg_hist_add(&w->st->fanout_us[r], (lg_now_ns() - t0) / 1000);
}

static void on_phase(struct lg_worker *w)
{
	if (w->phase >= LG_PHASE_STOP)
		atomic_store(&w->st->done, 1);
}

static int round_complete(struct lg_run *run)
{
	return LG_SUM(run, fanout_got[run->fan_round]) >= run->fan_expect;
}

static void drive(struct lg_run *run)
{
	struct lg_opts *o = run->o;
	natsConnection *nc = NULL;
	natsStatus s = natsConnection_ConnectTo(&nc, o->nats_url);
	if (s != NATS_OK) {
		fprintf(stderr, "error: NATS %s: %s\n", o->nats_url, natsStatus_GetText(s));
		return;
	}
	if (lg_run_wait(run, lg_now_ns() + o->settle_ms * 1000000LL, NULL) < 0)
		goto out;
	lg_run_mark_rss(run);
	run->t_run_ns = lg_now_ns();
	lg_run_mark_cpu(run, 0);
	lg_run_set_phase(run, LG_PHASE_RUN);
	run->fan_expect = LG_SUM(run, connected) - LG_SUM(run, dropped);
	for (run->fan_round = 0; run->fan_round < o->rounds; run->fan_round++) {
		char body[256];
		snprintf(body, sizeof body,
		         "{\"all\":true,\"title\":\"lg fanout\",\"message\":\"lg %x %d\","
		         "\"notification_type\":\"bench\"}",
		         run->run_id, run->fan_round);
		atomic_store(&run->sh->t_publish_ns[run->fan_round], lg_now_ns());
		s = natsConnection_PublishString(nc, SUBJECT, body);
		if (s == NATS_OK)
			s = natsConnection_FlushTimeout(nc, 5000);
		if (s != NATS_OK) {
			fprintf(stderr, "error: publish on %s: %s\n", SUBJECT,
			        natsStatus_GetText(s));
			break;
		}
		int r = lg_run_wait(run, lg_now_ns() + o->round_timeout_s * 1000000000LL,
		                    round_complete);
		if (r < 0)
			break;
		/* a pause, so that stragglers of this round do not overlap the next */
		if (run->fan_round + 1 < o->rounds &&
		    lg_run_wait(run, lg_now_ns() + 500000000LL, NULL) < 0)
			break;
	}
	run->t_stop_ns = lg_now_ns();
	lg_run_mark_cpu(run, 1);
	lg_run_set_phase(run, LG_PHASE_STOP);
out:
	natsConnection_Destroy(nc);
	nats_Close();
}

static json_t *ms_at(const struct lg_hist *h, uint64_t expect, double q)
{
	uint64_t rank = (uint64_t)((double)expect * q + 0.999999);
	int64_t v = lg_hist_at_rank(h, rank ? rank : 1);
	return v < 0 ? json_null() : json_real((double)v / 1000.0);
}

static void report(struct lg_run *run, json_t *out)
{
	uint64_t expect = run->fan_expect;
	json_t *rounds = json_array();
	struct lg_hist *h = calloc(1, sizeof *h);
	if (!h)
		return;
	for (int r = 0; r < run->o->rounds && r <= run->fan_round && r < LG_MAX_ROUNDS; r++) {
		LG_MERGE(run, fanout_us[r], h);
		json_array_append_new(
		    rounds, json_pack("{s:i,s:I,s:I,s:o,s:o,s:o}", "round", r, "sockets",
		                      (json_int_t)expect, "received", (json_int_t)h->count,
		                      "t50_ms", ms_at(h, expect, 0.50), "t99_ms",
		                      ms_at(h, expect, 0.99), "t100_ms", ms_at(h, expect, 1.0)));
	}
	free(h);
	json_object_set_new(out, "rounds", rounds);
	json_object_set_new(out, "duplicates", json_integer((json_int_t)LG_SUM(run, dup)));
	json_object_set_new(out, "foreign", json_integer((json_int_t)LG_SUM(run, foreign)));
}

const struct lg_scenario lg_fanout = {
    .name = "fanout",
    .plan = plan,
    .worker_init = worker_init,
    .on_frame = on_frame,
    .on_phase = on_phase,
    .drive = drive,
    .report = report,
};
