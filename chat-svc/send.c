/*
 * send: chat.send.<p> -- validate, store durably, acknowledge, deliver.
 *
 * The handler runs on the partition's writer thread (its pump takes the request off
 * the socket, chat_partition.c). It only validates (including the cached auth look-up
 * of the receiver) and queues a job for the next batch. A receiver the cache does not
 * know yet is looked up by chat_receivers' own threads: the sends to them wait, in
 * order, in the partition's parking (below) while the writer goes on with everyone
 * else's, and the answer puts them in the queue, or refuses them. The writer stores a job in a
 * group commit and only then calls send_finish, which sends chat_sent to the requester and
 * chat_message to deliver.chat.<receiver>. An idempotency key seen before stores nothing new: the
 * stored row is acknowledged and delivered again (gateways drop ids a socket has). A failed commit
 * answers ERR_STORAGE: nothing is acknowledged that is not on disk.
 */
#include <pthread.h>
#include <stdatomic.h>
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
#include "sb_msg.h"
#include "sb_subjects.h"
#include "sb_util.h"

struct send_job {
	struct chat_job base;
	struct chat_partition *part;
	Sb__Envelope *env; /* owned; body_case is CHAT_SEND */
	char *reply;       /* owned copy of the request's reply subject, or NULL */
	struct chat_msg stored;
	int dup;                      /* stored came from an earlier send with the same key */
	const char *refusal;          /* set by send_store: answer ERR_BAD_REQUEST with this */
	struct send_job *parked_next; /* behind it in its receiver's parking */
};

/* The parking: bounds on what may wait for look-ups at once, per partition. Beyond
 * them a send waits for its look-up on the writer, as all did before. */
#define PARK_BUCKETS       1024 /* a power of two */
#define PARK_MAX_RECEIVERS 4096
#define PARK_MAX_BYTES     ((size_t)64 << 20)

/* A receiver whose look-up is out, and the sends to them, oldest first. */
struct parked {
	struct parked *next;          /* bucket chain: writer thread */
	struct parked *resolved_next; /* chat_parking.resolved: under its mu */
	struct chat_parking *pk;
	uint64_t receiver_id;
	int status; /* the answer, set by the look-up thread */
	struct send_job *head, **tail;
};

