/*
 * sb_http: the operator endpoints of a back-end service (auth-svc, chat-svc,
 * notify-svc): /healthz (the process answers), /readyz (bus connected and the service
 * says it is ready), /metrics (Prometheus text). A small libwebsockets context on its
 * own thread, so a busy or blocked service thread never stalls a probe.
 */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <stdatomic.h>

#include "sb_bus.h"
#include "sb_metrics.h"

struct sb_http;

/* Listen on "host:port" (empty string: do not serve; *out = NULL and 0 returned).
 * bus may be NULL until connected: readiness reads *bus_slot each time. ready is the
 * service's own readiness flag. Returns 0 or -1 (cannot listen; logged). */
int sb_http_start(struct sb_http **out, const char *listen, struct sb_bus *const *bus_slot,
                  _Atomic int *ready, struct sb_metrics *metrics);

/* Stop the thread and free. NULL is a no-op. */
void sb_http_stop(struct sb_http *http);

#endif
