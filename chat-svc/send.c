/*
 * send: chat.send.<p> -- validate, store durably, acknowledge, deliver.
 *
 * The handler runs on the partition's writer thread (its pump takes the request off
 * the socket, chat_partition.c). It only validates (including the cached auth look-up
 * of the receiver, which on a miss blocks the writer for one auth.lookup round trip on
 * svc->bus) and queues a job for the next batch; the writer stores it in a group
 * commit and only then calls send_finish, which sends chat_sent to the requester and chat_message
 * to deliver.chat.<receiver>. An idempotency key seen before stores nothing new: the stored row is
 * acknowledged and delivered again (gateways drop ids a socket has). A failed commit answers
 * ERR_STORAGE: nothing is acknowledged that is not on disk.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_common.h"
#include "chat_receivers.h"
#include "chat_store.h"
#include "chat_svc.h"
#include "chat_writer.h"
#include "sb_bus.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"

struct send_job {
	struct chat_job base;
	struct chat_partition *part;
	Sb__Envelope *env; /* owned; body_case is CHAT_SEND */
	char *reply;       /* owned copy of the request's reply subject, or NULL */
	struct chat_msg stored;
	int dup;             /* stored came from an earlier send with the same key */
	const char *refusal; /* set by send_store: answer ERR_BAD_REQUEST with this */
};

/* Where this partition answers sends: its own connection (see chat_partition.c). */
static struct sb_bus *bus_of(const struct chat_partition *part)
{
	return part->bus ? part->bus : part->svc->bus;
}

/* Refuse a send (nothing stored) and count it. */
static void send_error(struct chat_partition *part, const char *reply, const char *rid,
                       Sb__ErrorCode code, const char *text)
{
	sb_metric_inc(&part->svc->send_errors, 1);
	chat_reply_error(bus_of(part), reply, rid, code, text);
}

static const char *attachment_of(const Sb__ChatSend *cs)
{
	return cs->has_attachment && cs->attachment && *cs->attachment ? cs->attachment : NULL;
}

/* Writer thread, inside the batch transaction. */
static int send_store(struct chat_job *base, struct chat_store *st)
{
	struct send_job *job = (struct send_job *)base;
	const Sb__ChatSend *cs = job->env->chat_send;
	struct chat_msg m = {
	    .sender_id = cs->sender_id,
	    .receiver_id = cs->receiver_id,
	    .ts_ms = sb_now_ms(),
	    .sender_name = cs->sender_name,
	    .body = cs->message,
	    .attachment = attachment_of(cs),
	};
	int rc = chat_store_insert(st, cs->idempotency_key, &m);
	if (rc == CHAT_STORE_OK) {
		job->stored = m; /* borrows the envelope's strings */
		return 0;
	}
	if (rc != CHAT_STORE_DUP)
		return -1;
	/* A retry (or a repeat within this very batch): answer with the stored row. */
	if (chat_store_find_key(st, cs->idempotency_key, &job->stored) != CHAT_STORE_OK)
		return -1;
	job->dup = 1;
	if (job->stored.sender_id != cs->sender_id || job->stored.receiver_id != cs->receiver_id) {
		chat_msg_clear(&job->stored);
		job->refusal = "idempotency key already used for another message";
	}
	return 0;
}

static void send_job_free(struct send_job *job)
{
	if (job->dup)
		chat_msg_clear(&job->stored);
	sb_envelope_free(job->env);
	free(job->reply);
	free(job);
}

static void deliver(struct send_job *job)
{
	struct sb_bus *bus = bus_of(job->part);
	const struct chat_msg *m = &job->stored;
	char rid[CHAT_RID_MAX];

	Sb__ChatSent sent = SB__CHAT_SENT__INIT;
	sent.id = m->id;
	sent.receiver_id = m->receiver_id;
	sent.timestamp_ms = m->ts_ms;
	Sb__Envelope ack = SB__ENVELOPE__INIT;
	ack.request_id = job->env->request_id;
	ack.body_case = SB__ENVELOPE__BODY_CHAT_SENT;
	ack.chat_sent = &sent;
	natsStatus s = NATS_OK;
	if (job->reply)
		s = sb_bus_publish(bus, job->reply, NULL, &ack);
	sb_metric_inc(&job->part->svc->acked, 1);
	if (s != NATS_OK)
		SB_WARN("ack_failed", "request_id=%s id=%llu error=\"%s\"",
		        chat_safe_rid(job->env->request_id, rid), (unsigned long long)m->id,
		        natsStatus_GetText(s));

	Sb__ChatMessage cm = SB__CHAT_MESSAGE__INIT;
	cm.id = m->id;
	cm.sender_id = m->sender_id;
	cm.sender_name = (char *)m->sender_name;
	cm.receiver_id = m->receiver_id;
	cm.message = (char *)m->body;
	cm.has_attachment = m->attachment != NULL;
	if (m->attachment)
		cm.attachment = (char *)m->attachment;
	cm.timestamp_ms = m->ts_ms;
	Sb__Envelope out = SB__ENVELOPE__INIT;
	out.request_id = job->env->request_id;
	out.body_case = SB__ENVELOPE__BODY_CHAT_MESSAGE;
	out.chat_message = &cm;
	char subject[64];
	snprintf(subject, sizeof subject, "%s.%llu", SB_SUBJ_DELIVER_CHAT,
	         (unsigned long long)m->receiver_id);
	s = sb_bus_publish(bus, subject, NULL, &out);
	/* The row is stored: a lost live delivery is replayed by the next sync. */
	if (s != NATS_OK)
		SB_WARN("deliver_failed", "request_id=%s id=%llu error=\"%s\"",
		        chat_safe_rid(job->env->request_id, rid), (unsigned long long)m->id,
		        natsStatus_GetText(s));
	SB_DEBUG("message_stored", "request_id=%s id=%llu sender_id=%llu receiver_id=%llu dup=%d",
	         chat_safe_rid(job->env->request_id, rid), (unsigned long long)m->id,
	         (unsigned long long)m->sender_id, (unsigned long long)m->receiver_id, job->dup);
}

