/*
 * report: the progress line (stderr, once a second) and the parts of the JSON result
 * every scenario shares: connections, CPU shares of the load generator and of the
 * watched server processes over the measured window, their memory, and the timeline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lg.h"
#include "procstat.h"

void lg_report_merge(struct lg_run *run, size_t offset, struct lg_hist *out)
{
	lg_hist_reset(out);
	for (int i = 0; i < run->nworkers; i++)
		lg_hist_merge(out, (const struct lg_hist *)((const char *)&run->sh->w[i] + offset));
}

static double per_s(uint64_t a, uint64_t b, double dt)
{
	return dt > 0 && b >= a ? (double)(b - a) / dt : 0;
}

void lg_report_progress(struct lg_run *run, const struct lg_sample *now,
                        const struct lg_sample *prev)
{
	static const char *phases[] = {"connect", "run", "drain", "end"};
	int phase = atomic_load(&run->sh->phase);
	double dt = prev ? now->t - prev->t : 0;
	char mem[48] = "";
	if (now->gateway_rss_kb >= 0)
		snprintf(mem, sizeof mem, " | gw rss %.1f MiB",
		         (double)now->gateway_rss_kb / 1024.0);
	fprintf(stderr,
	        "[%s %5.1fs %s] conn %llu/%llu fail %llu drop %llu | sent %llu (%.0f/s) "
	        "acked %.0f/s deliv %.0f/s err %llu | in %.0f/s%s\n",
	        run->sc->name, now->t, phases[phase & 3], (unsigned long long)now->connected,
	        (unsigned long long)run->nconns, (unsigned long long)LG_SUM(run, failed),
	        (unsigned long long)LG_SUM(run, dropped), (unsigned long long)now->sent,
	        prev ? per_s(prev->sent, now->sent, dt) : 0,
	        prev ? per_s(prev->acked, now->acked, dt) : 0,
	        prev ? per_s(prev->delivered, now->delivered, dt) : 0,
	        (unsigned long long)now->errors,
	        prev ? per_s(prev->frames_in, now->frames_in, dt) : 0, mem);
}

json_t *lg_report_errs(struct lg_run *run, size_t offset)
{
	json_t *errs = json_array();
	for (int i = 0; i < run->nworkers; i++) {
		const struct lg_errs *e =
		    (const struct lg_errs *)((const char *)&run->sh->w[i] + offset);
		for (int k = 0; k < LG_MAX_ERRS && e->text[k][0]; k++) {
			size_t j;
			json_t *v;
			int merged = 0;
			json_array_foreach(errs, j, v)
			{
				if (!strcmp(json_string_value(json_object_get(v, "text")),
				            e->text[k])) {
					json_int_t n =
					    json_integer_value(json_object_get(v, "count"));
					json_object_set_new(
					    v, "count", json_integer(n + (json_int_t)e->count[k]));
					merged = 1;
				}
			}
			if (!merged)
				json_array_append_new(errs,
				                      json_pack("{s:s,s:I}", "text", e->text[k],
				                                "count", (json_int_t)e->count[k]));
		}
		if (e->other)
			json_array_append_new(errs, json_pack("{s:s,s:I}", "text", "(other texts)",
			                                      "count", (json_int_t)e->other));
	}
	return errs;
}

static json_t *connections(struct lg_run *run)
{
	json_t *c = json_object();
	uint64_t connected = LG_SUM(run, connected);
	json_object_set_new(c, "planned", json_integer((json_int_t)run->nconns));
	json_object_set_new(c, "attempted", json_integer((json_int_t)LG_SUM(run, attempted)));
	json_object_set_new(c, "connected", json_integer((json_int_t)connected));
	json_object_set_new(c, "failed", json_integer((json_int_t)LG_SUM(run, failed)));
	json_object_set_new(c, "dropped", json_integer((json_int_t)LG_SUM(run, dropped)));

	int64_t first = 0, last = 0;
	for (int i = 0; i < run->nworkers; i++) {
		int64_t f = atomic_load(&run->sh->w[i].t_first_ns);
		int64_t l = atomic_load(&run->sh->w[i].t_last_ns);
		if (f && (!first || f < first))
			first = f;
		if (l > last)
			last = l;
	}
	double secs = first && last > first ? (double)(last - first) / 1e9 : 0;
	json_object_set_new(c, "seconds", json_real(secs));
	json_object_set_new(c, "per_s",
	                    secs > 0 ? json_real((double)connected / secs) : json_null());

	struct lg_hist *h = calloc(1, sizeof *h);
	if (h) {
		LG_MERGE(run, connect_us, h);
		json_object_set_new(c, "connect_us", lg_hist_json(h));
		free(h);
	}
	json_t *errs = lg_report_errs(run, offsetof(struct lg_wstats, errs));
	json_object_set_new(c, "errors", errs);
	return c;
}

/* CPU shares over one window: the load generator's workers, each watched process, and
 * (run window only) the whole machine. 100 % is one core. */
