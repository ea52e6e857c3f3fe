/*
 * render: server -> client JSON. jansson keeps insertion order, so keys come out in
 * the order the client guide prints them.
 */
#include "render.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "sb_util.h"

/* One serialisation into a stack buffer (json_dumpb reports the size it needs), a
 * second only for the rare frame that does not fit. */
static struct gw_buf *from_json(json_t *obj)
{
	if (!obj)
		return NULL;
	char stack[4096];
	size_t len = json_dumpb(obj, stack, sizeof stack, JSON_COMPACT);
	struct gw_buf *b = len ? malloc(sizeof *b + LWS_PRE + len) : NULL;
	if (b) {
		memset(b, 0, sizeof *b);
		b->refs = 1;
		if (len <= sizeof stack)
			memcpy(b->data + LWS_PRE, stack, len);
		else
			len = json_dumpb(obj, (char *)b->data + LWS_PRE, len, JSON_COMPACT);
		b->len = len;
	}
	json_decref(obj);
	return b;
}

struct gw_buf *gw_render_chat_message(const Sb__ChatMessage *m)
{
	char ts[32];
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "type", json_string("chat_message"));
	json_object_set_new(o, "id", json_integer((json_int_t)m->id));
	json_object_set_new(o, "sender_id", json_integer((json_int_t)m->sender_id));
	json_object_set_new(o, "sender_name", json_stringn(m->sender_name, strlen(m->sender_name)));
	json_object_set_new(o, "message", json_stringn(m->message, strlen(m->message)));
	json_object_set_new(o, "attachment",
	                    m->has_attachment ? json_string(m->attachment) : json_null());
	json_object_set_new(o, "timestamp",
	                    json_string(sb_rfc3339(m->timestamp_ms, ts, sizeof ts)));
	struct gw_buf *b = from_json(o);
	if (b) {
		b->kind = GW_CHAT;
		b->id = m->id;
		b->user_id = m->receiver_id;
	}
	return b;
}

struct gw_buf *gw_render_message_sent(const Sb__ChatSent *s)
{
	char ts[32];
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "type", json_string("message_sent"));
	json_object_set_new(o, "id", json_integer((json_int_t)s->id));
	json_object_set_new(o, "receiver_id", json_integer((json_int_t)s->receiver_id));
	json_object_set_new(o, "timestamp",
	                    json_string(sb_rfc3339(s->timestamp_ms, ts, sizeof ts)));
	return from_json(o);
}

struct gw_buf *gw_render_error(const char *sentence)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "type", json_string("error"));
	json_object_set_new(o, "error", json_string(sentence));
	return from_json(o);
}

struct gw_buf *gw_render_notify(const Sb__Notification *n)
{
	char ts[32];
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "type", json_string("notify"));
	json_object_set_new(o, "id", json_integer((json_int_t)n->id));
	json_object_set_new(o, "title", json_string(n->title));
	json_object_set_new(o, "message", json_string(n->message));
	json_object_set_new(o, "notification_type",
	                    json_string(*n->notification_type ? n->notification_type : "info"));
	json_object_set_new(o, "timestamp",
	                    json_string(sb_rfc3339(n->timestamp_ms, ts, sizeof ts)));
	struct gw_buf *b = from_json(o);
	if (b) {
		b->kind = GW_NOTIFY;
		b->id = n->id;
		b->user_id = n->user_id;
	}
	return b;
}

void gw_buf_ref(struct gw_buf *b)
{
	b->refs++;
}

void gw_buf_unref(struct gw_buf *b)
{
	if (b && --b->refs == 0)
		free(b);
}
