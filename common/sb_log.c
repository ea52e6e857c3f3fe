/*
 * sb_log: logfmt lines on stdout. The line is assembled in a stack buffer and
 * written with a single write(2), so lines from several threads never interleave.
 */
#include "sb_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *log_service = "sb";
static enum sb_log_level log_threshold = SB_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int sb_log_init(const char *service, const char *level)
{
	log_service = service;
	if (!level || !*level)
		return 0;
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(level, level_names[i]) == 0) {
			log_threshold = (enum sb_log_level)i;
			return 0;
		}
	}
	return -1;
}

void sb_log_event(enum sb_log_level level, const char *event, const char *fmt, ...)
{
	if (level < log_threshold)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line,
	                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s svc=%s event=%s",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                 tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], log_service, event);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
	if (fmt && *fmt && len < sizeof line - 2) {
		line[len++] = ' ';
		va_list ap;
		va_start(ap, fmt);
		int m = vsnprintf(line + len, sizeof line - len, fmt, ap);
		va_end(ap);
		if (m > 0)
			len += (size_t)m < sizeof line - len ? (size_t)m : sizeof line - len - 1;
	}
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';
	ssize_t w = write(STDOUT_FILENO, line, len);
	(void)w;
}
