/*
 * http: the gateway's plain HTTP endpoints on the WebSocket port: /healthz (alive),
 * /readyz (bus connected and not draining), /metrics (Prometheus text). Loop thread.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include "gw.h"

/* LWS_CALLBACK_HTTP: answer or refuse. Returns the lws callback result. */
int gw_http_request(struct gw *gw, struct lws *wsi, struct gw_conn *c, const char *path);

/* LWS_CALLBACK_HTTP_WRITEABLE: write the prepared body. */
int gw_http_writeable(struct lws *wsi, struct gw_conn *c);

/* Register the labelled metrics (errors by sentence, request latency). Once, at start. */
void gw_http_metrics_init(struct gw *gw);

/* Count one error frame by its sentence. */
void gw_http_count_error(struct gw *gw, const char *sentence);

/* Render /metrics into a malloc'd string (length in *len). */
char *gw_http_metrics(struct gw *gw, size_t *len);

#endif
