/*
 * chat_common: the little things every subject handler of chat-svc needs: error
 * replies, request ids made safe for a log line, and log rate limiting.
 *
 * request_id comes from the wire; it is copied verbatim into replies (it is the
 * caller's correlation key) but only its harmless characters reach a log line.
 */
#ifndef CHAT_COMMON_H
#define CHAT_COMMON_H

#include <nats/nats.h>
#include <stdatomic.h>
#include <stdint.h>

#include "switchboard.pb-c.h"

struct sb_bus;

#define CHAT_RID_MAX 65

/* Copy the printable [A-Za-z0-9._:-] part of rid (NULL -> "-"), at most
 * CHAT_RID_MAX - 1 characters, into buf (CHAT_RID_MAX bytes). Returns buf. */
const char *chat_safe_rid(const char *rid, char buf[CHAT_RID_MAX]);

/* Reply Envelope.error{code, text} to a request whose reply subject is `reply`
 * (no-op when NULL or empty), carrying request_id. Any thread. */
void chat_reply_error(struct sb_bus *bus, const char *reply, const char *request_id,
                      Sb__ErrorCode code, const char *text);

/* 1 at most once per interval_ms per *last (a process-wide rate limit), else 0. */
int chat_log_allow(_Atomic int64_t *last, int64_t interval_ms);

#endif
