/*
 * bus: how sbctl talks to NATS: one bounded connection attempt, single requests, and
 * pipelined bulk requests.
 *
 * Design: an operator tool must fail fast, so unlike the services (sb_bus_connect,
 * which retries forever) it connects once with the command's timeout and never
 * reconnects. Bulk commands publish up to SBCTL_WINDOW requests ahead, each with a
 * reply subject <inbox>.<index> under one wildcard subscription, and collect replies
 * in whatever order they come: 10,000 lines cost 10,000 small SQLite writes on the
 * service side, not 10,000 round trips. The window bounds what is queued anywhere.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbctl.h"

int sbctl_connect(struct sbctl *c)
{
	if (c->bus)
		return 0;
	struct sb_bus *bus = NULL;
	natsStatus s = sb_bus_connect_once(&bus, c->nats_url, "sbctl", (int)c->timeout_ms);
	if (s != NATS_OK)
		return sbctl_fail("cannot connect to NATS at %s: %s", c->nats_url,
		                  natsStatus_GetText(s));
	c->bus = bus;
	return 0;
}

void sbctl_disconnect(struct sbctl *c)
{
	sb_bus_destroy(c->bus, (int)c->timeout_ms);
	c->bus = NULL;
}

int sbctl_request(struct sbctl *c, const char *subject, Sb__Envelope *req, Sb__Envelope **reply)
{
	if (sbctl_connect(c) != 0)
		return SBCTL_EXIT_FAIL;
	char rid[48];
	snprintf(rid, sizeof rid, "sbctl-%ld", (long)getpid());
	if (!req->request_id || !*req->request_id)
		req->request_id = rid;
	natsStatus s = sb_bus_request(c->bus, subject, req, (int)c->timeout_ms, reply);
	if (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS)
		return sbctl_fail(SBCTL_NO_ANSWER);
	if (s != NATS_OK)
		return sbctl_fail("request on %s failed: %s", subject, natsStatus_GetText(s));
	return SBCTL_EXIT_OK;
}

/* The index a reply subject "<inbox>.<i>" carries, or -1. */
static long reply_index(const char *subject, size_t prefix_len, size_t n)
{
	if (!subject || strlen(subject) <= prefix_len)
		return -1;
	const char *p = subject + prefix_len;
	long v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > (long)n)
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v < (long)n ? v : -1;
}

size_t sbctl_pipeline(struct sbctl *c, const char *subject, size_t n, sbctl_fill_fn fill,
                      sbctl_reply_fn on_reply, void *ctx)
{
	if (n == 0)
		return 0;
	if (sbctl_connect(c) != 0)
		return (size_t)-1;
	unsigned char *answered = calloc(n, 1);
	natsInbox *inbox = NULL;
	natsSubscription *sub = NULL;
	char prefix[128];
	char wildcard[132];
	natsStatus s = answered ? natsInbox_Create(&inbox) : NATS_NO_MEMORY;
	if (s == NATS_OK) {
		snprintf(prefix, sizeof prefix, "%s.", inbox);
		snprintf(wildcard, sizeof wildcard, "%s*", prefix);
		s = natsConnection_SubscribeSync(&sub, c->bus->nc, wildcard);
	}
	if (s != NATS_OK) {
		free(answered);
		natsInbox_Destroy(inbox);
		sbctl_fail("cannot subscribe for replies: %s", natsStatus_GetText(s));
		return (size_t)-1;
	}
	size_t prefix_len = strlen(prefix);
	long pid = (long)getpid();
	size_t next = 0, outstanding = 0, done = 0;
	while (s == NATS_OK && done < n) {
		while (s == NATS_OK && next < n && outstanding < SBCTL_WINDOW) {
			Sb__Envelope env = SB__ENVELOPE__INIT;
			char rid[48];
			char reply[160];
			snprintf(rid, sizeof rid, "sbctl-%ld-%zu", pid, next);
			snprintf(reply, sizeof reply, "%s%zu", prefix, next);
			env.request_id = rid;
			fill(ctx, next, &env);
			s = sb_bus_publish(c->bus, subject, reply, &env);
			next++;
			outstanding++;
		}
		if (s != NATS_OK)
			break;
		natsMsg *m = NULL;
		s = natsSubscription_NextMsg(&m, sub, c->timeout_ms);
		if (s != NATS_OK)
			break; /* timeout, no responders, connection lost: the rest is unanswered */
		long i = reply_index(natsMsg_GetSubject(m), prefix_len, n);
		if (i >= 0 && !answered[i]) {
			answered[i] = 1;
			done++;
			outstanding--;
			Sb__Envelope *rep = sb_envelope_unpack(natsMsg_GetData(m),
			                                       (size_t)natsMsg_GetDataLength(m));
			Sb__Envelope empty = SB__ENVELOPE__INIT;
			on_reply(ctx, (size_t)i, rep ? rep : &empty);
			sb_envelope_free(rep);
		}
		natsMsg_Destroy(m);
	}
	size_t missing = 0;
	for (size_t i = 0; i < n; i++) {
		if (!answered[i]) {
			on_reply(ctx, i, NULL);
			missing++;
		}
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	natsInbox_Destroy(inbox);
	free(answered);
	return missing;
}

int sbctl_admin_result(const Sb__Envelope *reply, const char **why)
{
	if (reply->body_case == SB__ENVELOPE__BODY_ADMIN_REPLY && reply->admin_reply) {
		if (reply->admin_reply->ok)
			return SBCTL_EXIT_OK;
		*why = *reply->admin_reply->error ? reply->admin_reply->error : "refused";
	} else if (reply->body_case == SB__ENVELOPE__BODY_ERROR && reply->error) {
		*why = *reply->error->text ? reply->error->text : "error";
	} else {
		*why = "unexpected reply from auth-svc";
	}
	return SBCTL_EXIT_FAIL;
}
