/*
 * ws: lws callback dispatch. One protocol serves HTTP and both WebSocket endpoints;
 * per-session data is struct gw_conn.
 */
#include "ws.h"

#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "backlog.h"
#include "chat.h"
#include "conn.h"
#include "frame.h"
#include "handoff.h"
#include "http.h"
#include "keepalive.h"
#include "quota.h"
#include "notify.h"
#include "preauth.h"
#include "requests.h"
#include "sb_log.h"
#include "sb_util.h"
#include "users.h"
#include "receipts.h"
#include "timer.h"

static struct gw *gw_of(struct lws *wsi)
{
	return lws_context_user(lws_get_context(wsi));
}

static void close_if_idle(struct gw *gw, struct gw_conn *c, void *arg)
{
	(void)arg;
	gw_receipts_probe_now(gw, c);
	/* and once the client has confirmed what it was sent, or those messages would
	 * replay on its next connect */
	if (c->inflight_sends == 0 && c->unconf_len == 0)
		gw_conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
}

static int64_t total_conns(struct gw *gw)
{
	return gw->m.conns_current[GW_CHAT] + gw->m.conns_current[GW_NOTIFY];
}

static void drain_step(lws_sorted_usec_list_t *sul)
{
	struct gw *gw = lws_container_of(sul, struct gw, drain_sul);
	gw_users_foreach_conn(gw, close_if_idle, NULL);
	if ((total_conns(gw) == 0 && gw_requests_inflight(gw) == 0) ||
	    sb_mono_ms() >= gw->drain_deadline_ms) {
		SB_INFO("drained", "sockets_left=%lld requests_left=%zu",
		        (long long)total_conns(gw), gw_requests_inflight(gw));
		gw->done = 1;
		if (gw->evlib) {
			/* libev runs until the context goes: this first destroy closes every
			 * socket and stops the loop; main finishes it after the bus is closed */
			pthread_mutex_lock(&gw->handoff.lock);
			gw->ctx_gone = 1;
			pthread_mutex_unlock(&gw->handoff.lock);
			lws_context_destroy(gw->ctx);
		} else {
			lws_cancel_service(gw->ctx);
		}
		return;
	}
	gw_timer_schedule(gw, &gw->drain_sul, drain_step, 50 * LWS_US_PER_MS);
}

void gw_ws_begin_drain(struct gw *gw)
{
	if (gw->draining)
		return;
	gw->draining = 1;
	gw->drain_deadline_ms = sb_mono_ms() + gw->cfg.drain_timeout_ms;
	SB_INFO("draining", "sockets=%lld requests=%zu", (long long)total_conns(gw),
	        gw_requests_inflight(gw));
	drain_step(&gw->drain_sul);
}

static void hold_live(struct gw *gw, struct gw_conn *c, void *arg)
{
	(void)gw;
	(void)arg;
	if (c->established && !c->close_code)
		c->syncing = 1; /* live deliveries wait in `held` until the replay */
}

static void resync(struct gw *gw, struct gw_conn *c, void *arg)
{
	(void)arg;
	if (c->established && !c->close_code)
		gw_backlog_after_gap(gw, c);
}

/* Deliveries published while the bus was down (or before our subscriptions were back)
 * are lost to NATS, so: from the disconnect on, every socket holds live deliveries;
 * once reconnected, it replays from the last id it had and then releases them. */
void gw_ws_on_bus_state(struct gw *gw, int up)
{
	int64_t t0 = sb_mono_us();
	if (up) {
		gw_users_unsubscribe_deferred(gw);
		gw_requests_publish_waiting(gw);
	} else {
		gw_backlog_mark_gap(gw);
	}
	gw_users_foreach_conn(gw, up ? resync : hold_live, NULL);
	SB_INFO(up ? "resync_after_reconnect" : "hold_while_disconnected", "sockets=%lld us=%lld",
	        (long long)total_conns(gw), (long long)(sb_mono_us() - t0));
}

