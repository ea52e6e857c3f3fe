/*
 * chat: the chat socket's behaviour. A frame becomes a chat.send request; its reply
 * becomes message_sent or an error; deliver.chat.<user> messages become chat_message
 * frames on every chat socket of that user; a new socket first replays its backlog
 * (chat.sync, paged) before live frames flow. Loop thread only.
 */
#ifndef GW_CHAT_H
#define GW_CHAT_H

#include "gw.h"

/* A complete text frame from a chat socket. */
void gw_chat_on_frame(struct gw *gw, struct gw_conn *c, const char *data, size_t len);

/* A deliver.chat.<user> message from the hand-off. */
void gw_chat_on_delivery(struct gw *gw, natsMsg *msg);

/* Reply / final failure of a request made for socket c. */
void gw_chat_on_reply(struct gw *gw, struct gw_conn *c, enum gw_req_kind kind,
                      const Sb__Envelope *env);
void gw_chat_on_failure(struct gw *gw, struct gw_conn *c, enum gw_req_kind kind);

#endif
