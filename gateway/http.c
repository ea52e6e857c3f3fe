/*
 * http: healthz / readyz / metrics. The body is rendered in LWS_CALLBACK_HTTP and
 * written in HTTP_WRITEABLE, as libwebsockets wants (headers, then body).
 */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "busloop.h"
#include "frame.h"
#include "sb_util.h"
#include "requests.h"

static const char *const error_sentences[] = {
    GW_E_INVALID_JSON,     GW_E_NOT_OBJECT,      GW_E_RECEIVER_REQUIRED, GW_E_RECEIVER_INVALID,
    GW_E_MESSAGE_REQUIRED, GW_E_MESSAGE_TYPE,    GW_E_MESSAGE_EMPTY,     GW_E_MESSAGE_TOO_LONG,
    GW_E_ATTACHMENT,       GW_E_BINARY,          GW_E_UNKNOWN_RECEIVER,  GW_E_UNAVAILABLE,
    GW_E_STORAGE,          GW_E_NOTIFY_READONLY, GW_E_OVERLOADED,        GW_E_RATE,
};
#define N_SENTENCES (sizeof error_sentences / sizeof *error_sentences)
_Static_assert(N_SENTENCES <= GW_ERROR_KINDS, "raise GW_ERROR_KINDS");

void gw_http_metrics_init(struct gw *gw)
{
	static char labels[GW_ERROR_KINDS][96];
	for (size_t i = 0; i < N_SENTENCES; i++) {
		snprintf(labels[i], sizeof labels[i], "error=\"%s\"", error_sentences[i]);
		gw->errors_by_reason[i] =
		    (struct sb_metric){.name = "sb_gateway_errors_total",
		                       .labels = labels[i],
		                       .help = "Error frames sent to clients, by sentence.",
		                       .type = SB_COUNTER};
	}
	for (size_t i = N_SENTENCES; i-- > 0;)
		sb_metrics_add(&gw->reg, &gw->errors_by_reason[i]);
	static const char *const kinds[] = {NULL, "kind=\"chat_send\"", "kind=\"chat_sync\"",
	                                    "kind=\"notify_sync\"", "kind=\"auth_verify\""};
	for (int k = 4; k >= 1; k--) {
		gw->request_seconds[k] = (struct sb_metric){
		    .name = "sb_gateway_bus_request_seconds",
		    .labels = kinds[k],
		    .help = "Bus request round trip (first publish to reply), by kind.",
		    .type = SB_HISTOGRAM};
		sb_metrics_add(&gw->reg, &gw->request_seconds[k]);
	}
}

void gw_http_count_error(struct gw *gw, const char *sentence)
{
	for (size_t i = 0; i < N_SENTENCES; i++)
		if (error_sentences[i] == sentence || !strcmp(error_sentences[i], sentence)) {
			sb_metric_inc(&gw->errors_by_reason[i], 1);
			return;
		}
}