/* libnats thread: queue the state change behind the messages already handed off. */
static void on_bus_state(void *arg, int connected)
{
	gw_handoff_push(arg, connected ? GW_EV_BUS_UP : GW_EV_BUS_DOWN, NULL);
}

void gw_ws_watch_reconnects(struct gw *gw)
{
	sb_bus_watch(gw->bus, on_bus_state, gw);
}

static int on_receive(struct gw *gw, struct lws *wsi, struct gw_conn *c, const char *in, size_t len)
{
	size_t remaining = lws_remaining_packet_payload(wsi);
	if (lws_is_first_fragment(wsi)) {
		c->rx_len = 0;
		c->rx_binary = lws_frame_is_binary(wsi);
	}
	if ((int64_t)(c->rx_len + len + remaining) > gw->cfg.max_frame_bytes) {
		static const char reason[] = "frame too large";
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)reason,
		                 sizeof reason - 1);
		return -1;
	}
	int complete = lws_is_final_fragment(wsi) && remaining == 0;
	const char *data = in;
	size_t dlen = len;
	if (!complete || c->rx_len) {
		char *grown = realloc(c->rx, c->rx_len + len + remaining + 1);
		if (!grown)
			return -1;
		c->rx = grown;
		memcpy(c->rx + c->rx_len, in, len);
		c->rx_len += len;
		if (!complete)
			return 0;
		data = c->rx;
		dlen = c->rx_len;
	}
	gw->m.frames_in++;
	gw_keepalive_heard(c);
	if (c->rx_binary)
		gw_conn_send_error(gw, c, GW_E_BINARY);
	else if (c->kind != GW_CHAT)
		gw_conn_send_error(gw, c, GW_E_NOTIFY_READONLY);
	else if (!c->close_code) {
		int ok = gw_quota_take(gw, c);
		if (ok > 0)
			gw_chat_on_frame(gw, c, data, dlen);
		else if (ok == 0)
			gw_conn_send_error(gw, c, GW_E_RATE);
		else
			gw_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "rate limit abuse");
	}
	free(c->rx);
	c->rx = NULL;
	c->rx_len = 0;
	return 0;
}

/* Refuse an upgrade with a complete "HTTP/1.1 <status>" response. lws would answer
 * "HTTP/1.0" at this stage (it has not looked at the request's version yet), which
 * some WebSocket clients (Python's websockets) do not accept. */
static int refuse(struct lws *wsi, int status)
{
	const char *text = status == 400   ? "Bad Request"
	                   : status == 403 ? "Forbidden"
	                   : status == 404 ? "Not Found"
	                   : status == 429 ? "Too Many Requests"
	                                   : "Service Unavailable";
	unsigned char buf[LWS_PRE + 256];
	int n = snprintf((char *)buf + LWS_PRE, sizeof buf - LWS_PRE,
	                 "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n"
	                 "connection: close\r\n\r\n%d %s\n",
	                 status, text, strlen(text) + 5, status, text);
	if (lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_HEADERS) != n)
		return -1;
	return 1;
}

/* HTTP_CONFIRM_UPGRADE: origin and token are checked here, before the upgrade.
 * There is no per-session data yet, so the verdict waits in gw->pending for
 * FILTER_PROTOCOL_CONNECTION, which lws calls next in the same call chain. */
