/*
 * idle: --users users, each with one socket of every kind in --kinds (chat and
 * notifications by default), opened as fast as --connect-rate and --connect-window
 * allow, then held open and silent for --hold seconds. Measures the connect rate
 * (authentication included, since the server checks the token before the upgrade),
 * failures, and the gateway's memory per socket: the VmRSS of the --gateway-pids
 * processes after everything is connected and settled, minus before the first
 * connection, divided by the sockets open. RSS is sampled every second while held,
 * so a soak shows whether memory stays flat.
 */
#include <stdio.h>
#include <string.h>

#include "lg.h"

static int kinds_of(const char *s, uint8_t *kinds)
{
	int n = 0;
	if (strstr(s, "chat"))
		kinds[n++] = LG_CHAT;
	if (strstr(s, "notif"))
		kinds[n++] = LG_NOTIFY;
	return n;
}

static int plan(struct lg_run *run)
{
	struct lg_opts *o = run->o;
	uint8_t kinds[2];
	int k = kinds_of(o->kinds, kinds);
	if (!k) {
		fprintf(stderr, "error: --kinds takes chat, notifications or both (chat,notify)\n");
		return -1;
	}
	if (o->users < 1 || o->hold_s < 0) {
		fprintf(stderr, "error: idle needs --users >= 1 and --hold >= 0\n");
		return -1;
	}
	if ((uint64_t)(o->user_offset + o->users) > run->tokens->n) {
		fprintf(stderr, "error: %lld users from offset %lld, but %s has %zu\n",
		        (long long)o->users, (long long)o->user_offset, o->tokens_path,
		        run->tokens->n);
		return -1;
	}
	run->nconns = (uint64_t)o->users * (uint64_t)k;
	run->unit = (uint64_t)k;
	return 0;
}

static int worker_init(struct lg_worker *w, uint64_t first, uint64_t count)
{
	uint8_t kinds[2];
	int k = kinds_of(w->o->kinds, kinds);
	for (uint64_t i = 0; i < count; i++) {
		w->conns[i].user =
		    (uint32_t)((uint64_t)w->o->user_offset + (first + i) / (uint64_t)k);
		w->conns[i].kind = kinds[(first + i) % (uint64_t)k];
	}
	return 0;
}

static void on_frame(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len)
{
	(void)w;
	(void)c;
	(void)data;
	(void)len; /* backlogs of earlier runs; counted in frames_in only */
}

static void on_phase(struct lg_worker *w)
{
	if (w->phase >= LG_PHASE_STOP)
		atomic_store(&w->st->done, 1);
}

static void drive(struct lg_run *run)
{
	struct lg_opts *o = run->o;
	if (lg_run_wait(run, lg_now_ns() + o->settle_ms * 1000000LL, NULL) < 0)
		return;
	lg_run_mark_rss(run);
	run->t_run_ns = lg_now_ns();
	lg_run_mark_cpu(run, 0);
	lg_run_set_phase(run, LG_PHASE_RUN);
	lg_run_wait(run, run->t_run_ns + o->hold_s * 1000000000LL, NULL);
	run->t_stop_ns = lg_now_ns();
	lg_run_mark_cpu(run, 1);
	lg_run_set_phase(run, LG_PHASE_STOP);
}

static void report(struct lg_run *run, json_t *out)
{
	uint64_t open = LG_SUM(run, connected) - LG_SUM(run, dropped);
	int64_t before = 0, loaded = 0, end = -1, peak = 0;
	int n = 0;
	for (int i = 0; i < run->nwatch; i++) {
		struct lg_watch *wt = &run->watch[i];
		if (!wt->is_gateway || wt->rss0_kb < 0 || wt->rss1_kb < 0)
			continue;
		before += wt->rss0_kb;
		loaded += wt->rss1_kb;
		peak += wt->rss_peak_kb;
		n++;
	}
	/* the last sample taken while the sockets were still held */
	for (size_t i = run->nsamples; i-- > 0;) {
		double t = (double)run->t0_ns / 1e9 + run->samples[i].t;
		if (t <= (double)run->t_stop_ns / 1e9 + 0.001) {
			end = run->samples[i].gateway_rss_kb;
			break;
		}
	}
	json_t *m = json_object();
	json_object_set_new(m, "gateways", json_integer(n));
	json_object_set_new(m, "sockets_open", json_integer((json_int_t)open));
	json_object_set_new(m, "rss_kb_before", n ? json_integer(before) : json_null());
	json_object_set_new(m, "rss_kb_loaded", n ? json_integer(loaded) : json_null());
	json_object_set_new(m, "rss_kb_end_of_hold",
	                    n && end >= 0 ? json_integer(end) : json_null());
	json_object_set_new(m, "rss_kb_peak", n ? json_integer(peak) : json_null());
	json_object_set_new(m, "rss_bytes_per_socket",
	                    n && open ? json_real((double)(loaded - before) * 1024.0 / (double)open)
	                              : json_null());
	json_object_set_new(out, "memory", m);
	json_object_set_new(out, "frames_received",
	                    json_integer((json_int_t)LG_SUM(run, frames_in)));
}

const struct lg_scenario lg_idle = {
    .name = "idle",
    .plan = plan,
    .worker_init = worker_init,
    .on_frame = on_frame,
    .on_phase = on_phase,
    .drive = drive,
    .report = report,
};
