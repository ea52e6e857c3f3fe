/*
 * chat_svc: the objects chat-svc is wired from, and its three subject handlers.
 *
 * One struct chat_partition per owned partition holds everything of that partition:
 * its SQLite file (a read-write handle owned by the writer thread and a read-only one
 * for backlog reads, so a sync never waits for an fsync), its group-commit writer and
 * its subscriptions. Handlers get the partition as their closure; nothing is global.
 */
#ifndef CHAT_SVC_H
#define CHAT_SVC_H

#include <nats/nats.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "sb_metrics.h"
#include "sb_msg.h"

struct sb_bus;
struct chat_store;
struct chat_writer;
struct chat_checkpoint;
struct chat_receivers;
struct chat_parking;

/* Field bounds beyond the configurable message size. */
#define CHAT_MAX_ATTACHMENT_BYTES 4096
#define CHAT_MAX_NAME_BYTES       1024
#define CHAT_MAX_IDEM_KEY_BYTES   256
#define CHAT_SYNC_DEFAULT_LIMIT   200
#define CHAT_SYNC_MAX_LIMIT       1000
#define CHAT_DELIVERED_MAX_IDS    10000

/* Shared by every partition; read-only once subscriptions exist. */
struct chat_svc {
	struct sb_bus *bus;   /* syncs, receipts, auth look-ups */
	const char *nats_url; /* for each partition's own connection */
	struct chat_receivers *receivers;
	uint32_t partitions; /* P */
	size_t max_message_bytes;
	size_t batch_max; /* jobs per transaction (--batch-max); 0 = the writer's default */
	_Atomic int ready;
	struct sb_metrics metrics; /* served on /metrics (--http-listen) */
	struct sb_metric acked, send_errors, synced, parked, commit_seconds, unsynced_commits;
	struct sb_metric checkpoint_bg_seconds, checkpoint_writer_seconds;
};

/* Register the metrics above with svc->metrics. */
void chat_metrics_init(struct chat_svc *svc);

enum { CHAT_SUB_SEND, CHAT_SUB_SYNC, CHAT_SUB_DELIVERED, CHAT_SUB_COUNT };

struct chat_partition {
	struct chat_svc *svc;
	uint32_t id;
	struct chat_store *wr; /* the writer thread's */
	struct chat_store *rd; /* backlog reads, under rd_lock */
	pthread_mutex_t rd_lock;
	struct chat_writer *writer;
	struct chat_checkpoint *checkpoint; /* wr's WAL checkpoints, off the commit path */
	/* The partition's own NATS connection, read and written by its writer thread: it
	 * carries chat.send.<id> (a synchronous subscription the writer empties, see
	 * chat_writer_create_pumped) and the acks and deliveries the writer publishes. */
	struct sb_busio *io;
	struct sb_bus *bus;
	_Atomic int draining; /* chat_partition_drain has begun */
	/* Sends waiting for their receiver's first look-up (send.c). The writer thread's,
	 * but for the answers the look-up threads hand back. */
	struct chat_parking *parking;
	natsSubscription *subs[CHAT_SUB_COUNT]; /* SEND on bus, the others on svc->bus */
};

/* Open <data_dir>/chat-<id>.db (read-write, migrated, then read-only) and its checkpoint
 * thread. Returns 0 and sets *out, or -1 (logged). */
int chat_partition_open(struct chat_partition **out, struct chat_svc *svc, uint32_t id,
                        const char *data_dir);

/* Open the partition's own connection, start its writer thread on it, and
 * queue-subscribe chat.send.<id> there (synchronous: the writer takes the requests),
 * chat.sync.<id> and chat.delivered.<id> on svc->bus. Returns 0 or -1 (logged). */
int chat_partition_subscribe(struct chat_partition *part);

/* Shutdown, in this order for all partitions: start draining the subscriptions (no
 * new requests, pending ones still handled), wait for the drains, then stop the
 * writer (it commits and answers what is queued) and log its statistics.
 * wait_drained waits until sb_mono_ms() reaches deadline_ms at most, and returns -1 when a drain
 * did not complete in time: a callback may then still be running, and the partition must not be
 * destroyed. */
void chat_partition_drain(struct chat_partition *part, int timeout_ms);
int chat_partition_wait_drained(struct chat_partition *part, int64_t deadline_ms);
void chat_partition_stop(struct chat_partition *part);

/* Unsubscribe, stop the writer (if needed), close the partition's connection and the
 * stores, and free. NULL is a
 * no-op. Only once no handler of this partition can still be running. */
void chat_partition_destroy(struct chat_partition *part);

/* A chat.send request, on the partition's writer thread: its pump (chat_partition.c)
 * calls this for each request it takes off the synchronous subscription. Takes msg. */
void chat_send_handle(struct chat_partition *part, natsMsg *msg);

/* The parking of sends whose receiver is being looked up (send.c). create: at open,
 * 0 or -1. resume: the writer thread, before it reads new requests: the sends whose
 * look-up was answered are queued (in order, ahead of newer sends to the same
 * receiver) or refused. parked: any thread, the sends still waiting. close: once the
 * writer stopped, cancel the look-ups still out and refuse their sends
 * (ERR_UNAVAILABLE). destroy: close and free; NULL parking is a no-op. */
int chat_send_parking_create(struct chat_partition *part);
void chat_send_resume(struct chat_partition *part);
size_t chat_send_parked(const struct chat_partition *part);
void chat_send_parking_close(struct chat_partition *part);
void chat_send_parking_destroy(struct chat_partition *part);

/* Subject handlers on libnats delivery threads, with the partition as closure; each
 * takes ownership of msg. */
void chat_sync_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
void chat_delivered_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);

#endif
