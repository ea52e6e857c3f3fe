/*
 * run: the parent's side of a run: fork the workers, follow them through the phases,
 * sample once a second (progress line on stderr, timeline for the result), and make
 * sure every worker is gone at the end, by SIGKILL if it must. The parent never talks
 * to the server itself (except fanout's one NATS publish), so its own cost is a few
 * wake-ups a second.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lg.h"
#include "procstat.h"

#define POLL_NS 10000000LL    /* parent's wake-up period */
#define REAP_NS 20000000000LL /* workers get 20 s to close their sockets and exit */

static void sleep_ns(int64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

uint64_t lg_run_sum(struct lg_run *run, size_t offset)
{
	uint64_t sum = 0;
	for (int i = 0; i < run->nworkers; i++)
		sum += lg_get((_Atomic uint64_t *)((char *)&run->sh->w[i] + offset));
	return sum;
}

void lg_run_set_phase(struct lg_run *run, int phase)
{
	atomic_store(&run->sh->phase, phase);
}

#define LINGER_NS 500000000LL /* after the run, before the sockets close */

static int all_ready(struct lg_run *run)
{
	for (int i = 0; i < run->nworkers; i++)
		if (!atomic_load(&run->sh->w[i].ready))
			return 0;
	return 1;
}

int lg_run_all_done(struct lg_run *run)
{
	for (int i = 0; i < run->nworkers; i++)
		if (!atomic_load(&run->sh->w[i].done))
			return 0;
	return 1;
}

static int64_t gateway_rss_kb(struct lg_run *run)
{
	int64_t sum = 0;
	int any = 0;
	for (int i = 0; i < run->nwatch; i++) {
		struct lg_watch *wt = &run->watch[i];
		int64_t rss = lg_proc_rss_kb(wt->pid);
		if (rss > wt->rss_peak_kb)
			wt->rss_peak_kb = rss;
		if (wt->is_gateway && rss >= 0) {
			sum += rss;
			any = 1;
		}
	}
	return any ? sum : -1;
}

static void take_sample(struct lg_run *run, struct lg_sample *s, int64_t now)
{
	s->t = (double)(now - run->t0_ns) / 1e9;
	s->connected = LG_SUM(run, connected);
	s->sent = LG_SUM(run, sent);
	s->acked = LG_SUM(run, acked);
	s->delivered = LG_SUM(run, delivered);
	s->errors = LG_SUM(run, errors);
	s->frames_in = LG_SUM(run, frames_in);
	s->gateway_rss_kb = gateway_rss_kb(run);
}

static void sample(struct lg_run *run, int64_t now)
{
	if (run->nsamples == run->cap_samples) {
		size_t cap = run->cap_samples ? 2 * run->cap_samples : 64;
		struct lg_sample *s = realloc(run->samples, cap * sizeof *s);
		if (!s)
			return;
		run->samples = s;
		run->cap_samples = cap;
	}
	struct lg_sample *s = &run->samples[run->nsamples++];
	take_sample(run, s, now);
	lg_report_progress(run, s, run->nsamples > 1 ? s - 1 : NULL);
}

/* A worker that exits before LG_PHASE_END has failed; say so once. */
static int workers_alive(struct lg_run *run)
{
	int ok = 1;
	for (int i = 0; i < run->nworkers; i++) {
		if (run->wpid[i] <= 0)
			continue;
		int status;
		pid_t r = waitpid(run->wpid[i], &status, WNOHANG);
		if (r == run->wpid[i]) {
			fprintf(stderr, "error: worker %d (pid %d) ended early (%s %d)\n", i,
			        (int)r, WIFSIGNALED(status) ? "signal" : "status",
			        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
			run->wpid[i] = 0;
			ok = 0;
		}
	}
	return ok;
}

int lg_run_wait(struct lg_run *run, int64_t until_ns, int (*cond)(struct lg_run *run))
{
	for (;;) {
		int64_t now = lg_now_ns();
		if (now >= run->next_sample_ns) {
			sample(run, now);
			run->next_sample_ns += 1000000000LL;
			if (run->next_sample_ns < now)
				run->next_sample_ns = now + 1000000000LL;
		}
		if (!workers_alive(run)) {
			run->failed = 1;
			return -1;
		}
		if (atomic_load(&run->interrupted)) {
			fprintf(stderr, "error: interrupted\n");
			run->failed = 1;
			return -1;
		}
		if (now >= run->deadline_ns) {
			fprintf(stderr, "error: --max-seconds (%lld) reached\n",
			        (long long)run->o->max_seconds);
			run->failed = 1;
			return -1;
		}
		if (cond && cond(run))
			return 1;
		if (now >= until_ns)
			return 0;
		int64_t step = until_ns - now;
		if (step > POLL_NS)
			step = POLL_NS;
		sleep_ns(step);
	}
}

void lg_run_mark_cpu(struct lg_run *run, int which)
{
	for (int i = 0; i < run->nworkers; i++) {
		int64_t v = run->wpid[i] > 0 ? lg_proc_cpu_ns(run->wpid[i]) : -1;
		int64_t *slot[] = {&run->wcpu0_ns[i], &run->wcpu1_ns[i], &run->wcpuc0_ns[i],
		                   &run->wcpuc1_ns[i]};
		*slot[which] = v;
	}
	if (which == 0)
		lg_sys_cpu(&run->sys_busy0, &run->sys_steal0, &run->sys_total0);
	else if (which == 1)
		lg_sys_cpu(&run->sys_busy1, &run->sys_steal1, &run->sys_total1);
	for (int i = 0; i < run->nwatch; i++) {
		struct lg_watch *wt = &run->watch[i];
		int64_t *slot[] = {&wt->cpu0_ns, &wt->cpu1_ns, &wt->cpuc0_ns, &wt->cpuc1_ns};
		*slot[which] = lg_proc_cpu_ns(wt->pid);
	}
}

void lg_run_mark_rss(struct lg_run *run)
{
	for (int i = 0; i < run->nwatch; i++)
		run->watch[i].rss1_kb = lg_proc_rss_kb(run->watch[i].pid);
}

static void child(struct lg_run *run, int idx, uint64_t first, uint64_t count)
{
	/* the parent coordinates: Ctrl-C reaches it and it ends the run; a worker whose
	 * parent is gone has no one to report to */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	struct lg_worker w;
	memset(&w, 0, sizeof w);
	w.idx = idx;
	w.o = run->o;
	w.sc = run->sc;
	w.tokens = run->tokens;
	w.sh = run->sh;
	w.st = &run->sh->w[idx];
	w.run_id = run->run_id;
	w.nsrc = run->nsrc;
	w.src_first = run->src_first;
	w.pacer_fd = -1;
	w.nconns = (uint32_t)count;
	w.first = first;
	w.connect_rate = run->o->connect_rate > 0
	                     ? (run->o->connect_rate + run->nworkers - 1) / run->nworkers
	                     : 0;
	w.conns = calloc(count ? count : 1, sizeof *w.conns);
	if (!w.conns) {
		fprintf(stderr, "worker %d: out of memory\n", idx);
		_exit(1);
	}
	for (uint64_t i = 0; i < count; i++) {
		w.conns[i].pair = -1;
		w.conns[i].round = -1;
	}
	if (run->sc->worker_init(&w, first, count) < 0) {
		fprintf(stderr, "worker %d: out of memory\n", idx);
		_exit(1);
	}
	fflush(stderr);
	_exit(lg_worker_main(&w));
}

static void reap(struct lg_run *run)
{
	int64_t until = lg_now_ns() + REAP_NS;
	for (;;) {
		int left = 0;
		for (int i = 0; i < run->nworkers; i++) {
			if (run->wpid[i] <= 0)
				continue;
			int status;
			if (waitpid(run->wpid[i], &status, WNOHANG) == run->wpid[i])
				run->wpid[i] = 0;
			else
				left++;
		}
		if (!left)
			return;
		if (lg_now_ns() >= until)
			break;
		sleep_ns(POLL_NS);
	}
	for (int i = 0; i < run->nworkers; i++) {
		if (run->wpid[i] <= 0)
			continue;
		fprintf(stderr, "warning: worker %d (pid %d) did not exit; killing it\n", i,
		        (int)run->wpid[i]);
		kill(run->wpid[i], SIGKILL);
		waitpid(run->wpid[i], NULL, 0);
		run->wpid[i] = 0;
	}
}

int lg_run_execute(struct lg_run *run)
{
	run->sh =
	    mmap(NULL, sizeof *run->sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (run->sh == MAP_FAILED) {
		fprintf(stderr, "error: mmap: %s\n", strerror(errno));
		return -1;
	}
	memset(run->sh, 0, sizeof *run->sh);
	for (int i = 0; i < run->nwatch; i++) {
		run->watch[i].rss0_kb = lg_proc_rss_kb(run->watch[i].pid);
		run->watch[i].rss_peak_kb = run->watch[i].rss0_kb;
	}

	uint64_t unit = run->unit ? run->unit : 1;
	uint64_t units = run->nconns / unit, first = 0;
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < run->nworkers; i++) {
		uint64_t n = (units / (uint64_t)run->nworkers +
		              ((uint64_t)i < units % (uint64_t)run->nworkers)) *
		             unit;
		run->wconns[i] = n;
		pid_t pid = fork();
		if (pid < 0) {
			fprintf(stderr, "error: fork: %s\n", strerror(errno));
			run->nworkers = i;
			lg_run_set_phase(run, LG_PHASE_END);
			reap(run);
			return -1;
		}
		if (pid == 0)
			child(run, i, first, n);
		run->wpid[i] = pid;
		first += n;
	}

	run->t0_ns = lg_now_ns();
	lg_run_mark_cpu(run, 2);
	run->next_sample_ns = run->t0_ns + 1000000000LL;
	run->deadline_ns = run->t0_ns + run->o->max_seconds * 1000000000LL;
	int r = lg_run_wait(run, run->deadline_ns, all_ready);
	run->t_connected_ns = lg_now_ns();
	lg_run_mark_cpu(run, 3);
	if (r > 0)
		run->sc->drive(run);
	if (!run->t_run_ns)
		run->t_run_ns = run->t_connected_ns;
	if (!run->t_stop_ns)
		run->t_stop_ns = lg_now_ns();
	/* Keep the sockets open a moment, as a client that stays does: a server that waits
	 * for the PONG to a PING behind what it delivered before it counts that as read
	 * (Switchboard's gateway does) gets its answers, and the next run on these users is
	 * not replayed this one's last deliveries. */
	int64_t linger = lg_now_ns() + LINGER_NS;
	if (r > 0 && !run->failed && linger < run->deadline_ns)
		lg_run_wait(run, linger, NULL);
	lg_run_set_phase(run, LG_PHASE_END);
	/* one last sample with the final counts */
	sample(run, lg_now_ns());
	reap(run);
	return r > 0 && !run->failed ? 0 : -1;
}
