/*
 * handoff: locked event list from libnats threads to the loop, see handoff.h.
 */
#include "handoff.h"

#include <stdlib.h>
#include <time.h>

#include "auth.h"
#include "chat.h"
#include "conn.h"
#include "notify.h"
#include "requests.h"
#include "ws.h"

int gw_handoff_init(struct gw *gw)
{
	return pthread_mutex_init(&gw->handoff.lock, NULL) == 0 ? 0 : -1;
}

static void on_complete(void *closure)
{
	struct gw *gw = closure;
	atomic_fetch_sub(&gw->handoff.tracked, 1);
}

void gw_handoff_track(struct gw *gw, natsSubscription *sub)
{
	atomic_fetch_add(&gw->handoff.tracked, 1);
	if (natsSubscription_SetOnCompleteCB(sub, on_complete, gw) != NATS_OK)
		atomic_fetch_sub(&gw->handoff.tracked, 1);
}

int gw_handoff_wait_untracked(struct gw *gw, int timeout_ms)
{
	const struct timespec step = {0, 5 * 1000 * 1000};
	for (int waited = 0; atomic_load(&gw->handoff.tracked) > 0; waited += 5) {
		if (waited >= timeout_ms)
			return -1;
		nanosleep(&step, NULL);
	}
	return 0;
}

void gw_handoff_push(struct gw *gw, enum gw_event_kind kind, natsMsg *msg)
{
	struct gw_event *ev = malloc(sizeof *ev);
	if (!ev) {
		sb_msg_free(msg);
		return;
	}
	ev->kind = kind;
	ev->msg = msg;
	ev->next = NULL;
	pthread_mutex_lock(&gw->handoff.lock);
	int was_empty = gw->handoff.head == NULL;
	if (gw->handoff.tail)
		gw->handoff.tail->next = ev;
	else
		gw->handoff.head = ev;
	gw->handoff.tail = ev;
	/* One wake-up per batch: the loop drains the whole list, so only the push that
	 * finds it empty needs to write to lws' wake-up pipe. */
	if (was_empty && !gw->ctx_gone)
		lws_cancel_service(gw->ctx);
	pthread_mutex_unlock(&gw->handoff.lock);
}

void gw_handoff_drain(struct gw *gw)
{
	pthread_mutex_lock(&gw->handoff.lock);
	struct gw_event *ev = gw->handoff.head;
	gw->handoff.head = gw->handoff.tail = NULL;
	pthread_mutex_unlock(&gw->handoff.lock);
	if (!ev)
		return;
	gw->flush_batching = 1;
	while (ev) {
		struct gw_event *next = ev->next;
		switch (ev->kind) {
		case GW_EV_REPLY:
			gw_requests_on_reply(gw, ev->msg);
			break;
		case GW_EV_DELIVER_CHAT:
			gw_chat_on_delivery(gw, ev->msg);
			break;
		case GW_EV_DELIVER_NOTIFY:
			gw_notify_on_delivery(gw, ev->msg);
			break;
		case GW_EV_REVOKED:
			gw_auth_on_revoked(gw, ev->msg);
			break;
		case GW_EV_BUS_DOWN:
		case GW_EV_BUS_UP:
			gw_ws_on_bus_state(gw, ev->kind == GW_EV_BUS_UP);
			break;
		}
		sb_msg_free(ev->msg);
		free(ev);
		ev = next;
	}
	gw->flush_batching = 0;
	gw_conn_flush_collected(gw);
}

void gw_handoff_poll_replies(struct gw *gw)
{
	if (!gw->inbox_polled || !gw->inbox_sub)
		return;
	int pending = 0;
	if (natsSubscription_GetPending(gw->inbox_sub, &pending, NULL) != NATS_OK || pending <= 0)
		return;
	gw->flush_batching = 1;
	natsMsg *msg = NULL;
	/* At most what was there: a reply that arrives meanwhile is read on the next turn.
	 * libnats answers a "no responders" status (a request published before its
	 * service had resubscribed, after a NATS restart) with NATS_NO_RESPONDERS and
	 * drops it, subject and all: that request waits for its timeout and retry, and
	 * the replies behind it are read on (stopping there left them unread until the
	 * next turn, one per turn: after a restart with 15,000 sockets, every resync
	 * timed out and every socket was closed with 1011). */
	while (pending-- > 0) {
		natsStatus s = natsSubscription_NextMsg(&msg, gw->inbox_sub, 0);
		if (s == NATS_NO_RESPONDERS || s == NATS_SLOW_CONSUMER) {
			gw->m.no_responders += s == NATS_NO_RESPONDERS;
			continue;
		}
		if (s != NATS_OK)
			break;
		gw_requests_on_reply(gw, msg);
		sb_msg_free(msg);
	}
	gw->flush_batching = 0;
	gw_conn_flush_collected(gw);
}

void gw_handoff_destroy(struct gw *gw)
{
	struct gw_event *ev = gw->handoff.head;
	while (ev) {
		struct gw_event *next = ev->next;
		if (ev->msg)
			sb_msg_free(ev->msg);
		free(ev);
		ev = next;
	}
	gw->handoff.head = gw->handoff.tail = NULL;
	pthread_mutex_destroy(&gw->handoff.lock);
}
