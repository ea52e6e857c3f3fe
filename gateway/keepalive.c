/*
 * keepalive: one sweep a second over every socket (see keepalive.h).
 */
#include "keepalive.h"

#include <string.h>

#include "conn.h"
#include "sb_log.h"
#include "sb_util.h"
#include "users.h"
#include "timer.h"

#define SWEEP_US LWS_US_PER_SEC

static void check(struct gw *gw, struct gw_conn *c, void *arg)
{
	(void)arg;
	if (!c->established || !c->wsi)
		return;
	int64_t silent = gw->now_ms - c->heard_ms;
	int64_t ping_ms = gw->cfg.ping_interval_s * 1000;
	if (gw->cfg.idle_timeout_s > 0 && silent >= gw->cfg.idle_timeout_s * 1000) {
		/* A dead peer may never make the socket writeable again: no close frame,
		 * lws closes it at its next service. */
		gw->m.idle_closes++;
		SB_DEBUG("idle_timeout", "user=%llu conn=%llu silent_ms=%lld",
		         (unsigned long long)c->user_id, (unsigned long long)c->conn_id,
		         (long long)silent);
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		return;
	}
	if (ping_ms > 0 && silent >= ping_ms && !c->ping_due &&
	    gw->now_ms - c->pinged_ms >= ping_ms) {
		c->ping_due = 1;
		c->pinged_ms = gw->now_ms;
		lws_callback_on_writable(c->wsi);
	}
}

static void sweep(lws_sorted_usec_list_t *sul)
{
	struct gw *gw = lws_container_of(sul, struct gw, keepalive_sul);
	gw->now_ms = sb_mono_ms();
	gw_users_foreach_conn(gw, check, NULL);
	gw_timer_schedule(gw, &gw->keepalive_sul, sweep, SWEEP_US);
}

void gw_keepalive_start(struct gw *gw)
{
	gw->now_ms = sb_mono_ms();
	if (gw->cfg.ping_interval_s > 0 || gw->cfg.idle_timeout_s > 0)
		gw_timer_schedule(gw, &gw->keepalive_sul, sweep, SWEEP_US);
}

void gw_keepalive_stop(struct gw *gw)
{
	lws_sul_cancel(&gw->keepalive_sul);
}

int gw_keepalive_write_ping(struct gw_conn *c)
{
	if (!c->ping_due)
		return 0;
	c->ping_due = 0;
	/* a payload: lws 4.1 does not report an empty PONG to the protocol callback, and
	 * the peer echoes whatever the PING carried */
	unsigned char buf[LWS_PRE + 2];
	memcpy(buf + LWS_PRE, "sb", 2);
	if (lws_write(c->wsi, buf + LWS_PRE, 2, LWS_WRITE_PING) < 2)
		return -1;
	return 1;
}
