/*
 * render: the JSON frames the server sends (SPEC §2), rendered once into a shared,
 * refcounted gw_buf with LWS_PRE headroom, whatever number of sockets it goes to.
 */
#ifndef GW_RENDER_H
#define GW_RENDER_H

#include "gw.h"

/* Each returns a buffer with refs = 1, or NULL when out of memory. Loop thread. */
struct gw_buf *gw_render_chat_message(const Sb__ChatMessage *m);
struct gw_buf *gw_render_message_sent(const Sb__ChatSent *s);
struct gw_buf *gw_render_error(const char *sentence);
struct gw_buf *gw_render_notify(const Sb__Notification *n);

void gw_buf_ref(struct gw_buf *b);
void gw_buf_unref(struct gw_buf *b);

#endif
