/*
 * rawfile: descriptors the gateway's lws loop polls for us (preauth's epoll set, the
 * bus socket's epoll set, the timerfd), each adopted as a raw file under a protocol of
 * its own whose callback gets LWS_CALLBACK_RAW_RX_FILE when it is readable.
 */
#ifndef GW_RAWFILE_H
#define GW_RAWFILE_H

#include "gw.h"

/* Adopt fd under `protocol` (one of main.c's protocols). The wsi, or NULL (lws has
 * closed fd then). Loop thread. */
struct lws *gw_rawfile_adopt(struct gw *gw, int fd, const char *protocol);

/* What a raw-file protocol's callback returns for any reason it does not handle: such
 * a protocol only watches its descriptor, so a client naming it as its subprotocol
 * gets nothing from it (-1 for the HTTP and WebSocket reasons, 0 otherwise). */
int gw_rawfile_other(enum lws_callback_reasons reason);

#endif
