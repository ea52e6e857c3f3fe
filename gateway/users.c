/*
 * users: user table (tsearch tree by id) and per-user subscriptions. Delivery
 * callbacks run on libnats threads and only queue the message on the hand-off.
 */
#include "users.h"

#include <search.h>
#include <stdlib.h>

#include "busloop.h"
#include "handoff.h"
#include "sb_log.h"
#include "sb_subjects.h"

static int cmp_user(const void *a, const void *b)
{
	const struct gw_user *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

struct gw_user *gw_users_find(struct gw *gw, uint64_t id)
{
	struct gw_user key = {.id = id};
	void *found = tfind(&key, &gw->users, cmp_user);
	return found ? *(struct gw_user **)found : NULL;
}

/* libnats thread. */
static void on_chat_delivery(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	gw_handoff_push(closure, GW_EV_DELIVER_CHAT, msg);
}

/* libnats thread. */
static void on_notify_delivery(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                               void *closure)
{
	(void)nc;
	(void)sub;
	gw_handoff_push(closure, GW_EV_DELIVER_NOTIFY, msg);
}

static int subscribe(struct gw *gw, natsSubscription **sub, const char *base, uint64_t id,
                     natsMsgHandler cb)
{
	char subj[64];
	snprintf(subj, sizeof subj, "%s.%llu", base, (unsigned long long)id);
	if (!gw_bus_up(gw)) {
		SB_INFO("subscribe_refused", "subject=%s reason=bus_down", subj);
		return -1;
	}
	natsStatus s = natsConnection_Subscribe(sub, gw->bus->nc, subj, cb, gw);
	if (s == NATS_OK) {
		gw_handoff_track(gw, *sub);
		s = natsSubscription_SetPendingLimits(*sub, -1, -1);
	}
	if (s != NATS_OK) {
		SB_ERROR("subscribe_failed", "subject=%s error=\"%s\"", subj,
		         natsStatus_GetText(s));
		natsSubscription_Destroy(*sub);
		*sub = NULL;
		return -1;
	}
	return 0;
}

/* 0 when sub waits in gw->unsub_later, -1 when out of memory. */
static int defer(struct gw *gw, natsSubscription *sub)
{
	if (gw->unsub_later_len == gw->unsub_later_cap) {
		size_t cap = gw->unsub_later_cap ? gw->unsub_later_cap * 2 : 64;
		natsSubscription **grown = realloc(gw->unsub_later, cap * sizeof *grown);
		if (!grown)
			return -1;
		gw->unsub_later = grown;
		gw->unsub_later_cap = cap;
	}
	gw->unsub_later[gw->unsub_later_len++] = sub;
	gw->m.unsubs_deferred++;
	return 0;
}

static void unsubscribe(struct gw *gw, natsSubscription **sub)
{
	if (!*sub)
		return;
	if (gw_bus_up(gw) || defer(gw, *sub) < 0) {
		natsSubscription_Unsubscribe(*sub);
		natsSubscription_Destroy(*sub);
	}
	*sub = NULL;
}

void gw_users_unsubscribe_deferred(struct gw *gw)
{
	if (!gw->unsub_later_len || !gw_bus_up(gw))
		return;
	SB_INFO("unsubscribed_deferred", "subscriptions=%zu", gw->unsub_later_len);
	for (size_t i = 0; i < gw->unsub_later_len; i++) {
		natsSubscription_Unsubscribe(gw->unsub_later[i]);
		natsSubscription_Destroy(gw->unsub_later[i]);
	}
	gw->unsub_later_len = 0;
}

void gw_users_destroy_deferred(struct gw *gw)
{
	for (size_t i = 0; i < gw->unsub_later_len; i++)
		natsSubscription_Destroy(gw->unsub_later[i]);
	free(gw->unsub_later);
	gw->unsub_later = NULL;
	gw->unsub_later_len = gw->unsub_later_cap = 0;
}

int gw_users_attach(struct gw *gw, struct gw_conn *c)
{
	struct gw_user *u = gw_users_find(gw, c->user_id);
	if (!u) {
		u = calloc(1, sizeof *u);
		if (!u)
			return -1;
		u->id = c->user_id;
		if (!tsearch(u, &gw->users, cmp_user)) {
			free(u);
			return -1;
		}
	}
	int rc = 0;
	if (c->kind == GW_CHAT && !u->chat_sub)
		rc = subscribe(gw, &u->chat_sub, SB_SUBJ_DELIVER_CHAT, u->id, on_chat_delivery);
	else if (c->kind == GW_NOTIFY && !u->notify_sub)
		rc = subscribe(gw, &u->notify_sub, SB_SUBJ_DELIVER_NOTIFY, u->id,
		               on_notify_delivery);
	if (rc < 0) {
		if (u->nconns == 0) {
			tdelete(u, &gw->users, cmp_user);
			free(u);
		}
		return -1;
	}
	struct gw_conn **head = c->kind == GW_CHAT ? &u->chat : &u->notify;
	c->next_of_user = *head;
	c->prev_of_user = NULL;
	if (*head)
		(*head)->prev_of_user = c;
	*head = c;
	c->user = u;
	u->nconns++;
	return 0;
}

void gw_users_detach(struct gw *gw, struct gw_conn *c)
{
	struct gw_user *u = c->user;
	if (!u)
		return;
	struct gw_conn **head = c->kind == GW_CHAT ? &u->chat : &u->notify;
	if (c->prev_of_user)
		c->prev_of_user->next_of_user = c->next_of_user;
	else
		*head = c->next_of_user;
	if (c->next_of_user)
		c->next_of_user->prev_of_user = c->prev_of_user;
	c->next_of_user = c->prev_of_user = NULL;
	c->user = NULL;
	u->nconns--;
	if (!u->chat)
		unsubscribe(gw, &u->chat_sub);
	if (!u->notify)
		unsubscribe(gw, &u->notify_sub);
	if (u->nconns == 0) {
		tdelete(u, &gw->users, cmp_user);
		free(u);
	}
}

struct walk_ctx {
	struct gw *gw;
	void (*fn)(struct gw *, struct gw_conn *, void *);
	void *arg;
};

static void walk(const void *node, VISIT which, void *closure)
{
	if (which != postorder && which != leaf)
		return;
	struct walk_ctx *w = closure;
	const struct gw_user *u = *(struct gw_user *const *)node;
	for (struct gw_conn *c = u->chat; c;) {
		struct gw_conn *next = c->next_of_user;
		w->fn(w->gw, c, w->arg);
		c = next;
	}
	for (struct gw_conn *c = u->notify; c;) {
		struct gw_conn *next = c->next_of_user;
		w->fn(w->gw, c, w->arg);
		c = next;
	}
}

void gw_users_foreach_conn(struct gw *gw, void (*fn)(struct gw *, struct gw_conn *, void *),
                           void *arg)
{
	/* fn must not detach sockets: it may only mark them for closing. */
	struct walk_ctx w = {gw, fn, arg};
	twalk_r(gw->users, walk, &w);
}
