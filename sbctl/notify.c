/*
 * notify: `sbctl notify` -- build the JSON injection, publish it on notify.send.json,
 * and report what notify-svc made of it.
 *
 * Design: two confirmations, two meanings. The publish is a JetStream publish, so its
 * PubAck says "captured durably by the NOTIFY stream" (it survives a notify-svc
 * restart from then on). The Sb-Reply header names a fresh inbox we subscribed to
 * before publishing; notify-svc answers there once it stored the notification (with
 * the ids) or refused it (with the reason). When the first arrives but not the second
 * (notify-svc is down), the notification is queued, not lost: we say so and exit 0.
 * Flags are checked here first, so an operator's typo is a usage error (exit 2), not
 * a round trip; notify-svc stays the authority on limits.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"
#include "sb_subjects.h"
#include "sb_util.h"

#define USER_ID_MAX ((uint64_t)INT64_MAX)

static const char usage[] =
    "usage: sbctl notify (--user ID | --users ID,ID,... | --all)\n"
    "                    [--title TITLE] [--message MESSAGE] [--type TYPE]\n"
    "\n"
    "Send a notification to one user, several, or everyone: notify-svc stores it,\n"
    "pushes it to their open notification sockets, and replays it to those offline when\n"
    "they next connect (within its retention window). At least one of --title and\n"
    "--message is required; --type is the notification_type (default \"info\").\n"
    "\n"
    "Prints \"notification IDS stored\" (IDS: one id per user, comma-separated). When\n"
    "notify-svc refuses it, prints the reason and exits 1. When notify-svc does not\n"
    "answer within --timeout-ms, the notification stays queued in the NOTIFY stream and\n"
    "is stored when notify-svc runs: prints \"notification queued (stream sequence N)\".";

/* Parse "1,2,3" into a new JSON array of integers. NULL after a usage message. */
static json_t *parse_users(const char *list)
{
	json_t *arr = json_array();
	if (!arr)
		return NULL;
	const char *p = list;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		char one[32];
		uint64_t id;
		if (n == 0 || n >= sizeof one) {
			sbctl_usage_error(
			    "--users: expected user ids separated by commas, got \"%s\"", list);
			goto fail;
		}
		memcpy(one, p, n);
		one[n] = 0;
		if (sb_parse_u64(one, USER_ID_MAX, &id) < 0) {
			sbctl_usage_error("--users: \"%s\" is not an integer in 1..2^63-1", one);
			goto fail;
		}
		if (json_array_append_new(arr, json_integer((json_int_t)id)) < 0)
			goto fail;
		if (!comma)
			return arr;
		p = comma + 1;
	}
fail:
	json_decref(arr);
	return NULL;
}

/* Add key: string to o; -1 after a usage message when s is not valid UTF-8. */
static int set_text(json_t *o, const char *key, const char *flag, const char *s)
{
	if (!s)
		return 0;
	json_t *v = json_string(s);
	if (!v) {
		sbctl_usage_error("--%s is not valid UTF-8", flag);
		return -1;
	}
	json_object_set_new(o, key, v);
	return 0;
}

/* The JSON payload from the flags, or NULL after a usage message. */
static json_t *build(const char *user_s, const char *users_s, int all, const char *title,
                     const char *message, const char *type)
{
	if ((user_s != NULL) + (users_s != NULL) + (all != 0) != 1) {
		sbctl_usage_error("notify needs exactly one of --user, --users and --all");
		return NULL;
	}
	if ((!title || !*title) && (!message || !*message)) {
		sbctl_usage_error("notify needs a non-empty --title or --message");
		return NULL;
	}
	if (type && !*type) {
		sbctl_usage_error("--type is empty");
		return NULL;
	}
	json_t *o = json_object();
	if (!o)
		return NULL;
	if (user_s) {
		uint64_t id;
		if (sb_parse_u64(user_s, USER_ID_MAX, &id) < 0) {
			sbctl_usage_error("--user must be an integer in 1..2^63-1, got \"%s\"",
			                  user_s);
			goto fail;
		}
		json_object_set_new(o, "user_id", json_integer((json_int_t)id));
	} else if (users_s) {
		json_t *ids = parse_users(users_s);
		if (!ids)
			goto fail;
		json_object_set_new(o, "user_ids", ids);
	} else {
		json_object_set_new(o, "all", json_true());
	}
	if (set_text(o, "title", "title", title) < 0 ||
	    set_text(o, "message", "message", message) < 0 ||
	    set_text(o, "notification_type", "type", type) < 0)
		goto fail;
	return o;
fail:
	json_decref(o);
	return NULL;
}

/* Publish body with Sb-Reply: inbox on notify.send.json and wait for the PubAck.
 * 0 and *seq, or an exit status after printing why. */