static json_t *cpu(struct lg_run *run, int connect)
{
	int64_t t0 = connect ? run->t0_ns : run->t_run_ns;
	int64_t t1 = connect ? run->t_connected_ns : run->t_stop_ns;
	double window = (double)(t1 - t0) / 1e9;
	json_t *o = json_object();
	json_object_set_new(o, "window_s", json_real(window));
	int64_t lg = 0;
	int ok = window > 0;
	for (int i = 0; i < run->nworkers; i++) {
		int64_t a = connect ? run->wcpuc0_ns[i] : run->wcpu0_ns[i];
		int64_t b = connect ? run->wcpuc1_ns[i] : run->wcpu1_ns[i];
		if (a < 0 || b < a)
			ok = 0;
		lg += b - a;
	}
	json_object_set_new(o, "loadgen_pct",
	                    ok ? json_real(100.0 * (double)lg / 1e9 / window) : json_null());
	json_t *procs = json_array();
	for (int i = 0; i < run->nwatch; i++) {
		struct lg_watch *wt = &run->watch[i];
		int64_t a = connect ? wt->cpuc0_ns : wt->cpu0_ns;
		int64_t b = connect ? wt->cpuc1_ns : wt->cpu1_ns;
		int good = window > 0 && a >= 0 && b >= a;
		json_t *p = json_pack(
		    "{s:s,s:i,s:o}", "name", wt->name, "pid", (int)wt->pid, "cpu_pct",
		    good ? json_real(100.0 * (double)(b - a) / 1e9 / window) : json_null());
		if (!connect) {
			json_object_set_new(p, "rss_kb_before", json_integer(wt->rss0_kb));
			json_object_set_new(p, "rss_kb_loaded", json_integer(wt->rss1_kb));
			json_object_set_new(p, "rss_kb_peak", json_integer(wt->rss_peak_kb));
		}
		json_array_append_new(procs, p);
	}
	json_object_set_new(o, "processes", procs);
	if (connect)
		return o;
	/* the whole machine over the same window: what neither we nor the watched
	 * processes used was used by someone else (other jobs skew the figures) */
	json_object_set_new(o, "cpus", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
	/* machine_steal_pct: of which the hypervisor ran someone else on our virtual CPUs
	 * (on a shared VM the latency tail follows it) */
	lg_sys_cpu_json(o, (const int64_t[3]){run->sys_busy0, run->sys_steal0, run->sys_total0},
	                (const int64_t[3]){run->sys_busy1, run->sys_steal1, run->sys_total1});
	return o;
}

static json_t *timeline(struct lg_run *run)
{
	json_t *a = json_array();
	for (size_t i = 0; i < run->nsamples; i++) {
		const struct lg_sample *s = &run->samples[i];
		json_array_append_new(a,
		                      json_pack("[f,I,I,I,I,I,I]", s->t, (json_int_t)s->connected,
		                                (json_int_t)s->sent, (json_int_t)s->acked,
		                                (json_int_t)s->delivered, (json_int_t)s->frames_in,
		                                (json_int_t)s->gateway_rss_kb));
	}
	return a;
}

json_t *lg_report_common(struct lg_run *run)
{
	struct lg_opts *o = run->o;
	char id[16];
	snprintf(id, sizeof id, "%08x", run->run_id);
	json_t *r = json_object();
	json_object_set_new(r, "scenario", json_string(run->sc->name));
	json_object_set_new(r, "label", json_string(o->label));
	json_object_set_new(r, "target", json_string(o->target));
	json_object_set_new(r, "run_id", json_string(id));
	json_object_set_new(r, "workers", json_integer(run->nworkers));
	json_object_set_new(r, "src_addrs", json_integer(run->nsrc));
	json_object_set_new(r, "src_first", json_integer(run->src_first));
	json_object_set_new(
	    r, "params",
	    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "pairs",
	              (json_int_t)o->pairs, "rate", (json_int_t)o->rate, "duration_s",
	              (json_int_t)o->duration_s, "window", (json_int_t)o->window, "msg_bytes",
	              (json_int_t)o->msg_bytes, "users", (json_int_t)o->users, "hold_s",
	              (json_int_t)o->hold_s, "rounds", (json_int_t)o->rounds, "connect_rate",
	              (json_int_t)o->connect_rate, "connect_window", (json_int_t)o->connect_window,
	              "settle_ms", (json_int_t)o->settle_ms, "user_offset",
	              (json_int_t)o->user_offset, "kinds", o->kinds));
	json_object_set_new(json_object_get(r, "params"), "pace_timer",
	                    json_boolean(o->pace_timer));
	json_object_set_new(r, "connections", connections(run));
	json_object_set_new(r, "cpu", cpu(run, 0));
	json_object_set_new(r, "cpu_connect", cpu(run, 1));
	json_object_set_new(r, "timeline_columns",
	                    json_pack("[s,s,s,s,s,s,s]", "t_s", "connected", "sent", "acked",
	                              "delivered", "frames_in", "gateway_rss_kb"));
	json_object_set_new(r, "timeline", timeline(run));
	return r;
}