static int on_confirm_upgrade(struct gw *gw, struct lws *wsi)
{
	struct gw_conn *p = &gw->pending;
	free(p->user_name);
	memset(p, 0, sizeof *p);
	if (gw_preauth_claim(gw, wsi, p)) {
		p->wsi = wsi;
		return 0;
	}
	if (gw->pre_epfd >= 0) {
		/* Plain-text upgrades are decided in preauth.c, before lws reads them; one
		 * that arrives here came on a reused keep-alive connection. Refused rather
		 * than verified with a blocking request. */
		SB_INFO("refused", "reason=upgrade_on_reused_connection");
		return refuse(wsi, 400);
	}
	char ip[48] = "";
	lws_get_peer_simple(wsi, ip, sizeof ip);
	if (gw_quota_ip_blocked(gw, ip)) {
		gw->m.conns_refused_ip++;
		return refuse(wsi, 429);
	}
	int status = gw_auth_check(gw, wsi, p);
	if (status == 0) {
		struct gw_user *u = gw_users_find(gw, p->user_id);
		if (u && gw->cfg.max_conns_per_user > 0 &&
		    u->nconns >= gw->cfg.max_conns_per_user) {
			gw->m.conns_refused_user_cap++;
			SB_INFO("refused", "reason=user_connection_cap user=%llu sockets=%d",
			        (unsigned long long)p->user_id, u->nconns);
			status = 429;
		} else {
			p->wsi = wsi;
			return 0;
		}
	} else if (status == 403) {
		gw_quota_ip_failed(gw, ip);
	}
	free(p->user_name);
	p->user_name = NULL;
	return refuse(wsi, status);
}

/* FILTER_PROTOCOL_CONNECTION: the last word before the 101; moves the verdict of
 * on_confirm_upgrade into the session. Anything else is refused. */
static int on_filter(struct gw *gw, struct lws *wsi, struct gw_conn *c)
{
	struct gw_conn *p = &gw->pending;
	if (!c || p->wsi != wsi || !p->user_id) {
		SB_ERROR("upgrade_unverified", "msg=\"upgrade without a verdict\"");
		return -1;
	}
	*c = *p;
	c->wsi = NULL;
	c->authorized = 1;
	memset(p, 0, sizeof *p);
	return 0;
}

static int on_established(struct gw *gw, struct lws *wsi, struct gw_conn *c)
{
	c->wsi = wsi;
	c->conn_id = ++gw->next_conn_id;
	c->established = 1;
	gw_keepalive_heard(c);
	c->pinged_ms = c->heard_ms;
	if (gw_users_attach(gw, c) < 0) {
		gw_conn_release(gw, c);
		return -1;
	}
	gw->m.conns_opened[c->kind]++;
	gw->m.conns_current[c->kind]++;
	SB_DEBUG("ws_open", "user=%llu conn=%llu endpoint=%s", (unsigned long long)c->user_id,
	         (unsigned long long)c->conn_id, c->kind == GW_CHAT ? "chat" : "notifications");
	gw_backlog_start(gw, c);
	return 0;
}

static void on_closed(struct gw *gw, struct gw_conn *c)
{
	if (!c->established)
		return;
	c->established = 0;
	gw->m.conns_current[c->kind]--;
	SB_DEBUG("ws_close", "user=%llu conn=%llu", (unsigned long long)c->user_id,
	         (unsigned long long)c->conn_id);
	gw_users_detach(gw, c);
	gw_conn_release(gw, c);
}

int gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
	struct gw *gw = gw_of(wsi);
	struct gw_conn *c = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return gw_http_request(gw, wsi, c, (const char *)in);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return gw_http_writeable(wsi, c);
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (c && !c->established) {
			free(c->http_body);
			c->http_body = NULL;
		}
		break;
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		return on_confirm_upgrade(gw, wsi);
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return on_filter(gw, wsi, c);
	case LWS_CALLBACK_ESTABLISHED:
		return on_established(gw, wsi, c);
	case LWS_CALLBACK_RECEIVE:
		return on_receive(gw, wsi, c, in, len);
	case LWS_CALLBACK_RECEIVE_PONG:
		gw_keepalive_heard(c);
		gw_receipts_on_pong(gw, c, in, len);
		break;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return gw_conn_writeable(gw, c);
	case LWS_CALLBACK_CLOSED:
		on_closed(gw, c);
		break;
	case LWS_CALLBACK_WSI_DESTROY:
		if (c && !c->established && c->user_name) {
			free(c->user_name);
			c->user_name = NULL;
		}
		break;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		gw_handoff_drain(gw);
		if (atomic_load(&gw->stop_requested))
			gw_ws_begin_drain(gw);
		break;
	default:
		break;
	}
	return 0;
}