static int publish(struct sbctl *c, const char *body, const char *inbox, uint64_t *seq)
{
	jsCtx *js = NULL;
	natsMsg *m = NULL;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = c->timeout_ms;
	natsStatus s = natsConnection_JetStream(&js, c->bus->nc, &jo);
	if (s == NATS_OK)
		s = natsMsg_Create(&m, SB_SUBJ_NOTIFY_SEND_JSON, NULL, body, (int)strlen(body));
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, SB_NOTIFY_REPLY_HEADER, inbox);
	if (s == NATS_OK)
		s = js_PublishMsg(&pa, js, m, NULL, &jerr);
	int rc = SBCTL_EXIT_OK;
	if (s == NATS_OK)
		*seq = pa->Sequence;
	else if (s == NATS_NO_RESPONDERS)
		rc =
		    sbctl_fail("no JetStream stream captures %s: start notify-svc once (it creates "
		               "the %s stream) and run nats-server with -js",
		               SB_SUBJ_NOTIFY_SEND_JSON, SB_NOTIFY_STREAM);
	else if (s == NATS_TIMEOUT)
		rc = sbctl_fail("NATS did not confirm that the notification was captured within "
		                "%lld ms; it may or may not have been queued",
		                (long long)c->timeout_ms);
	else
		rc = sbctl_fail("publishing on %s failed: %s", SB_SUBJ_NOTIFY_SEND_JSON,
		                nats_GetLastError(NULL) ? nats_GetLastError(NULL)
		                                        : natsStatus_GetText(s));
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(m);
	jsCtx_Destroy(js);
	return rc;
}

/* Print notify-svc's outcome; returns the exit status. */
static int report(const natsMsg *reply)
{
	json_error_t jerr;
	json_t *o = json_loadb(natsMsg_GetData((natsMsg *)reply),
	                       (size_t)natsMsg_GetDataLength((natsMsg *)reply), 0, &jerr);
	json_t *ok = o ? json_object_get(o, "ok") : NULL;
	int rc;
	if (json_is_true(ok) && json_is_array(json_object_get(o, "ids"))) {
		json_t *ids = json_object_get(o, "ids");
		printf("notification ");
		for (size_t i = 0; i < json_array_size(ids); i++)
			printf("%s%lld", i ? "," : "",
			       (long long)json_integer_value(json_array_get(ids, i)));
		printf(" stored\n");
		rc = sbctl_flush_stdout();
	} else if (json_is_false(ok)) {
		const char *why = json_string_value(json_object_get(o, "error"));
		rc = sbctl_fail("notification refused: %s", why ? why : "no reason given");
	} else {
		rc = sbctl_fail("unexpected answer from notify-svc");
	}
	json_decref(o);
	return rc;
}

int sbctl_notify(struct sbctl *c, int argc, char **argv)
{
	const char *user_s = NULL, *users_s = NULL, *title = NULL, *message = NULL, *type = NULL;
	int all = 0;
	const struct sb_opt opts[] = {
	    {"user", NULL, SB_OPT_STR, &user_s, NULL, "one user id"},
	    {"users", NULL, SB_OPT_STR, &users_s, NULL, "user ids, comma-separated"},
	    {"all", NULL, SB_OPT_BOOL, &all, NULL, "every user (a broadcast)"},
	    {"title", NULL, SB_OPT_STR, &title, NULL, "title text"},
	    {"message", NULL, SB_OPT_STR, &message, NULL, "message text"},
	    {"type", NULL, SB_OPT_STR, &type, NULL, "notification_type (default: info)"},
	    {NULL, NULL, SB_OPT_STR, NULL, NULL, NULL},
	};
	int r = sbctl_parse(argc, argv, opts, usage);
	if (r <= 0)
		return r == 0 ? SBCTL_EXIT_OK : SBCTL_EXIT_USAGE;
	json_t *o = build(user_s, users_s, all, title, message, type);
	if (!o)
		return SBCTL_EXIT_USAGE;
	char *body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!body)
		return sbctl_fail("out of memory");

	int rc = sbctl_connect(c);
	natsInbox *inbox = NULL;
	natsSubscription *sub = NULL;
	natsMsg *reply = NULL;
	if (rc != SBCTL_EXIT_OK)
		goto out;
	/* Subscribed before publishing, so the outcome cannot outrun us. */
	natsStatus s = natsInbox_Create(&inbox);
	if (s == NATS_OK)
		s = natsConnection_SubscribeSync(&sub, c->bus->nc, inbox);
	if (s != NATS_OK) {
		rc = sbctl_fail("cannot subscribe for the outcome: %s", natsStatus_GetText(s));
		goto out;
	}
	uint64_t seq = 0;
	rc = publish(c, body, inbox, &seq);
	if (rc != SBCTL_EXIT_OK)
		goto out;
	s = natsSubscription_NextMsg(&reply, sub, c->timeout_ms);
	if (s == NATS_OK) {
		rc = report(reply);
	} else if (s == NATS_TIMEOUT) {
		printf("notification queued (stream sequence %llu)\n", (unsigned long long)seq);
		rc = sbctl_flush_stdout();
		fprintf(stderr,
		        "sbctl: notify-svc did not confirm within %lld ms (is it running?); the "
		        "notification is kept in the %s stream and stored when it runs\n",
		        (long long)c->timeout_ms, SB_NOTIFY_STREAM);
	} else {
		rc = sbctl_fail("waiting for notify-svc failed: %s", natsStatus_GetText(s));
	}
out:
	natsMsg_Destroy(reply);
	if (sub) {
		natsSubscription_Unsubscribe(sub);
		natsSubscription_Destroy(sub);
	}
	natsInbox_Destroy(inbox);
	free(body);
	return rc;
}
