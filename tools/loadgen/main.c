/*
 * sb-loadgen: a load generator for the Switchboard client protocol (SPEC §2).
 *
 *   sb-loadgen SCENARIO --target HOST:PORT --tokens FILE [options]
 *
 * Scenarios: chat-rate (open loop at a fixed rate), chat-max (closed loop, highest
 * sustained rate), idle (many held sockets: connect rate, gateway memory per socket),
 * fanout (one NATS broadcast to many notification sockets). It speaks only the public
 * protocol and takes tokens from a file, so it can be pointed at any implementation of
 * the protocol, the bare relay (tools/relay) included. Progress goes to stderr once a
 * second, the result to stdout as one JSON object. main parses, plans and prints; run.c
 * forks and supervises the workers; client.c is a worker's loop.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>

#include "lg.h"
#include "sb_config.h"
#include "sb_util.h"

#define CONNS_PER_WORKER 15000 /* under the 20,000 open files a process may have */

static const char usage[] =
    "usage: sb-loadgen SCENARIO [options]\n\n"
    "Load generator for the Switchboard client protocol (ws://HOST:PORT/ws/chat/?token=T,\n"
    "/ws/notifications/?token=T). Progress on stderr once a second, one JSON result on\n"
    "stdout. The token file has one \"USER_ID TOKEN\" per line.\n\n"
    "Scenarios:\n"
    "  chat-rate  --pairs P --rate R --duration T   open loop: P sender/receiver pairs at\n"
    "                                                R messages/s in all, for T seconds\n"
    "  chat-max   --pairs P --window W --duration T closed loop: W messages in flight per\n"
    "                                                sender; the highest sustained rate\n"
    "  idle       --users N --hold H [--kinds K]    N users x (chat + notification) sockets\n"
    "                                                held H seconds; connect rate, gateway RSS\n"
    "  fanout     --users N --nats URL [--rounds R] N notification sockets; a broadcast on\n"
    "                                                NATS; time until 50/99/100 %% have it";

static const struct lg_scenario *const scenarios[] = {&lg_chat_rate, &lg_chat_max, &lg_idle,
                                                      &lg_fanout};

static int parse_pids(struct lg_run *run, const char *list, int gateway)
{
	if (!list || !*list)
		return 0;
	char *copy = strdup(list), *save = NULL;
	if (!copy)
		return -1;
	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		if (run->nwatch == LG_MAX_PIDS) {
			fprintf(stderr, "error: at most %d watched processes\n", LG_MAX_PIDS);
			free(copy);
			return -1;
		}
		struct lg_watch *wt = &run->watch[run->nwatch];
		const char *num = item;
		char *eq = strchr(item, '=');
		if (eq) {
			*eq = 0;
			num = eq + 1;
			snprintf(wt->name, sizeof wt->name, "%s", item);
		} else {
			snprintf(wt->name, sizeof wt->name, "%s", gateway ? "gateway" : "process");
		}
		uint64_t pid;
		if (sb_parse_u64(num, 1u << 30, &pid) < 0) {
			fprintf(stderr, "error: \"%s\" is not a pid\n", num);
			free(copy);
			return -1;
		}
		wt->pid = (pid_t)pid;
		wt->is_gateway = gateway;
		wt->cpu0_ns = wt->cpu1_ns = -1;
		run->nwatch++;
	}
	free(copy);
	return 0;
}

static struct lg_run *the_run; /* for the signal handler only */

static void on_signal(int sig)
{
	(void)sig;
	if (the_run)
		atomic_store(&the_run->interrupted, 1);
}

