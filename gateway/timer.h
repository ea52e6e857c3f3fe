/*
 * timer: lws timers (suls) that fire on time when lws runs on libev.
 *
 * lws 4.1's libev glue keeps one ev_timer for all its suls and re-arms it only when
 * it fires or after an I/O event, with ev_timer_set + ev_timer_start on a watcher that
 * may still be active, which libev ignores: a sul scheduled while the loop is quiet
 * runs when that timer was due anyway (up to the next one-second keepalive sweep).
 * Measured: receipts meant to leave 5 ms after a frame left 200-840 ms later, and a
 * client reconnecting in that window was replayed messages it already had. So every
 * gateway sul is scheduled here; with libev, a timerfd that lws polls as a raw file is
 * armed for the earliest of them, and its I/O event makes lws run its ripe suls.
 */
#ifndef GW_TIMER_H
#define GW_TIMER_H

#include "gw.h"

/* After the lws context exists. 0, or -1. A no-op (0) with the poll loop, whose
 * poll() timeout already follows the suls. */
int gw_timer_init(struct gw *gw);
void gw_timer_destroy(struct gw *gw);

/* lws_sul_schedule(gw->ctx, 0, sul, cb, us), on time. Loop thread. */
void gw_timer_schedule(struct gw *gw, lws_sorted_usec_list_t *sul, sul_cb_t cb, lws_usec_t us);

/* The loop-lag probe: a sul due every 100 ms whose lateness, the longest the loop went
 * without looking at its timers, goes into sb_gateway_loop_lag_seconds; a lateness over
 * GW_LOOP_STALL_MS is also logged (loop_stall). Loop thread. */
#define GW_LOOP_STALL_MS 100
void gw_timer_lag_start(struct gw *gw);
void gw_timer_lag_stop(struct gw *gw);

/* The raw protocol's callback (the timerfd's expiry). */
int gw_timer_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);

#endif