char *gw_http_metrics(struct gw *gw, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	if (!f)
		return NULL;
	const struct gw_metrics *m = &gw->m;
	fprintf(f,
	        "# HELP sb_gateway_connections Open WebSocket connections by endpoint.\n"
	        "# TYPE sb_gateway_connections gauge\n"
	        "sb_gateway_connections{endpoint=\"chat\"} %lld\n"
	        "sb_gateway_connections{endpoint=\"notifications\"} %lld\n",
	        (long long)m->conns_current[GW_CHAT], (long long)m->conns_current[GW_NOTIFY]);
	fprintf(f,
	        "# HELP sb_gateway_connections_opened_total Accepted upgrades by endpoint.\n"
	        "# TYPE sb_gateway_connections_opened_total counter\n"
	        "sb_gateway_connections_opened_total{endpoint=\"chat\"} %llu\n"
	        "sb_gateway_connections_opened_total{endpoint=\"notifications\"} %llu\n",
	        (unsigned long long)m->conns_opened[GW_CHAT],
	        (unsigned long long)m->conns_opened[GW_NOTIFY]);
	fprintf(
	    f,
	    "# HELP sb_gateway_handshakes_refused_total Refused upgrades by reason.\n"
	    "# TYPE sb_gateway_handshakes_refused_total counter\n"
	    "sb_gateway_handshakes_refused_total{reason=\"auth\"} %llu\n"
	    "sb_gateway_handshakes_refused_total{reason=\"origin\"} %llu\n"
	    "sb_gateway_handshakes_refused_total{reason=\"unavailable\"} %llu\n"
	    "sb_gateway_handshakes_refused_total{reason=\"user_cap\"} %llu\n"
	    "sb_gateway_handshakes_refused_total{reason=\"ip_failures\"} %llu\n",
	    (unsigned long long)m->conns_refused_auth, (unsigned long long)m->conns_refused_origin,
	    (unsigned long long)m->conns_refused_unavailable,
	    (unsigned long long)m->conns_refused_user_cap, (unsigned long long)m->conns_refused_ip);
	fprintf(f,
	        "# TYPE sb_gateway_frames_in_total counter\nsb_gateway_frames_in_total %llu\n"
	        "# TYPE sb_gateway_frames_out_total counter\nsb_gateway_frames_out_total %llu\n"
	        "# TYPE sb_gateway_errors_sent_total counter\nsb_gateway_errors_sent_total %llu\n"
	        "# TYPE sb_gateway_messages_acked_total counter\n"
	        "sb_gateway_messages_acked_total %llu\n"
	        "# TYPE sb_gateway_chat_delivered_total counter\n"
	        "sb_gateway_chat_delivered_total %llu\n"
	        "# TYPE sb_gateway_backlog_replayed_total counter\n"
	        "sb_gateway_backlog_replayed_total %llu\n"
	        "# TYPE sb_gateway_bus_request_timeouts_total counter\n"
	        "sb_gateway_bus_request_timeouts_total %llu\n"
	        "# TYPE sb_gateway_rate_limited_total counter\nsb_gateway_rate_limited_total %llu\n"
	        "# TYPE sb_gateway_slow_consumer_closes_total counter\n"
	        "sb_gateway_slow_consumer_closes_total %llu\n"
	        "# TYPE sb_gateway_idle_closes_total counter\nsb_gateway_idle_closes_total %llu\n"
	        "# HELP sb_gateway_bus_stalls_total Bus work the loop was not woken for, found by "
	        "the once-a-second check (expected 0).\n"
	        "# TYPE sb_gateway_bus_stalls_total counter\nsb_gateway_bus_stalls_total %llu\n"
	        "# HELP sb_gateway_receipt_messages_total Delivery receipt messages published "
	        "(one per subject and flush, each for many users).\n"
	        "# TYPE sb_gateway_receipt_messages_total counter\n"
	        "sb_gateway_receipt_messages_total %llu\n"
	        "# TYPE sb_gateway_bus_requests_inflight gauge\n"
	        "sb_gateway_bus_requests_inflight %zu\n"
	        "# TYPE sb_gateway_bus_connected gauge\nsb_gateway_bus_connected %d\n",
	        (unsigned long long)m->frames_in, (unsigned long long)m->frames_out,
	        (unsigned long long)m->errors_sent, (unsigned long long)m->messages_acked,
	        (unsigned long long)m->chat_delivered, (unsigned long long)m->backlog_replayed,
	        (unsigned long long)m->request_timeouts, (unsigned long long)m->rate_limited,
	        (unsigned long long)m->slow_consumer_closes, (unsigned long long)m->idle_closes,
	        (unsigned long long)m->bus_stalls, (unsigned long long)m->receipts_sent,
	        gw_requests_inflight(gw), gw_bus_up(gw));
	fprintf(f,
	        "# HELP sb_gateway_receipts_dropped_total Delivery receipts not kept (out of "
	        "memory, over 65,536 held while the bus was down, or over 65,536 waiting for "
	        "one socket's PONG); those messages replay on the next connect.\n"
	        "# TYPE sb_gateway_receipts_dropped_total counter\n"
	        "sb_gateway_receipts_dropped_total %llu\n"
	        "# HELP sb_gateway_bus_no_responders_total Requests NATS answered with \"no "
	        "responders\" (the service not subscribed yet); each is retried at its timeout.\n"
	        "# TYPE sb_gateway_bus_no_responders_total counter\n"
	        "sb_gateway_bus_no_responders_total %llu\n"
	        "# HELP sb_gateway_unsubscribes_deferred_total Per-user unsubscribes put off "
	        "while the bus was down (made once it is back).\n"
	        "# TYPE sb_gateway_unsubscribes_deferred_total counter\n"
	        "sb_gateway_unsubscribes_deferred_total %llu\n"
	        "# HELP sb_gateway_delivery_probes_total PINGs written behind deliveries; "
	        "their PONGs release the receipts.\n"
	        "# TYPE sb_gateway_delivery_probes_total counter\n"
	        "sb_gateway_delivery_probes_total %llu\n"
	        "# HELP sb_gateway_receipts_unconfirmed_at_close_total Deliveries written to "
	        "sockets that closed before the client confirmed them; they replay on its next "
	        "connect.\n"
	        "# TYPE sb_gateway_receipts_unconfirmed_at_close_total counter\n"
	        "sb_gateway_receipts_unconfirmed_at_close_total %llu\n"
	        "# HELP sb_gateway_loop_stalls_total Times the loop was busy for over 100 ms "
	        "(logged as loop_stall).\n"
	        "# TYPE sb_gateway_loop_stalls_total counter\n"
	        "sb_gateway_loop_stalls_total %llu\n",
	        (unsigned long long)m->receipts_dropped, (unsigned long long)m->no_responders,
	        (unsigned long long)m->unsubs_deferred, (unsigned long long)m->probes_sent,
	        (unsigned long long)m->unconfirmed_lost, (unsigned long long)m->loop_stalls);
	size_t reg_len = 0;
	char *reg = sb_metrics_render(&gw->reg, &reg_len);
	if (reg)
		fwrite(reg, 1, reg_len, f);
	free(reg);
	fclose(f);
	*len = size;
	return buf;
}

