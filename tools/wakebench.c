/*
 * sb-wakebench: what one hand-off between two processes costs on this machine.
 *
 * Two processes bounce one byte over a socketpair for --seconds each way round:
 *   across    the two pinned to different CPUs (the first two this process may use):
 *             every bounce wakes a process on the other CPU, as a chat message wakes the
 *             gateway, nats-server and chat-svc in turn (on a virtual machine an idle
 *             virtual CPU has to be woken by the host);
 *   same      both pinned to the first of them: the same bounce without a cross-CPU
 *             wake-up.
 * Each reports round trips a second and the round trip's latency. A chat message makes
 * several such hand-offs on its way (load generator -> gateway -> nats-server ->
 * chat-svc -> nats-server -> gateway -> load generator), so their price here is a floor
 * under its latency. Result: JSON on stdout.
 */
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "procstat.h"
#include "sb_config.h"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof set, &set);
}

/* One measurement: the echo child on echo_cpu, this process on our_cpu. */
static json_t *bounce(const char *mode, int our_cpu, int echo_cpu, int64_t seconds)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		return NULL;
	}
	pid_t child = fork();
	if (child < 0) {
		perror("fork");
		close(sv[0]);
		close(sv[1]);
		return NULL;
	}
	if (child == 0) {
		close(sv[0]);
		if (pin(echo_cpu) < 0)
			_exit(1);
		char c;
		while (read(sv[1], &c, 1) == 1 && write(sv[1], &c, 1) == 1)
			;
		_exit(0);
	}
	close(sv[1]);
	struct lg_hist *h = calloc(1, sizeof *h);
	json_t *out = NULL;
	if (!h || pin(our_cpu) < 0) {
		perror("sb-wakebench");
		goto done;
	}
	int64_t sys0[3] = {0}, sys1[3] = {0};
	int have_sys = lg_sys_cpu(&sys0[0], &sys0[1], &sys0[2]) == 0;
	int64_t t0 = now_ns(), end = t0 + seconds * 1000000000LL, t = t0;
	uint64_t n = 0;
	char c = 0;
	while (t < end) {
		if (write(sv[0], &c, 1) != 1 || read(sv[0], &c, 1) != 1) {
			fprintf(stderr, "sb-wakebench: the echo process stopped answering\n");
			goto done;
		}
		int64_t t1 = now_ns();
		lg_hist_add(h, t1 - t); /* ns: a bounce on one CPU takes a few us */
		t = t1;
		n++;
	}
	have_sys = have_sys && lg_sys_cpu(&sys1[0], &sys1[1], &sys1[2]) == 0;
	double secs = (double)(t - t0) / 1e9;
	out = json_pack("{s:s,s:i,s:i,s:I,s:f,s:f,s:o}", "mode", mode, "cpu", our_cpu, "echo_cpu",
	                echo_cpu, "round_trips", (json_int_t)n, "seconds", secs, "per_s",
	                secs > 0 ? (double)n / secs : 0.0, "round_trip_ns", lg_hist_json(h));
	lg_sys_cpu_json(out, sys0, have_sys ? sys1 : sys0);
done:
	close(sv[0]); /* the child reads EOF and exits */
	int status;
	if (waitpid(child, &status, 0) == child && (!WIFEXITED(status) || WEXITSTATUS(status))) {
		fprintf(stderr, "sb-wakebench: the echo process could not run on CPU %d\n",
		        echo_cpu);
		json_decref(out);
		out = NULL;
	}
	free(h);
	return out;
}

int main(int argc, char **argv)
{
	int64_t seconds = 0;
	const struct sb_opt opts[] = {
	    {"seconds", NULL, SB_OPT_INT, &seconds, "2", "seconds of each measurement (1..60)"},
	    {NULL, NULL, 0, NULL, NULL, NULL},
	};
	int argi = sb_config_parse(argc, argv, opts,
	                           "usage: sb-wakebench [options]\n\n"
	                           "Round trips of one byte between two processes over a "
	                           "socketpair, on two CPUs and on one; JSON on stdout.");
	if (argi <= 0)
		return argi == 0 ? 0 : 2;
	if (seconds < 1 || seconds > 60) {
		fprintf(stderr, "error: options out of range (see --help)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN); /* an echo process that died shows as an error, not a kill */
	/* the first two CPUs this process may run on */
	cpu_set_t allowed;
	int cpu[2] = {-1, -1}, found = 0;
	if (sched_getaffinity(0, sizeof allowed, &allowed) < 0) {
		perror("sched_getaffinity");
		return 1;
	}
	for (int i = 0; i < CPU_SETSIZE && found < 2; i++)
		if (CPU_ISSET(i, &allowed))
			cpu[found++] = i;
	json_t *out = json_object();
	json_object_set_new(out, "cpus", json_integer(CPU_COUNT(&allowed)));
	json_t *runs = json_array();
	int ok = 1;
	if (found >= 2) {
		json_t *r = bounce("across", cpu[0], cpu[1], seconds);
		ok = ok && r;
		if (r)
			json_array_append_new(runs, r);
	}
	json_t *r = bounce("same", cpu[0], cpu[0], seconds);
	ok = ok && r;
	if (r)
		json_array_append_new(runs, r);
	json_object_set_new(out, "runs", runs);
	json_dumpf(out, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(out);
	return ok ? 0 : 1;
}