struct chat_parking {
	struct chat_partition *part;
	struct parked *buckets[PARK_BUCKETS]; /* writer thread */
	size_t receivers, bytes;              /* writer thread */
	_Atomic size_t jobs;                  /* sends parked: read by chat_send_parked */
	pthread_mutex_t mu;
	struct parked *resolved; /* answered, not yet resumed */
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

static const struct chat_job_ops send_ops = {send_store, send_finish, 1};

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

/* Writer thread: queue a job for the next batch, or refuse it. Takes job. */
static void queue_job(struct send_job *job)
{
	struct chat_job *queued = &job->base;
	if (chat_writer_submit(job->part->writer, &queued) < 0) {
		send_error(job->part, job->reply, job->env->request_id,
		           SB__ERROR_CODE__ERR_UNAVAILABLE, "chat service overloaded");
		send_job_free(job);
	}
}

static size_t bucket_of(uint64_t receiver_id)
{
	return (size_t)((receiver_id * 0x9E3779B97F4A7C15ull) >> 40) & (PARK_BUCKETS - 1);
}

/* Writer thread: the parking of receiver_id, or NULL. */
static struct parked *park_find(struct chat_parking *pk, uint64_t receiver_id)
{
	if (!pk->receivers)
		return NULL;
	struct parked *p = pk->buckets[bucket_of(receiver_id)];
	while (p && p->receiver_id != receiver_id)
		p = p->next;
	return p;
}

/* A look-up thread: the answer for p's receiver. The writer resumes its sends. */
static void on_resolved(void *arg, uint64_t user_id, int status)
{
	(void)user_id;
	struct parked *p = arg;
	struct chat_parking *pk = p->pk;
	pthread_mutex_lock(&pk->mu);
	p->status = status;
	p->resolved_next = pk->resolved;
	pk->resolved = p;
	pthread_mutex_unlock(&pk->mu);
	chat_writer_kick(pk->part->writer);
}

/* Writer thread: open a parking for receiver_id and send for its look-up. NULL when the
 * parking is full or the look-up queue is. */
static struct parked *park_open(struct chat_parking *pk, uint64_t receiver_id)
{
	if (pk->receivers >= PARK_MAX_RECEIVERS || pk->bytes >= PARK_MAX_BYTES)
		return NULL;
	struct parked *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->pk = pk;
	p->receiver_id = receiver_id;
	p->tail = &p->head;
	if (chat_receivers_resolve(pk->part->svc->receivers, receiver_id, on_resolved, p, pk) < 0) {
		free(p);
		return NULL;
	}
	size_t b = bucket_of(receiver_id);
	p->next = pk->buckets[b];
	pk->buckets[b] = p;
	pk->receivers++;
	return p;
}

/* Writer thread: the send waits behind the others to its receiver. Takes job. */
static void park(struct chat_parking *pk, struct parked *p, struct send_job *job)
{
	if (pk->bytes >= PARK_MAX_BYTES) {
		send_error(job->part, job->reply, job->env->request_id,
		           SB__ERROR_CODE__ERR_UNAVAILABLE, "chat service overloaded");
		send_job_free(job);
		return;
	}
	*p->tail = job;
	p->tail = &job->parked_next;
	pk->bytes += job->base.bytes;
	atomic_fetch_add(&pk->jobs, 1);
	sb_metric_inc(&pk->part->svc->parked, 1);
}

/* Writer thread (or, after it stopped, the thread stopping the partition): answer or
 * queue the sends of a parking by status, and free it. It is out of the table. */
static void park_release(struct chat_parking *pk, struct parked *p, int status)
{
	struct send_job *job = p->head;
	while (job) {
		struct send_job *next = job->parked_next;
		pk->bytes -= job->base.bytes;
		atomic_fetch_sub(&pk->jobs, 1);
		if (status == CHAT_RECEIVER_FOUND) {
			queue_job(job);
		} else {
			int unknown = status == CHAT_RECEIVER_UNKNOWN;
			send_error(job->part, job->reply, job->env->request_id,
			           unknown ? SB__ERROR_CODE__ERR_UNKNOWN_RECEIVER
			                   : SB__ERROR_CODE__ERR_UNAVAILABLE,
			           unknown ? "unknown receiver" : "auth service unavailable");
			send_job_free(job);
		}
		job = next;
	}
	free(p);
}

static void park_unlink(struct chat_parking *pk, struct parked *p)
{
	struct parked **pp = &pk->buckets[bucket_of(p->receiver_id)];
	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
	pk->receivers--;
}

int chat_send_parking_create(struct chat_partition *part)
{
	struct chat_parking *pk = calloc(1, sizeof *pk);
	if (!pk || pthread_mutex_init(&pk->mu, NULL) != 0) {
		free(pk);
		return -1;
	}
	pk->part = part;
	part->parking = pk;
	return 0;
}

void chat_send_resume(struct chat_partition *part)
{
	struct chat_parking *pk = part->parking;
	pthread_mutex_lock(&pk->mu);
	struct parked *list = pk->resolved;
	pk->resolved = NULL;
	pthread_mutex_unlock(&pk->mu);
	while (list) {
		struct parked *p = list;
		list = p->resolved_next;
		park_unlink(pk, p);
		park_release(pk, p, p->status);
	}
}

size_t chat_send_parked(const struct chat_partition *part)
{
	return part->parking ? atomic_load(&part->parking->jobs) : 0;
}

void chat_send_parking_close(struct chat_partition *part)
{
	struct chat_parking *pk = part->parking;
	if (!pk)
		return;
	/* After this no answer arrives. The writer is gone, so even a receiver found in
	 * the meantime cannot have its sends stored: all are refused, none lost silently. */
	chat_receivers_cancel(part->svc->receivers, pk);
	pthread_mutex_lock(&pk->mu);
	pk->resolved = NULL; /* each is still in the table */
	pthread_mutex_unlock(&pk->mu);
	for (size_t b = 0; b < PARK_BUCKETS; b++) {
		while (pk->buckets[b]) {
			struct parked *p = pk->buckets[b];
			park_unlink(pk, p);
			park_release(pk, p, CHAT_RECEIVER_UNAVAILABLE);
		}
	}
}

void chat_send_parking_destroy(struct chat_partition *part)
{
	struct chat_parking *pk = part->parking;
	if (!pk)
		return;
	chat_send_parking_close(part);
	pthread_mutex_destroy(&pk->mu);
	free(pk);
	part->parking = NULL;
}

/* The partition's writer thread (its pump): the message goes to the writer's bin. */
void chat_send_handle(struct chat_partition *part, natsMsg *msg)
{
	struct chat_svc *svc = part->svc;
	const char *reply = natsMsg_GetReply(msg);
	int len = natsMsg_GetDataLength(msg);
	Sb__Envelope *env = sb_envelope_unpack(natsMsg_GetData(msg), (size_t)len);
	const char *rid = env ? env->request_id : NULL;

	const char *why = invalid(part, env);
	if (why) {
		send_error(part, reply, rid, SB__ERROR_CODE__ERR_BAD_REQUEST, why);
		goto done;
	}
	uint64_t to = env->chat_send->receiver_id;
	/* Behind sends already waiting for this receiver, whatever the cache says now. */
	struct parked *p = park_find(part->parking, to);
	int known = CHAT_RECEIVER_MISS;
	if (!p) {
		known = chat_receivers_peek(svc->receivers, to);
		if (known == CHAT_RECEIVER_MISS && !(p = park_open(part->parking, to)))
			known = chat_receivers_check(svc->receivers, to, rid); /* no room: wait */
	}
	if (known == CHAT_RECEIVER_UNKNOWN) {
		send_error(part, reply, rid, SB__ERROR_CODE__ERR_UNKNOWN_RECEIVER,
		           "unknown receiver");
		goto done;
	}
	if (known == CHAT_RECEIVER_UNAVAILABLE) {
		send_error(part, reply, rid, SB__ERROR_CODE__ERR_UNAVAILABLE,
		           "auth service unavailable");
		goto done;
	}
	struct send_job *job = calloc(1, sizeof *job);
	if (!job || (reply && *reply && !(job->reply = strdup(reply)))) {
		SB_ERROR("out_of_memory", "where=chat_send");
		send_error(part, reply, rid, SB__ERROR_CODE__ERR_UNAVAILABLE,
		           "chat service overloaded");
		free(job);
		goto done;
	}
	job->base.ops = &send_ops;
	job->base.bytes = sizeof *job + 2 * (size_t)len;
	job->part = part;
	job->env = env; /* the job owns it now */
	env = NULL;
	if (known == CHAT_RECEIVER_FOUND)
		queue_job(job);
	else
		park(part->parking, p, job);
done:
	sb_envelope_free(env);
	sb_msg_free(msg);
}
