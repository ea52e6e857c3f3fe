/*
 * procstat: what /proc says about a process: resident memory (VmRSS) and CPU time
 * (utime + stime). Used for the gateway's RSS per socket and for CPU shares that show
 * whether the load generator or the server is the bottleneck.
 */
#ifndef LG_PROCSTAT_H
#define LG_PROCSTAT_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

/* VmRSS of pid in KiB, or -1 when the process is gone. */
int64_t lg_proc_rss_kb(pid_t pid);

/* User + system CPU time of pid in nanoseconds, or -1 when the process is gone. */
int64_t lg_proc_cpu_ns(pid_t pid);

/* The machine's CPU time so far, all cores, in clock ticks: busy (everything but idle
 * and iowait), steal (time the hypervisor gave our virtual CPUs to someone else; part
 * of busy) and total. 0, or -1 when /proc/stat cannot be read. */
int lg_sys_cpu(int64_t *busy, int64_t *steal, int64_t *total);

/* Set o's machine_busy_pct and machine_steal_pct (100 % = one core) from two
 * lg_sys_cpu readings, each {busy, steal, total}; null when no time passed between
 * them (pass the first twice when the second could not be read). */
void lg_sys_cpu_json(json_t *o, const int64_t before[3], const int64_t after[3]);

/* The calling process's own CPU time (user + system) in nanoseconds. */
int64_t lg_self_cpu_ns(void);

#endif
