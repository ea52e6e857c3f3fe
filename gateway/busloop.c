/*
 * busloop: the NATS socket on the lws loop, see busloop.h.
 */
#include "busloop.h"

#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "handoff.h"
#include "rawfile.h"
#include "requests.h"
#include "sb_busio.h"
#include "sb_log.h"
#include "timer.h"
#include "users.h"

int gw_busloop_create(struct gw *gw)
{
	return sb_busio_create(&gw->busio);
}

int gw_busloop_attach(struct gw *gw)
{
	/* lws closes what it adopts: it gets a duplicate of the set's descriptor. */
	int fd = dup(sb_busio_fd(gw->busio));
	if (fd < 0)
		return -1;
	if (!gw_rawfile_adopt(gw, fd, "sb-busio")) {
		SB_ERROR("busio_adopt", NULL);
		return -1;
	}
	return 0;
}

/* The connection is up and no reconnect attempt holds it: a call into it returns at
 * once. */
static int reachable(struct gw *gw)
{
	return gw->bus && atomic_load(&gw->bus->connected) &&
	       (!gw->busio || sb_busio_up(gw->busio));
}

/* A server that keeps the connection but stops reading (frozen, partitioned) is only
 * declared stale after missed pings; until then every publish would pile up in
 * libnats' buffer. Past GW_BUS_BACKLOG_MAX the bus counts as down (gw_bus_up), so
 * requests wait, bounded per socket, instead. */
static void watch_backlog(struct gw *gw)
{
	int buffered = natsConnection_Buffered(gw->bus->nc);
	if (!gw->bus_backlogged && buffered > GW_BUS_BACKLOG_MAX) {
		gw->bus_backlogged = 1;
		SB_WARN("bus_backlogged", "buffered=%d msg=\"NATS is not reading; requests wait\"",
		        buffered);
	} else if (gw->bus_backlogged && buffered < GW_BUS_BACKLOG_MAX / 8) {
		gw->bus_backlogged = 0;
		SB_INFO("bus_drained", "buffered=%d", buffered);
	}
}

static void check(lws_sorted_usec_list_t *sul)
{
	struct gw *gw = lws_container_of(sul, struct gw, busloop_sul);
	int pending = 0;
	int unread = gw->inbox_polled && gw->inbox_sub &&
	             natsSubscription_GetPending(gw->inbox_sub, &pending, NULL) == NATS_OK &&
	             pending > 0;
	int up = reachable(gw);
	if (up)
		watch_backlog(gw);
	int unwritten = up ? sb_busio_unstall(gw->busio) : 0;
	if (unread || unwritten) {
		char bus[128];
		gw_busloop_describe(gw, bus, sizeof bus);
		gw->m.bus_stalls++;
		SB_WARN("bus_stall", "unwritten=%d unread_replies=%d %s", unwritten, pending, bus);
	}
	sb_busio_dispatch(gw->busio, 0);
	gw_handoff_poll_replies(gw);
	gw_users_unsubscribe_deferred(gw);
	gw_requests_publish_waiting(gw);
	gw_timer_schedule(gw, &gw->busloop_sul, check, LWS_US_PER_SEC);
}

void gw_busloop_start_checks(struct gw *gw)
{
	if (gw->busio)
		gw_timer_schedule(gw, &gw->busloop_sul, check, LWS_US_PER_SEC);
}

void gw_busloop_detach(struct gw *gw)
{
	lws_sul_cancel(&gw->busloop_sul);
	if (gw->busio && sb_busio_start_thread(gw->busio) < 0)
		SB_ERROR("busio_thread", NULL);
}

void gw_busloop_destroy(struct gw *gw)
{
	sb_busio_destroy(gw->busio);
	gw->busio = NULL;
}

int gw_bus_up(struct gw *gw)
{
	return reachable(gw) && !gw->bus_backlogged;
}

void gw_busloop_describe(struct gw *gw, char *buf, size_t size)
{
	if (!reachable(gw)) {
		snprintf(buf, size, "bus_up=0 bus_reconnects=%llu",
		         (unsigned long long)(gw->bus ? atomic_load(&gw->bus->reconnects) : 0));
		return;
	}
	uint64_t in = 0, out = 0, reconnects = 0, unused = 0;
	natsStatistics *st = NULL;
	natsConnection *nc = gw->bus->nc;
	if (nc && natsStatistics_Create(&st) == NATS_OK &&
	    natsConnection_GetStats(nc, st) == NATS_OK)
		natsStatistics_GetCounts(st, &in, &unused, &out, &unused, &reconnects);
	natsStatistics_Destroy(st);
	snprintf(buf, size, "bus_buffered=%d bus_in=%llu bus_out=%llu bus_reconnects=%llu",
	         natsConnection_Buffered(nc), (unsigned long long)in, (unsigned long long)out,
	         (unsigned long long)reconnects);
}

int gw_busloop_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
	(void)user;
	(void)in;
	(void)len;
	struct gw *gw = lws_context_user(lws_get_context(wsi));
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		sb_busio_dispatch(gw->busio, 0);
		gw_handoff_poll_replies(gw);
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		/* Only the context's end closes it: otherwise the bus would go unread. */
		if (!gw->done)
			SB_ERROR("busio_unwatched", "msg=\"lws closed the bus socket's set\"");
		return 0;
	default:
		return gw_rawfile_other(reason);
	}
}