/* Writer thread, after the batch committed or rolled back. */
static void send_finish(struct chat_job *base, int committed)
{
	struct send_job *job = (struct send_job *)base;
	if (!committed)
		send_error(job->part, job->reply, job->env->request_id, SB__ERROR_CODE__ERR_STORAGE,
		           "message could not be stored");
	else if (job->refusal)
		send_error(job->part, job->reply, job->env->request_id,
		           SB__ERROR_CODE__ERR_BAD_REQUEST, job->refusal);
	else
		deliver(job);
	send_job_free(job);
}

static const struct chat_job_ops send_ops = {send_store, send_finish};

/* The first reason the request cannot be accepted, or NULL. */
static const char *invalid(const struct chat_partition *part, const Sb__Envelope *env)
{
	if (!env || env->body_case != SB__ENVELOPE__BODY_CHAT_SEND || !env->chat_send)
		return "malformed request";
	const Sb__ChatSend *cs = env->chat_send;
	if (cs->receiver_id == 0)
		return "receiver_id is required";
	if (cs->sender_id == 0)
		return "sender_id is required";
	if (!cs->message || !*cs->message)
		return "message is empty";
	if (strlen(cs->message) > part->svc->max_message_bytes)
		return "message is too long";
	if (cs->attachment && strlen(cs->attachment) > CHAT_MAX_ATTACHMENT_BYTES)
		return "attachment is too long";
	if (cs->sender_name && strlen(cs->sender_name) > CHAT_MAX_NAME_BYTES)
		return "sender_name is too long";
	if (cs->idempotency_key && strlen(cs->idempotency_key) > CHAT_MAX_IDEM_KEY_BYTES)
		return "idempotency_key is too long";
	if (sb_partition(cs->receiver_id, part->svc->partitions) != part->id)
		return "receiver is not in this partition";
	return NULL;
}

/* The partition's writer thread (its pump): the message goes to the writer's bin. */
void chat_send_handle(struct chat_partition *part, natsMsg *msg)
{
	struct chat_svc *svc = part->svc;
	const char *reply = natsMsg_GetReply(msg);
	int len = natsMsg_GetDataLength(msg);
	Sb__Envelope *env = sb_envelope_unpack(natsMsg_GetData(msg), (size_t)len);
	const char *rid = env ? env->request_id : NULL;
	struct send_job *job = NULL;

	const char *why = invalid(part, env);
	if (why) {
		send_error(part, reply, rid, SB__ERROR_CODE__ERR_BAD_REQUEST, why);
		goto done;
	}
	int known = chat_receivers_check(svc->receivers, env->chat_send->receiver_id, rid);
	if (known == CHAT_RECEIVER_UNKNOWN) {
		send_error(part, reply, rid, SB__ERROR_CODE__ERR_UNKNOWN_RECEIVER,
		           "unknown receiver");
		goto done;
	}
	if (known != CHAT_RECEIVER_FOUND) {
		send_error(part, reply, rid, SB__ERROR_CODE__ERR_UNAVAILABLE,
		           "auth service unavailable");
		goto done;
	}
	job = calloc(1, sizeof *job);
	if (!job || (reply && *reply && !(job->reply = strdup(reply)))) {
		SB_ERROR("out_of_memory", "where=chat_send");
		send_error(part, reply, rid, SB__ERROR_CODE__ERR_UNAVAILABLE,
		           "chat service overloaded");
		goto done;
	}
	job->base.ops = &send_ops;
	job->base.bytes = sizeof *job + 2 * (size_t)len;
	job->part = part;
	job->env = env;
	struct chat_job *queued = &job->base;
	if (chat_writer_submit(part->writer, &queued) < 0) {
		send_error(part, reply, rid, SB__ERROR_CODE__ERR_UNAVAILABLE,
		           "chat service overloaded");
		job->env = NULL; /* freed below */
		goto done;
	}
	job = NULL; /* the writer owns it, and the envelope with it */
	env = NULL;
done:
	if (job) {
		free(job->reply);
		free(job);
	}
	sb_envelope_free(env);
	sb_msgbin_put(&part->bin, msg);
}