static int parse_targets(struct lg_opts *o)
{
	char *copy = strdup(o->target), *save = NULL;
	if (!copy)
		return -1;
	int rc = 0;
	for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save)) {
		if (o->ntargets == LG_MAX_TARGETS ||
		    sb_parse_listen(t, o->host[o->ntargets], sizeof o->host[0],
		                    &o->port[o->ntargets]) < 0)
			rc = -1;
		else
			o->ntargets++;
	}
	free(copy);
	return rc == 0 && o->ntargets > 0 ? 0 : -1;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int size_workers(struct lg_run *run)
{
	struct lg_opts *o = run->o;
	struct rlimit rl;
	uint64_t per = CONNS_PER_WORKER;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 128 && rl.rlim_cur - 100 < per)
		per = rl.rlim_cur - 100;
	if (run->nconns > (uint64_t)o->max_conns) {
		fprintf(stderr, "error: %llu connections planned, over --max-conns %lld\n",
		        (unsigned long long)run->nconns, (long long)o->max_conns);
		return -1;
	}
	run->nworkers = (int)o->procs;
	if (run->nworkers <= 0)
		run->nworkers = (int)((run->nconns + per - 1) / per);
	if (run->nworkers < 1)
		run->nworkers = 1;
	if (run->nworkers > LG_MAX_WORKERS) {
		fprintf(stderr, "error: at most %d worker processes\n", LG_MAX_WORKERS);
		return -1;
	}
	uint64_t unit = run->unit ? run->unit : 1;
	if ((uint64_t)run->nworkers > run->nconns / unit)
		run->nworkers = (int)(run->nconns / unit);
	if ((run->nconns + (uint64_t)run->nworkers - 1) / (uint64_t)run->nworkers > per) {
		fprintf(stderr, "error: %llu connections need more than %d processes of %llu\n",
		        (unsigned long long)run->nconns, run->nworkers, (unsigned long long)per);
		return -1;
	}
	int local = 1;
	for (int i = 0; i < o->ntargets; i++)
		local &= !strncmp(o->host[i], "127.", 4) || !strcmp(o->host[i], "localhost");
	/* One source address has ~28,000 ephemeral ports towards one server port, and a
	 * socket bound to a source address gets its port at bind() time, by a search that
	 * slows down sharply as the range fills (at 25,000 per address connects fell to a
	 * few hundred a second). Hence a source address per 8,000 sockets. */
	run->nsrc = (int)o->src_addrs;
	if (run->nsrc <= 0)
		run->nsrc = (int)((run->nconns + LG_CONNS_PER_SRC - 1) / LG_CONNS_PER_SRC);
	if (run->nsrc < 1 || !local)
		run->nsrc = 1;
	if (run->nsrc > 254)
		run->nsrc = 254;
	run->src_first = (int)o->src_first;
	if (o->src_first < 1 || (o->src_first != 1 && !local) ||
	    o->src_first + run->nsrc - 1 > 254) {
		fprintf(stderr,
		        "error: --src-first %lld: the %d source address(es) must fit in "
		        "127.0.0.1..254 (and need a local target)\n",
		        (long long)o->src_first, run->nsrc);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct lg_opts o;
	memset(&o, 0, sizeof o);
	const struct sb_opt opts[] = {
	    {"target", NULL, SB_OPT_STR, &o.target, "127.0.0.1:8000",
	     "server HOST:PORT, or a comma list: connections are dealt out in turn"},
	    {"tokens", NULL, SB_OPT_STR, &o.tokens_path, "", "token file: \"USER_ID TOKEN\" lines"},
	    {"user-offset", NULL, SB_OPT_INT, &o.user_offset, "0",
	     "skip this many users of the token file"},
	    {"label", NULL, SB_OPT_STR, &o.label, "", "free text copied into the result"},
	    {"procs", NULL, SB_OPT_INT, &o.procs, "0",
	     "worker processes; 0 = one per 15,000 sockets"},
	    {"src-addrs", NULL, SB_OPT_INT, &o.src_addrs, "0",
	     "spread sockets over 127.0.0.1..N (local targets); 0 = one per 8,000 sockets"},
	    {"src-first", NULL, SB_OPT_INT, &o.src_first, "1",
	     "the spread starts at 127.0.0.N: runs back to back on other addresses do not "
	     "meet the last run's TIME_WAIT sockets"},
	    {"max-conns", NULL, SB_OPT_INT, &o.max_conns, "200000", "refuse to plan more sockets"},
	    {"max-seconds", NULL, SB_OPT_INT, &o.max_seconds, "600",
	     "hard bound on the whole run; workers are killed after it"},
	    {"connect-rate", NULL, SB_OPT_INT, &o.connect_rate, "0",
	     "new connections per second, all workers; 0 = as fast as the window allows"},
	    /* 64: more in flight only queue (lws keeps its timers in sorted lists:
	     * lws_dll2_add_sorted was 12 % of the load generator's CPU when connecting).
	     * 50,000 sockets on 6 gateways: 256 gave 4,208-4,932 connects/s, 128
	     * 5,485-6,250, 64 5,121-6,332 (connect p50 a fifth of 256's), 32 5,036 */
	    {"connect-window", NULL, SB_OPT_INT, &o.connect_window, "64",
	     "handshakes in flight per worker"},
	    {"connect-timeout", NULL, SB_OPT_INT, &o.connect_timeout_s, "20",
	     "seconds one handshake may take"},
	    {"event-lib", NULL, SB_OPT_STR, &o.event_lib, "ev",
	     "lws event loop: ev (epoll via libev), uv (libuv) or poll"},
	    {"settle-ms", NULL, SB_OPT_INT, &o.settle_ms, "500",
	     "pause between the last connection and the measurement"},
	    {"gateway-pids", NULL, SB_OPT_STR, &o.gateway_pids, "",
	     "pids whose RSS per socket and CPU are reported (comma list)"},
	    {"pids", NULL, SB_OPT_STR, &o.pids, "",
	     "other processes to report CPU and RSS of: name=pid,name=pid"},
	    {"pairs", NULL, SB_OPT_INT, &o.pairs, "50", "chat: sender/receiver pairs"},
	    {"rate", NULL, SB_OPT_INT, &o.rate, "0", "chat-rate: messages per second, all pairs"},
	    {"pace-timer", NULL, SB_OPT_BOOL, &o.pace_timer, "false",
	     "chat-rate: wake at each message's due time (a timerfd) instead of sending on the "
	     "1 ms tick: sends within ~50 us of schedule instead of up to 1-2 ms late, for one "
	     "wake-up per message (1.5-2x the load generator's CPU at 5,000/s here)"},
	    {"duration", NULL, SB_OPT_INT, &o.duration_s, "10", "chat: seconds of sending"},
	    {"drain", NULL, SB_OPT_INT, &o.drain_s, "5",
	     "chat: seconds to wait for answers and receipts after sending stops"},
	    {"window", NULL, SB_OPT_INT, &o.window, "16",
	     "chat-max: messages in flight per sender"},
	    {"msg-bytes", NULL, SB_OPT_INT, &o.msg_bytes, "0",
	     "chat: pad message texts to this many characters"},
	    {"users", NULL, SB_OPT_INT, &o.users, "1000", "idle, fanout: users"},
	    {"kinds", NULL, SB_OPT_STR, &o.kinds, "chat,notify",
	     "idle: socket kinds per user: chat, notify or chat,notify"},
	    {"hold", NULL, SB_OPT_INT, &o.hold_s, "10", "idle: seconds to hold the sockets"},
	    {"nats", NULL, SB_OPT_STR, &o.nats_url, "nats://127.0.0.1:4222",
	     "fanout: NATS server to publish the broadcast on"},
	    {"rounds", NULL, SB_OPT_INT, &o.rounds, "3", "fanout: broadcasts, one after another"},
	    {"round-timeout", NULL, SB_OPT_INT, &o.round_timeout_s, "10",
	     "fanout: seconds to wait for one broadcast to reach every socket"},
	    {NULL, NULL, 0, NULL, NULL, NULL},
	};
	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 && !strcmp(argv[1], "--help")) {
			sb_config_help(opts, usage);
			return 0;
		}
		fprintf(stderr, "%s\n(see --help)\n", usage);
		return 2;
	}
	o.scenario = argv[1];
	int argi = sb_config_parse(argc - 1, argv + 1, opts, usage);
	if (argi <= 0)
		return argi == 0 ? 0 : 2;
	if (argi + 1 < argc) {
		fprintf(stderr, "error: unexpected argument %s\n", argv[argi + 1]);
		return 2;
	}
	struct lg_run run;
	memset(&run, 0, sizeof run);
	run.o = &o;
	for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++)
		if (!strcmp(scenarios[i]->name, o.scenario))
			run.sc = scenarios[i];
	if (!run.sc) {
		fprintf(stderr,
		        "error: unknown scenario \"%s\" (chat-rate, chat-max, idle, fanout)\n",
		        o.scenario);
		return 2;
	}
	if (parse_targets(&o) < 0) {
		fprintf(stderr, "error: --target expects HOST:PORT or a comma list of up to %d\n",
		        LG_MAX_TARGETS);
		return 2;
	}
	if (!*o.tokens_path) {
		fprintf(stderr, "error: --tokens FILE is required\n");
		return 2;
	}
	if (o.max_seconds < 1 || o.max_seconds > LG_MAX_SECONDS || o.connect_window < 1 ||
	    o.connect_timeout_s < 1 || o.settle_ms < 0 || o.user_offset < 0) {
		fprintf(stderr, "error: numeric settings out of range (see --help)\n");
		return 2;
	}
	if (strcmp(o.event_lib, "ev") && strcmp(o.event_lib, "uv") && strcmp(o.event_lib, "poll")) {
		fprintf(stderr, "error: --event-lib takes ev, uv or poll\n");
		return 2;
	}
	raise_fd_limit();
	if (parse_pids(&run, o.gateway_pids, 1) < 0 || parse_pids(&run, o.pids, 0) < 0)
		return 2;
	if (lg_tokens_load(o.tokens_path, (size_t)o.max_conns + (size_t)o.user_offset + 1,
	                   &run.tokens) < 0)
		return 2;
	if (run.sc->plan(&run) < 0 || size_workers(&run) < 0) {
		lg_tokens_destroy(run.tokens);
		return 2;
	}
	if (getrandom(&run.run_id, sizeof run.run_id, 0) != sizeof run.run_id)
		run.run_id = (uint32_t)lg_now_ns();
	fprintf(stderr,
	        "%s: %llu sockets, %d worker process(es), %d source address(es), run %08x\n",
	        run.sc->name, (unsigned long long)run.nconns, run.nworkers, run.nsrc, run.run_id);

	the_run = &run;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int rc = lg_run_execute(&run);
	json_t *out = lg_report_common(&run);
	run.sc->report(&run, out);
	json_object_set_new(out, "ok", json_boolean(rc == 0));
	json_dumpf(out, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(out);
	free(run.samples);
	lg_tokens_destroy(run.tokens);
	return rc == 0 ? 0 : 1;
}
