/*
 * sb_http: health and metrics over HTTP for back-end services, see sb_http.h.
 */
#include "sb_http.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sb_log.h"
#include "sb_util.h"

struct sb_http {
	struct lws_context *ctx;
	pthread_t thread;
	_Atomic int stop;
	struct sb_bus *const *bus_slot;
	_Atomic int *ready;
	struct sb_metrics *metrics;
};

struct http_pss {
	char *body;
	size_t len;
};

static int respond(struct lws *wsi, struct http_pss *pss, unsigned int status, char *body,
                   size_t len, const char *ctype)
{
	unsigned char hdr[LWS_PRE + 256];
	unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
	pss->body = body;
	pss->len = len;
	if (!body || lws_add_http_common_headers(wsi, status, ctype, (lws_filepos_t)len, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return 1;
	lws_callback_on_writable(wsi);
	return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
	(void)len;
	struct sb_http *h = lws_context_user(lws_get_context(wsi));
	struct http_pss *pss = user;
	switch (reason) {
	case LWS_CALLBACK_HTTP: {
		const char *path = in;
		if (!strcmp(path, "/healthz"))
			return respond(wsi, pss, 200, strdup("ok\n"), 3, "text/plain");
		if (!strcmp(path, "/readyz")) {
			struct sb_bus *bus = *h->bus_slot;
			int ok = bus && atomic_load(&bus->connected) && atomic_load(h->ready);
			return respond(wsi, pss, ok ? 200 : 503,
			               strdup(ok ? "ready\n" : "not ready\n"), ok ? 6 : 10,
			               "text/plain");
		}
		if (!strcmp(path, "/metrics")) {
			size_t n = 0;
			char *body = sb_metrics_render(h->metrics, &n);
			return respond(wsi, pss, 200, body, n, "text/plain; version=0.0.4");
		}
		return respond(wsi, pss, 404, strdup("not found\n"), 10, "text/plain");
	}
	case LWS_CALLBACK_HTTP_WRITEABLE: {
		if (!pss->body)
			return -1;
		unsigned char *buf = malloc(LWS_PRE + pss->len + 1);
		if (!buf)
			return -1;
		memcpy(buf + LWS_PRE, pss->body, pss->len);
		int w = lws_write(wsi, buf + LWS_PRE, pss->len, LWS_WRITE_HTTP_FINAL);
		free(buf);
		free(pss->body);
		pss->body = NULL;
		if (w < (int)pss->len || lws_http_transaction_completed(wsi))
			return -1;
		return 0;
	}
	case LWS_CALLBACK_CLOSED_HTTP:
		if (pss) {
			free(pss->body);
			pss->body = NULL;
		}
		break;
	default:
		break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
    {"http", callback, sizeof(struct http_pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *run(void *arg)
{
	struct sb_http *h = arg;
	while (!atomic_load(&h->stop))
		if (lws_service(h->ctx, 0) < 0)
			break;
	return NULL;
}

int sb_http_start(struct sb_http **out, const char *listen, struct sb_bus *const *bus_slot,
                  _Atomic int *ready, struct sb_metrics *metrics)
{
	*out = NULL;
	if (!listen || !*listen)
		return 0;
	char host[128];
	int port;
	if (sb_parse_listen(listen, host, sizeof host, &port) < 0) {
		SB_ERROR("http_listen", "listen=%s error=\"expected HOST:PORT\"", listen);
		return -1;
	}
	struct sb_http *h = calloc(1, sizeof *h);
	if (!h)
		return -1;
	h->bus_slot = bus_slot;
	h->ready = ready;
	h->metrics = metrics;
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.port = port;
	info.iface = strcmp(host, "0.0.0.0") && *host ? host : NULL;
	info.protocols = protocols;
	info.user = h;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	lws_set_log_level(LLL_ERR, NULL);
	h->ctx = lws_create_context(&info);
	if (!h->ctx) {
		SB_ERROR("http_listen", "listen=%s error=\"cannot listen\"", listen);
		free(h);
		return -1;
	}
	if (pthread_create(&h->thread, NULL, run, h) != 0) {
		lws_context_destroy(h->ctx);
		free(h);
		return -1;
	}
	SB_INFO("http_listening", "listen=%s", listen);
	*out = h;
	return 0;
}

void sb_http_stop(struct sb_http *h)
{
	if (!h)
		return;
	atomic_store(&h->stop, 1);
	lws_cancel_service(h->ctx);
	pthread_join(h->thread, NULL);
	lws_context_destroy(h->ctx);
	free(h);
}
