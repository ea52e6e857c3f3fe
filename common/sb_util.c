/*
 * sb_util: clocks, timestamps, parsing helpers and signal waiting.
 */
#include "sb_util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t sb_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sb_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sb_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

char *sb_rfc3339(int64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

int sb_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	if (!s || !*s || strlen(s) > 20)
		return -1;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		uint64_t d = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v < 1 || v > max)
		return -1;
	*out = v;
	return 0;
}

int sb_parse_duration(const char *s, int64_t *seconds)
{
	if (!s || !*s)
		return -1;
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0)
		return -1;
	long long mult = 1;
	if (*end == 's')
		mult = 1, end++;
	else if (*end == 'm')
		mult = 60, end++;
	else if (*end == 'h')
		mult = 3600, end++;
	else if (*end == 'd')
		mult = 86400, end++;
	if (*end || v > INT64_MAX / mult)
		return -1;
	*seconds = (int64_t)(v * mult);
	return 0;
}

void sb_signal_block(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int sb_signal_wait(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	int sig = 0;
	while (sigwait(&set, &sig) != 0)
		;
	return sig;
}

int sb_parse_listen(const char *listen, char *host, size_t hostsz, int *port)
{
	const char *colon = strrchr(listen, ':');
	if (!colon)
		return -1;
	size_t hl = (size_t)(colon - listen);
	if (hl >= hostsz)
		return -1;
	memcpy(host, listen, hl);
	host[hl] = 0;
	char *end = NULL;
	long p = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end || p < 0 || p > 65535)
		return -1;
	*port = (int)p;
	return 0;
}
