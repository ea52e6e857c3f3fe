/*
 * lg: the load generator's shared types.
 *
 * Shape: one parent process plans the run, forks up to LG_MAX_WORKERS workers and
 * supervises them; each worker owns one libwebsockets client context (one service
 * loop, no threads) and a slice of the connections, so a run can hold more sockets
 * than one process may open (the fd limit) and use more than one core. Workers and
 * parent share one anonymous mapping (struct lg_shared): the parent writes the phase
 * and the start times, each worker writes only its own struct lg_wstats (counters as
 * relaxed atomics the parent reads once a second for the progress line, histograms it
 * reads after the worker has exited). Nothing else crosses a process boundary.
 *
 * Every run is bounded: connections by --max-conns, time by the scenario's own
 * durations plus --max-seconds, which the parent enforces with SIGKILL.
 */
#ifndef LG_H
#define LG_H

#include <jansson.h>
#include <libwebsockets.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "hist.h"
#include "tokens.h"

#define LG_MAX_WORKERS   16
#define LG_MAX_ROUNDS    8
#define LG_MAX_ERRS      4
#define LG_MAX_PIDS      16
#define LG_MAX_TARGETS   16
#define LG_MAX_SECONDS   3600
#define LG_RX_MAX        (1 << 20) /* largest server frame we reassemble */
#define LG_CONNS_PER_SRC 8000      /* sockets per 127.0.0.x source address; see main.c */

enum lg_kind { LG_CHAT = 0, LG_NOTIFY = 1 };

/* Set by the parent, followed by every worker. */
enum lg_phase {
	LG_PHASE_CONNECT = 0, /* open the connections */
	LG_PHASE_RUN,         /* send (chat) / hold (idle) / receive broadcasts (fanout) */
	LG_PHASE_STOP,        /* stop sending, wait for what is in flight */
	LG_PHASE_END,         /* close everything and exit */
};

/* Distinct connection error texts (from lws), with counts. */
struct lg_errs {
	char text[LG_MAX_ERRS][96];
	uint64_t count[LG_MAX_ERRS];
	uint64_t other;
};

/* One worker's results. Counters are written by the worker only. */
struct lg_wstats {
	_Atomic uint64_t attempted, connected, failed, dropped;
	_Atomic uint64_t sent, acked, errors, delivered, dup, ooo, foreign, frames_in;
	_Atomic uint64_t lost, unanswered, stalled;
	_Atomic uint64_t fanout_got[LG_MAX_ROUNDS];
	_Atomic int ready;           /* every connection is established or failed */
	_Atomic int done;            /* nothing of ours is in flight any more */
	_Atomic int exited;          /* results below are final */
	_Atomic int64_t t_first_ns;  /* first connect attempt (CLOCK_MONOTONIC) */
	_Atomic int64_t t_last_ns;   /* last connection established */
	int64_t cpu_ns;              /* the worker's own CPU time, at exit */
	struct lg_errs errs;         /* why connections failed */
	struct lg_errs refusals;     /* the texts of {"type":"error"} frames */
	struct lg_hist connect_us;   /* TCP connect + upgrade (auth included) */
	struct lg_hist e2e_us;       /* send (intended time) -> chat_message received */
	struct lg_hist ack_us;       /* send (intended time) -> message_sent received */
	struct lg_hist lag_us;       /* intended send time -> actual write (open loop) */
	struct lg_hist e2e_write_us; /* actual write -> chat_message received */
	struct lg_hist ack_write_us; /* actual write -> message_sent received */
	struct lg_hist fanout_us[LG_MAX_ROUNDS]; /* publish -> notify received */
};

struct lg_shared {
	_Atomic int phase;
	_Atomic int64_t t_start_ns; /* start of LG_PHASE_RUN */
	_Atomic int64_t t_publish_ns[LG_MAX_ROUNDS];
	struct lg_wstats w[LG_MAX_WORKERS];
};

/* Everything on the command line. */
struct lg_opts {
	const char *scenario;
	const char *target; /* HOST:PORT */
	const char *tokens_path;
	const char *label;
	const char *gateway_pids; /* "pid,pid" */
	const char *pids;         /* "name=pid,name=pid" */
	const char *nats_url;
	const char *kinds;     /* idle: "chat,notify" */
	const char *event_lib; /* "ev" (epoll through libev), "uv" or "poll" */
	int64_t procs, src_addrs, src_first, max_conns, max_seconds;
	int64_t connect_rate, connect_window, connect_timeout_s, settle_ms;
	int64_t user_offset;
	int64_t pairs, rate, duration_s, drain_s, window, msg_bytes;
	int64_t users, hold_s;
	int64_t rounds, round_timeout_s;
	int pace_timer; /* chat-rate: wake at each due time, not only on the 1 ms tick */
	/* parsed: --target is one HOST:PORT or a comma list; connection i goes to
	 * target i mod ntargets */
	char host[LG_MAX_TARGETS][128];
	int port[LG_MAX_TARGETS];
	int ntargets;
};

