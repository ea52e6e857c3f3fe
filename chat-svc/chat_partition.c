/*
 * chat_partition: build, subscribe and tear down one owned partition.
 *
 * Teardown order is what makes shutdown lose nothing: subscriptions drain first (the
 * server stops routing to us, messages already here are still handled and queued),
 * then the writer commits and answers whatever is queued, and only then do the
 * stores close.
 *
 * chat.send.<id> arrives on a connection of the partition's own, whose socket the
 * writer thread reads and writes itself (common/sb_busio.h): the pump below runs the
 * socket's I/O and hands every request on the synchronous subscription to
 * chat_send_handle, on the writer thread, which queues it for the next batch. A send
 * goes from the socket to the commit, and its ack and delivery from the commit to the
 * socket, without a thread hand-off. Measured with /proc/<pid>/task/<tid>/status at
 * 1,000 msg/s: chat-svc made 10.5 context switches per message before (its socket
 * thread, a delivery thread and the writer).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "chat_checkpoint.h"
#include "chat_store.h"
#include "chat_svc.h"
#include "chat_writer.h"
#include "sb_bus.h"
#include "sb_busio.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"

int chat_partition_open(struct chat_partition **out, struct chat_svc *svc, uint32_t id,
                        const char *data_dir)
{
	char path[4096];
	if (snprintf(path, sizeof path, "%s/chat-%u.db", data_dir, id) >= (int)sizeof path) {
		SB_ERROR("partition_open", "partition=%u msg=\"data dir path too long\"", id);
		return -1;
	}
	struct chat_partition *part = calloc(1, sizeof *part);
	if (!part)
		return -1;
	part->svc = svc;
	part->id = id;
	if (pthread_mutex_init(&part->rd_lock, NULL) != 0) {
		free(part);
		return -1;
	}
	if (chat_send_parking_create(part) < 0 ||
	    chat_store_open(&part->wr, path, svc->partitions, id, 0) < 0 ||
	    chat_checkpoint_create(&part->checkpoint, chat_store_handle(part->wr), path, id,
	                           &svc->checkpoint_bg_seconds,
	                           &svc->checkpoint_writer_seconds) < 0 ||
	    chat_store_open(&part->rd, path, svc->partitions, id, 1) < 0) {
		chat_partition_destroy(part);
		return -1;
	}
	SB_INFO("partition_open", "partition=%u partitions=%u path=%s", id, svc->partitions, path);
	*out = part;
	return 0;
}

/* Writer thread: the socket's I/O, then every request it left on chat.send.<id>. */
static void pump_run(void *ctx)
{
	struct chat_partition *part = ctx;
	sb_busio_own(part->io); /* publishes of this thread wait for pump_flush */
	chat_send_resume(part); /* answered look-ups first: their sends are older */
	sb_busio_dispatch(part->io, 0);
	natsSubscription *sub = part->subs[CHAT_SUB_SEND];
	int pending = 0;
	if (!sub || natsSubscription_GetPending(sub, &pending, NULL) != NATS_OK)
		return; /* closed: drained, or the connection is gone */
	natsMsg *msg = NULL;
	if (pending == 0) {
		/* An empty subscription being drained is only released by a waiting call
		 * (libnats 3.4), which returns at once while draining. */
		if (atomic_load(&part->draining) &&
		    natsSubscription_NextMsg(&msg, sub, 1) == NATS_OK)
			chat_send_handle(part, msg);
		return;
	}
	/* What is there now; a request that arrives meanwhile is for the next turn. */
	while (pending-- > 0) {
		natsStatus s = natsSubscription_NextMsg(&msg, sub, 0);
		if (s == NATS_SLOW_CONSUMER) {
			SB_WARN("send_dropped",
			        "partition=%u msg=\"libnats dropped requests: the "
			        "writer fell behind its pending limit\"",
			        part->id);
			continue;
		}
		if (s != NATS_OK)
			break;
		chat_send_handle(part, msg);
	}
}

/* Writer thread: the acks and deliveries the last batch published (and any error
 * replies of pump_run) leave in one write. */
static void pump_flush(void *ctx)
{
	struct chat_partition *part = ctx;
	sb_busio_flush(part->io);
}

/* The partition's own connection and its writer thread, which polls it. */
static int open_writer(struct chat_partition *part)
{
	struct chat_svc *svc = part->svc;
	char name[64];
	snprintf(name, sizeof name, "chat-svc-p%u", part->id);
	if (sb_busio_create(&part->io) < 0 ||
	    sb_bus_open(&part->bus, svc->nats_url, name, part->io) < 0) {
		SB_ERROR("partition_bus", "partition=%u", part->id);
		return -1;
	}
	struct chat_writer_limits limits = CHAT_WRITER_LIMITS_DEFAULT;
	limits.commit_seconds = &svc->commit_seconds;
	limits.unsynced_commits = &svc->unsynced_commits;
	if (svc->batch_max)
		limits.max_batch = svc->batch_max;
	struct chat_writer_pump pump = {sb_busio_fd(part->io), pump_run, pump_flush, part};
	if (chat_writer_create_pumped(&part->writer, part->wr, part->id, &limits, &pump) < 0) {
		SB_ERROR("writer_create", "partition=%u", part->id);
		return -1;
	}
	return 0;
}

