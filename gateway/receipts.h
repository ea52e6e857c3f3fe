/*
 * receipts: delivery receipts (chat.delivered.<p>, notify.delivered), batched. Each
 * frame written to a socket adds (kind, user, id); a short timer publishes one
 * Delivered per (kind, user) so a burst of writes costs a few bus messages, not one
 * each. A receipt lost in a crash only means a replay the socket dedups. Loop thread.
 */
#ifndef GW_RECEIPTS_H
#define GW_RECEIPTS_H

#include "gw.h"

void gw_receipts_add(struct gw *gw, enum gw_kind kind, uint64_t user_id, uint64_t id);

/* Publish everything pending now (also called at shutdown). */
void gw_receipts_flush(struct gw *gw);

void gw_receipts_destroy(struct gw *gw);

#endif
