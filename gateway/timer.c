/*
 * timer: a timerfd that wakes lws' libev loop for our suls, see timer.h.
 */
#include "timer.h"

#include <stdint.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "rawfile.h"
#include "sb_log.h"

int gw_timer_init(struct gw *gw)
{
	gw->timer_fd = -1;
	if (!gw->evlib)
		return 0;
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (!gw_rawfile_adopt(gw, fd, "sb-timer")) {
		SB_ERROR("timer_adopt", NULL);
		return -1; /* lws closed fd */
	}
	gw->timer_fd = fd;
	return 0;
}

void gw_timer_destroy(struct gw *gw)
{
	gw->timer_fd = -1; /* lws closes it with the context */
	gw->timer_nsuls = 0;
}

/* Arm the timerfd for the earliest of our suls still to come (0: disarm). */
static void arm(struct gw *gw)
{
	lws_usec_t now = lws_now_usecs(), next = 0;
	for (int i = 0; i < gw->timer_nsuls; i++) {
		const lws_sorted_usec_list_t *s = gw->timer_suls[i];
		if (s->list.owner && s->us > now && (!next || s->us < next))
			next = s->us;
	}
	if (next == gw->timer_at)
		return;
	struct itimerspec its = {0};
	if (next) {
		lws_usec_t d = next - now;
		its.it_value.tv_sec = (time_t)(d / LWS_US_PER_SEC);
		its.it_value.tv_nsec = (long)(d % LWS_US_PER_SEC) * 1000;
	}
	if (timerfd_settime(gw->timer_fd, 0, &its, NULL) == 0)
		gw->timer_at = next;
}

void gw_timer_schedule(struct gw *gw, lws_sorted_usec_list_t *sul, sul_cb_t cb, lws_usec_t us)
{
	lws_sul_schedule(gw->ctx, 0, sul, cb, us);
	if (gw->timer_fd < 0)
		return;
	int known = 0;
	for (int i = 0; i < gw->timer_nsuls; i++)
		known |= gw->timer_suls[i] == sul;
	if (!known && gw->timer_nsuls < GW_TIMER_SULS)
		gw->timer_suls[gw->timer_nsuls++] = sul;
	if (!gw->timer_at || sul->us < gw->timer_at)
		arm(gw);
}

#define LAG_PROBE_US (100 * LWS_US_PER_MS)

static void lag_probe(lws_sorted_usec_list_t *sul)
{
	struct gw *gw = lws_container_of(sul, struct gw, lag_sul);
	lws_usec_t late = lws_now_usecs() - gw->lag_due;
	if (late < 0)
		late = 0;
	sb_metric_observe_us(&gw->loop_lag_seconds, (uint64_t)late);
	if (late > GW_LOOP_STALL_MS * LWS_US_PER_MS) {
		gw->m.loop_stalls++;
		SB_WARN("loop_stall", "late_ms=%lld sockets=%lld",
		        (long long)(late / LWS_US_PER_MS),
		        (long long)(gw->m.conns_current[GW_CHAT] + gw->m.conns_current[GW_NOTIFY]));
	}
	gw->lag_due = lws_now_usecs() + LAG_PROBE_US;
	gw_timer_schedule(gw, &gw->lag_sul, lag_probe, LAG_PROBE_US);
}

void gw_timer_lag_start(struct gw *gw)
{
	gw->loop_lag_seconds = (struct sb_metric){
	    .name = "sb_gateway_loop_lag_seconds",
	    .help = "How late a timer due every 100 ms ran: the longest the loop was busy.",
	    .type = SB_HISTOGRAM};
	sb_metrics_add(&gw->reg, &gw->loop_lag_seconds);
	gw->lag_due = lws_now_usecs() + LAG_PROBE_US;
	gw_timer_schedule(gw, &gw->lag_sul, lag_probe, LAG_PROBE_US);
}

void gw_timer_lag_stop(struct gw *gw)
{
	lws_sul_cancel(&gw->lag_sul);
}

int gw_timer_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
	(void)user;
	(void)in;
	(void)len;
	struct gw *gw = lws_context_user(lws_get_context(wsi));
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE: {
		uint64_t expirations;
		if (gw->timer_fd >= 0 && read(gw->timer_fd, &expirations, sizeof expirations) < 0) {
			/* EAGAIN: nothing expired after all */
		}
		/* lws runs the ripe suls right after this I/O event; wake up for the next. */
		gw->timer_at = 0;
		if (gw->timer_fd >= 0)
			arm(gw);
		return 0;
	}
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		gw->timer_fd = -1;
		return 0;
	default:
		return gw_rawfile_other(reason);
	}
}