/* A process whose CPU and RSS the run reports (the gateway, chat-svc, nats-server...). */
struct lg_watch {
	char name[32];
	pid_t pid;
	int is_gateway;
	int64_t rss0_kb, rss1_kb, rss_peak_kb; /* before connecting, after connecting, peak */
	int64_t cpu0_ns, cpu1_ns;              /* at start / end of LG_PHASE_RUN */
	int64_t cpuc0_ns, cpuc1_ns;            /* at start / end of LG_PHASE_CONNECT */
};

struct lg_scenario;

/* A per-second sample of the run, for the timeline in the JSON result. */
struct lg_sample {
	double t;
	uint64_t connected, sent, acked, delivered, errors, frames_in;
	int64_t gateway_rss_kb;
};

/* The parent's view of a run. */
struct lg_run {
	struct lg_opts *o;
	const struct lg_scenario *sc;
	struct lg_tokens *tokens;
	struct lg_shared *sh;
	uint32_t run_id; /* random; tags every message so old ones are recognised */
	int nworkers;
	int nsrc;        /* source addresses in use */
	int src_first;   /* the first of them is 127.0.0.src_first */
	uint64_t nconns; /* connections in the whole run */
	uint64_t unit;   /* workers get multiples of this many (chat: a pair) */
	uint64_t wconns[LG_MAX_WORKERS];
	pid_t wpid[LG_MAX_WORKERS];
	int64_t wcpu0_ns[LG_MAX_WORKERS], wcpu1_ns[LG_MAX_WORKERS];
	int64_t sys_busy0, sys_steal0, sys_total0; /* /proc/stat ticks */
	int64_t sys_busy1, sys_steal1, sys_total1;
	int64_t wcpuc0_ns[LG_MAX_WORKERS], wcpuc1_ns[LG_MAX_WORKERS]; /* connect phase */
	struct lg_watch watch[LG_MAX_PIDS];
	int nwatch;
	int64_t t0_ns;          /* parent start */
	int64_t t_connected_ns; /* every worker ready */
	int64_t t_run_ns;       /* LG_PHASE_RUN began */
	int64_t t_stop_ns;      /* LG_PHASE_STOP began */
	uint64_t sent_at_stop, acked_at_stop, delivered_at_stop;
	int64_t deadline_ns; /* --max-seconds */
	int64_t next_sample_ns;
	struct lg_sample *samples;
	size_t nsamples, cap_samples;
	_Atomic int interrupted; /* SIGINT or SIGTERM: end the run, report what there is */
	int failed;              /* interrupted, out of time, or a worker died */
	int fan_round;           /* fanout: the broadcast being timed */
	uint64_t fan_expect;     /* fanout: sockets that should receive it */
};

/* One client connection, owned by a worker. */
struct lg_conn {
	struct lws *wsi;
	uint32_t user; /* index into the token table */
	uint8_t kind;  /* enum lg_kind */
	uint8_t open;
	uint8_t closed;
	uint8_t writing; /* lws_callback_on_writable() asked, not yet served */
	int32_t pair;    /* chat: index of the pair in the worker, or -1 */
	int32_t round;   /* fanout: last round received, -1 = none */
	int64_t t_connect_ns;
	char *rx; /* reassembly of a frame split over several callbacks */
	uint32_t rx_len;
};

struct lg_pair;

/* A worker's state. */
struct lg_worker {
	int idx;
	const struct lg_opts *o;
	const struct lg_scenario *sc;
	struct lg_tokens *tokens;
	struct lg_shared *sh;
	struct lg_wstats *st;
	uint32_t run_id;
	int nsrc;
	int src_first;
	struct lws_context *ctx;
	lws_sorted_usec_list_t tick;
	int pacer_fd;           /* timerfd on the loop when the scenario paces, else -1 */
	int64_t pacer_armed_ns; /* when it fires next (0: disarmed) */
	struct lg_conn *conns;
	uint32_t nconns, next_connect, pending;
	uint64_t first;       /* run-wide index of conns[0] */
	int64_t connect_rate; /* this worker's share; 0 = unlimited */
	int64_t t_connect0_ns;
	int64_t last_expiry_ns;
	int phase;    /* last phase acted on */
	int stopping; /* lws_context_destroy is running: closes are ours */
	int finished; /* worker_finish ran */
	/* chat */
	struct lg_pair *pairs;
	uint32_t npairs;
	uint32_t pair_base;   /* global index of this worker's first pair */
	double period_ns;     /* open loop: time between two messages of one pair */
	uint64_t inflight;    /* sent, neither acknowledged nor refused yet */
	uint64_t undelivered; /* sent, not refused, not received yet */
};

