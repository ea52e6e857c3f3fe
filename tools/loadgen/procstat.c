/*
 * procstat: /proc/<pid>/status and /proc/<pid>/stat readers (see procstat.h).
 */
#include "procstat.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static ssize_t read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n >= 0)
		buf[n] = 0;
	return n;
}

int64_t lg_proc_rss_kb(pid_t pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if (read_file(path, buf, sizeof buf) < 0)
		return -1;
	const char *p = strstr(buf, "\nVmRSS:");
	if (!p)
		return -1;
	return strtoll(p + 7, NULL, 10);
}

int64_t lg_proc_cpu_ns(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (read_file(path, buf, sizeof buf) < 0)
		return -1;
	/* the command name may hold spaces: fields count from the last ')' */
	const char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* after ')': state(3) ... utime is field 14, stime 15 */
	int field = 2;
	unsigned long long utime = 0, stime = 0;
	for (const char *s = p + 1; *s; s++) {
		if (*s != ' ')
			continue;
		field++;
		if (field == 14)
			utime = strtoull(s + 1, NULL, 10);
		else if (field == 15) {
			stime = strtoull(s + 1, NULL, 10);
			break;
		}
	}
	long hz = sysconf(_SC_CLK_TCK);
	return (int64_t)((utime + stime) * (1000000000ull / (unsigned long long)hz));
}

int64_t lg_self_cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	       ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

int lg_sys_cpu(int64_t *busy, int64_t *steal, int64_t *total)
{
	char buf[1024];
	if (read_file("/proc/stat", buf, sizeof buf) < 0 || strncmp(buf, "cpu ", 4))
		return -1;
	int64_t v[10] = {0};
	char *p = buf + 4;
	for (int i = 0; i < 10; i++)
		v[i] = strtoll(p, &p, 10);
	int64_t sum = 0;
	for (int i = 0; i < 8; i++) /* guest time is already inside user and nice */
		sum += v[i];
	*total = sum;
	*busy = sum - v[3] - v[4];
	*steal = v[7];
	return 0;
}

void lg_sys_cpu_json(json_t *o, const int64_t before[3], const int64_t after[3])
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int64_t dt = after[2] - before[2];
	double scale = dt > 0 ? 100.0 * (double)ncpu / (double)dt : 0.0;
	json_object_set_new(o, "machine_busy_pct",
	                    dt > 0 ? json_real(scale * (double)(after[0] - before[0]))
	                           : json_null());
	json_object_set_new(o, "machine_steal_pct",
	                    dt > 0 ? json_real(scale * (double)(after[1] - before[1]))
	                           : json_null());
}