int chat_partition_subscribe(struct chat_partition *part)
{
	if (open_writer(part) < 0)
		return -1;
	static const struct {
		const char *prefix;
		natsMsgHandler cb;
	} table[CHAT_SUB_COUNT] = {
	    [CHAT_SUB_SEND] = {SB_SUBJ_CHAT_SEND, NULL}, /* synchronous: the pump takes them */
	    [CHAT_SUB_SYNC] = {SB_SUBJ_CHAT_SYNC, chat_sync_on_msg},
	    [CHAT_SUB_DELIVERED] = {SB_SUBJ_CHAT_DELIVERED, chat_delivered_on_msg},
	};
	for (int i = 0; i < CHAT_SUB_COUNT; i++) {
		char subject[64];
		snprintf(subject, sizeof subject, "%s.%u", table[i].prefix, part->id);
		natsStatus s =
		    i == CHAT_SUB_SEND
		        ? natsConnection_QueueSubscribeSync(&part->subs[i], part->bus->nc, subject,
		                                            SB_QUEUE_CHAT)
		        : natsConnection_QueueSubscribe(&part->subs[i], part->svc->bus->nc, subject,
		                                        SB_QUEUE_CHAT, table[i].cb, part);
		if (s != NATS_OK) {
			SB_ERROR("subscribe_failed", "subject=%s error=\"%s\"", subject,
			         natsStatus_GetText(s));
			return -1;
		}
	}
	/* The writer may be asleep on the socket since before the subscription existed. */
	chat_writer_kick(part->writer);
	natsStatus s = natsConnection_FlushTimeout(part->bus->nc, 5000);
	if (s != NATS_OK) {
		SB_ERROR("subscribe_failed", "partition=%u msg=\"not confirmed\" error=\"%s\"",
		         part->id, natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

void chat_partition_drain(struct chat_partition *part, int timeout_ms)
{
	for (int i = 0; i < CHAT_SUB_COUNT; i++)
		if (part->subs[i])
			natsSubscription_DrainTimeout(part->subs[i], timeout_ms);
	atomic_store(&part->draining, 1);
	if (part->writer)
		chat_writer_kick(part->writer); /* to see the drain even with nothing to read */
}

int chat_partition_wait_drained(struct chat_partition *part, int64_t deadline_ms)
{
	int complete = 1;
	for (int i = 0; i < CHAT_SUB_COUNT; i++) {
		if (!part->subs[i])
			continue;
		int64_t left = deadline_ms - sb_mono_ms();
		/* 0 would mean "no timeout" to libnats */
		natsStatus s =
		    natsSubscription_WaitForDrainCompletion(part->subs[i], left > 0 ? left : 1);
		if (s != NATS_OK ||
		    natsSubscription_DrainCompletionStatus(part->subs[i]) != NATS_OK)
			complete = 0;
	}
	/* Sends waiting for a look-up are still the writer's to queue. */
	while (chat_send_parked(part) > 0 && sb_mono_ms() < deadline_ms)
		nanosleep(&(struct timespec){0, 5 * 1000000L}, NULL);
	if (chat_send_parked(part) > 0)
		SB_WARN("drain_parked", "partition=%u parked=%zu msg=\"look-ups still out\"",
		        part->id, chat_send_parked(part));
	if (!complete)
		SB_WARN("drain_incomplete", "partition=%u", part->id);
	return complete ? 0 : -1;
}

void chat_partition_stop(struct chat_partition *part)
{
	if (!part->writer)
		return;
	chat_writer_stop(part->writer);
	chat_send_parking_close(part); /* refused: look-ups that outlived the drain */
	/* The writer no longer polls the partition's socket: a thread of its own sends what
	 * the last batch published, and closes. */
	if (sb_busio_start_thread(part->io) < 0)
		SB_ERROR("partition_bus", "partition=%u msg=\"no thread to flush\"", part->id);
	else
		natsConnection_FlushTimeout(part->bus->nc, 1000);
	struct chat_writer_stats st;
	chat_writer_get_stats(part->writer, &st);
	SB_INFO("writer_stats",
	        "partition=%u batches=%llu jobs=%llu avg_batch=%.1f max_batch=%zu "
	        "batch_1=%llu batch_2_7=%llu batch_8_63=%llu batch_64_511=%llu batch_512_up=%llu "
	        "failed_batches=%llu unsynced_batches=%llu refused=%llu",
	        part->id, (unsigned long long)st.batches, (unsigned long long)st.jobs,
	        st.batches ? (double)st.jobs / (double)st.batches : 0.0, st.max_batch,
	        (unsigned long long)st.buckets[0], (unsigned long long)st.buckets[1],
	        (unsigned long long)st.buckets[2], (unsigned long long)st.buckets[3],
	        (unsigned long long)st.buckets[4], (unsigned long long)st.failed_batches,
	        (unsigned long long)st.unsynced_batches, (unsigned long long)st.refused);
}

void chat_partition_destroy(struct chat_partition *part)
{
	if (!part)
		return;
	for (int i = 0; i < CHAT_SUB_COUNT; i++) {
		if (part->subs[i]) {
			natsSubscription_Unsubscribe(part->subs[i]);
			natsSubscription_Destroy(part->subs[i]);
		}
	}
	chat_writer_destroy(part->writer);
	chat_send_parking_destroy(part);
	if (part->io && sb_busio_start_thread(part->io) < 0)
		SB_ERROR("partition_bus", "partition=%u msg=\"no thread to close\"", part->id);
	sb_bus_destroy(part->bus, 100);
	sb_busio_destroy(part->io);
	chat_checkpoint_destroy(part->checkpoint);
	chat_store_destroy(part->rd);
	chat_store_destroy(part->wr);
	pthread_mutex_destroy(&part->rd_lock);
	free(part);
}