/* A scenario: the parent-side hooks run in the parent, the rest in each worker, on the
 * worker's lws loop. */
struct lg_scenario {
	const char *name;
	/* parent: validate options, set run->nconns (and defaults). 0 or -1. */
	int (*plan)(struct lg_run *run);
	/* worker: fill w->conns[0..w->nconns) (kind, user) and scenario state. 0 or -1. */
	int (*worker_init)(struct lg_worker *w, uint64_t first, uint64_t count);
	void (*on_open)(struct lg_worker *w, struct lg_conn *c);
	void (*on_writeable)(struct lg_worker *w, struct lg_conn *c);
	void (*on_frame)(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len);
	void (*on_tick)(struct lg_worker *w, int64_t now_ns);
	/* worker, optional: ask every connection whose next send is due by now_ns to write,
	 * and return when the next one falls due (lg_now_ns() clock), 0 for none. The worker
	 * calls it on every tick and, with --pace-timer, also wakes for that time (a timerfd
	 * on its loop), so a send leaves within ~50 us of when it was due instead of up to
	 * 1-2 ms after. */
	int64_t (*pace)(struct lg_worker *w, int64_t now_ns);
	/* worker: the phase changed to w->phase */
	void (*on_phase)(struct lg_worker *w);
	/* worker: compute final counts (lost...) before exit */
	void (*worker_finish)(struct lg_worker *w);
	/* parent: everything is connected; run the scenario's phases, return to end it */
	void (*drive)(struct lg_run *run);
	/* parent: add the scenario's results to out */
	void (*report)(struct lg_run *run, json_t *out);
};

extern const struct lg_scenario lg_chat_rate, lg_chat_max, lg_idle, lg_fanout;

/* A paced scenario's send falls due at due_ns: make sure the pacer wakes by then. */
void lg_pace_by(struct lg_worker *w, int64_t due_ns);

/* Relaxed counter update; a worker is single-threaded, the parent only reads. */
static inline void lg_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t lg_get(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t lg_now_ns(void);

/* --- client.c (worker side) --- */

/* The worker's body: connect, serve the loop until LG_PHASE_END, finish, exit status. */
int lg_worker_main(struct lg_worker *w);

/* Count one occurrence of an error text (len bytes, need not be NUL-terminated). */
void lg_note_error(struct lg_errs *e, const char *text, size_t len);

/* Ask for a WRITEABLE callback on an open connection (once until it is served). */
void lg_conn_want_write(struct lg_conn *c);

/* Write one text frame on c (call only from on_writeable). 0 or -1. */
int lg_conn_write(struct lg_conn *c, unsigned char *buf_after_pre, size_t len);

/* --- run.c (parent side) --- */

/* Fork the workers and supervise the run to its end. 0 or -1. */
int lg_run_execute(struct lg_run *run);

/* Sleep until `until_ns` (or the run's deadline), printing progress and sampling once
 * a second. When `cond` is given, return early once it returns non-zero. Returns 1
 * when the wait ended by cond, 0 at until_ns, -1 at the run deadline or when a worker
 * died. */
int lg_run_wait(struct lg_run *run, int64_t until_ns, int (*cond)(struct lg_run *run));

/* Set the phase every worker follows. */
void lg_run_set_phase(struct lg_run *run, int phase);

/* Sum of one counter over every worker; the member is given as an offset. */
uint64_t lg_run_sum(struct lg_run *run, size_t offset);
#define LG_SUM(run, field) lg_run_sum(run, offsetof(struct lg_wstats, field))

/* Condition helpers for lg_run_wait. */
int lg_run_all_done(struct lg_run *run);

/* Record every watched process's RSS now as its "loaded" value. */
void lg_run_mark_rss(struct lg_run *run);

/* Sample CPU of the workers and the watched processes: which = 0/1 start/end of the
 * run phase, 2/3 start/end of the connect phase. */
void lg_run_mark_cpu(struct lg_run *run, int which);

/* --- report.c --- */

/* Print the progress line for the current moment (stderr). */
void lg_report_progress(struct lg_run *run, const struct lg_sample *now,
                        const struct lg_sample *prev);

/* Build the result object common to every scenario (connections, CPU, RSS, timeline). */
json_t *lg_report_common(struct lg_run *run);

/* The distinct texts of one struct lg_errs over every worker, as [{text, count}]. */
json_t *lg_report_errs(struct lg_run *run, size_t offset);

/* Merge one histogram over every worker. */
void lg_report_merge(struct lg_run *run, size_t offset, struct lg_hist *out);
#define LG_MERGE(run, field, out) lg_report_merge(run, offsetof(struct lg_wstats, field), out)

#endif
