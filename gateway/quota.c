/*
 * quota: per-socket token bucket, per-IP failure window; see limits.h. Failures are
 * counted in fixed one-minute windows: a tsearch tree of the IPs that failed in the
 * current window, emptied whole when the next window starts, so it never holds more
 * than one minute's worth of failing addresses.
 */
#include "quota.h"

#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "sb_log.h"
#include "sb_util.h"

#define ABUSE_STRIKES 100 /* refused frames in a row before the socket is closed */
#define WINDOW_MS     60000

struct gw_ip_failures {
	char ip[48];
	int64_t count;
};

/* Start a new window when the minute changed: forget every count. */
static void roll_window(struct gw *gw)
{
	int64_t window = sb_mono_ms() / WINDOW_MS;
	if (window != gw->ip_window) {
		gw_quota_destroy(gw);
		gw->ip_window = window;
	}
}

int gw_quota_take(struct gw *gw, struct gw_conn *c)
{
	if (gw->cfg.rate_per_sec <= 0)
		return 1;
	int64_t now = sb_mono_ms();
	if (c->tokens_at_ms == 0) {
		c->tokens = (double)gw->cfg.rate_burst;
	} else {
		c->tokens +=
		    (double)(now - c->tokens_at_ms) * (double)gw->cfg.rate_per_sec / 1000.0;
		if (c->tokens > (double)gw->cfg.rate_burst)
			c->tokens = (double)gw->cfg.rate_burst;
	}
	c->tokens_at_ms = now;
	if (c->tokens >= 1.0) {
		c->tokens -= 1.0;
		c->strikes = 0;
		return 1;
	}
	gw->m.rate_limited++;
	if (++c->strikes >= ABUSE_STRIKES) {
		SB_WARN("rate_abuse", "user=%llu conn=%llu", (unsigned long long)c->user_id,
		        (unsigned long long)c->conn_id);
		return -1;
	}
	return 0;
}

static int cmp_ip(const void *a, const void *b)
{
	return strcmp(((const struct gw_ip_failures *)a)->ip,
	              ((const struct gw_ip_failures *)b)->ip);
}

static struct gw_ip_failures *find(struct gw *gw, const char *ip)
{
	struct gw_ip_failures key;
	snprintf(key.ip, sizeof key.ip, "%s", ip);
	void *n = tfind(&key, &gw->ip_failures, cmp_ip);
	return n ? *(struct gw_ip_failures **)n : NULL;
}

int gw_quota_ip_blocked(struct gw *gw, const char *ip)
{
	if (gw->cfg.max_failed_per_ip <= 0)
		return 0;
	roll_window(gw);
	struct gw_ip_failures *f = find(gw, ip);
	return f && f->count >= gw->cfg.max_failed_per_ip;
}

void gw_quota_ip_failed(struct gw *gw, const char *ip)
{
	if (gw->cfg.max_failed_per_ip <= 0)
		return;
	roll_window(gw);
	struct gw_ip_failures *f = find(gw, ip);
	if (!f) {
		f = calloc(1, sizeof *f);
		if (!f)
			return;
		snprintf(f->ip, sizeof f->ip, "%s", ip);
		if (!tsearch(f, &gw->ip_failures, cmp_ip)) {
			free(f);
			return;
		}
	}
	if (++f->count == gw->cfg.max_failed_per_ip)
		SB_WARN("ip_blocked", "ip=%s failures=%lld window_s=60", ip, (long long)f->count);
}

void gw_quota_destroy(struct gw *gw)
{
	while (gw->ip_failures) {
		struct gw_ip_failures *f = *(struct gw_ip_failures **)gw->ip_failures;
		tdelete(f, &gw->ip_failures, cmp_ip);
		free(f);
	}
}