static int respond(struct lws *wsi, struct gw_conn *c, unsigned int status, const char *ctype,
                   char *body, size_t len)
{
	unsigned char hdr[LWS_PRE + 512];
	unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
	c->http_body = body;
	c->http_len = len;
	if (lws_add_http_common_headers(wsi, status, ctype, (lws_filepos_t)len, &p, end) ||
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
	                                 (unsigned char *)"no-store", 8, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return 1;
	lws_callback_on_writable(wsi);
	return 0;
}

int gw_http_request(struct gw *gw, struct lws *wsi, struct gw_conn *c, const char *path)
{
	if (!strcmp(path, "/healthz"))
		return respond(wsi, c, 200, "text/plain", strdup("ok\n"), 3);
	if (!strcmp(path, "/readyz")) {
		int ready = gw_bus_up(gw) && !gw->draining;
		return respond(wsi, c, ready ? 200 : 503, "text/plain",
		               strdup(ready ? "ready\n" : "not ready\n"), ready ? 6 : 10);
	}
	if (!strcmp(path, "/metrics")) {
		size_t len = 0;
		char *body = gw_http_metrics(gw, &len);
		if (!body)
			return 1;
		return respond(wsi, c, 200, "text/plain; version=0.0.4", body, len);
	}
	if (gw_auth_endpoint(path))
		return respond(wsi, c, 426, "text/plain", strdup("WebSocket upgrade required\n"),
		               27);
	return respond(wsi, c, 404, "text/plain", strdup("not found\n"), 10);
}

int gw_http_writeable(struct lws *wsi, struct gw_conn *c)
{
	if (!c->http_body)
		return -1;
	unsigned char *buf = malloc(LWS_PRE + c->http_len + 1);
	if (!buf)
		return -1;
	memcpy(buf + LWS_PRE, c->http_body, c->http_len);
	int w = lws_write(wsi, buf + LWS_PRE, c->http_len, LWS_WRITE_HTTP_FINAL);
	free(buf);
	free(c->http_body);
	c->http_body = NULL;
	if (w < (int)c->http_len)
		return -1;
	if (lws_http_transaction_completed(wsi))
		return -1;
	return 0;
}
