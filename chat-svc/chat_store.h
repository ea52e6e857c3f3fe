/*
 * chat_store: the messages table of one partition, in its own SQLite file.
 *
 * A row's `seq` is the SQLite rowid (AUTOINCREMENT, so never reused); the id the
 * world sees is seq * P + p, unique across partitions and increasing per receiver
 * because a receiver lives in exactly one partition. Ids may skip (an insert that hits
 * an existing idempotency key uses up a seq) but never repeat. The store does not begin or
 * commit on its own: the writer groups many inserts into one transaction and one
 * fsync (group commit). A store handle is used by one thread at a time.
 */
#ifndef CHAT_STORE_H
#define CHAT_STORE_H

#include <stddef.h>
#include <stdint.h>

enum chat_store_status {
	CHAT_STORE_ERR = -1,
	CHAT_STORE_OK = 0,
	CHAT_STORE_DUP = 1,       /* insert: the idempotency key was stored before */
	CHAT_STORE_NOT_FOUND = 2, /* find: no such row */
};

/* One message. Rows read from the store own their strings through `mem` (free with
 * chat_msg_clear); a message passed to chat_store_insert only lends its strings. */
struct chat_msg {
	uint64_t id; /* global id: seq * P + p */
	uint64_t sender_id;
	uint64_t receiver_id;
	int64_t ts_ms;
	const char *sender_name;
	const char *body;
	const char *attachment; /* NULL when absent */
	char *mem;              /* owns the strings above, or NULL */
};

struct chat_store;

/* Map between a partition-local seq and a global id. chat_id_to_seq returns 0, or -1
 * when the id cannot belong to this partition. */
static inline uint64_t chat_id_from_seq(uint64_t seq, uint32_t partitions, uint32_t partition)
{
	return seq * partitions + partition;
}

static inline int chat_id_to_seq(uint64_t id, uint32_t partitions, uint32_t partition,
                                 uint64_t *seq)
{
	if (partitions == 0 || id % partitions != partition || id / partitions == 0)
		return -1;
	*seq = id / partitions;
	return 0;
}

/* Open (creating and migrating when read-write) the store of `partition` out of
 * `partitions` at `path`: WAL, synchronous=FULL, busy timeout, statements prepared
 * once. A read-only handle needs a file a read-write open has migrated. The partition
 * layout is recorded in the file; opening it with a different one fails, since ids
 * would change meaning. Returns 0 and sets *out, or -1 (logged). */
int chat_store_open(struct chat_store **out, const char *path, uint32_t partitions,
                    uint32_t partition, int readonly);

/* Finalize statements and close the file. NULL is a no-op. */
void chat_store_destroy(struct chat_store *st);

/* The SQLite connection underneath, for chat_checkpoint (which installs its WAL hook on
 * it). Used by st's own thread only. */
struct sqlite3 *chat_store_handle(struct chat_store *st);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. Return 0 or -1 (logged); rollback is a no-op
 * outside a transaction. A transaction still open at begin (a COMMIT and then its
 * ROLLBACK failed) is rolled back first, so one I/O error does not refuse every later
 * batch. */
int chat_store_begin(struct chat_store *st);

/* Whether the next commits fsync the WAL (1, the default: synchronous=FULL) or leave it
 * to the next commit that does, or to the checkpoint (0: synchronous=NORMAL; the
 * transaction survives a crash of the process, not of the machine). Outside a
 * transaction only. Return 0 or -1 (logged). */
int chat_store_set_durable(struct chat_store *st, int durable);
int chat_store_commit(struct chat_store *st);
void chat_store_rollback(struct chat_store *st);

/* Store msg (sender_id, sender_name, receiver_id, body, attachment, ts_ms are read).
 * idem_key may be NULL or "" (no de-duplication). CHAT_STORE_OK sets msg->id;
 * CHAT_STORE_DUP means a row with this key exists (msg untouched: read it with
 * chat_store_find_key); CHAT_STORE_ERR on a SQLite failure (logged). */
int chat_store_insert(struct chat_store *st, const char *idem_key, struct chat_msg *msg);

/* Read the row stored under idem_key into *out (owning; chat_msg_clear it).
 * CHAT_STORE_OK, CHAT_STORE_NOT_FOUND or CHAT_STORE_ERR. */
int chat_store_find_key(struct chat_store *st, const char *idem_key, struct chat_msg *out);

/* Messages for receiver with id > after_id, ascending, at most limit (>= 1): only
 * those not delivered yet, or with `all` every one (a resync; the scan walks every
 * row of the partition after after_id, so after_id must be recent). *out is a
 * malloc'd array of *n owning rows (free with chat_msg_free_list), NULL when *n == 0;
 * *more is 1 when further rows follow. Returns 0 or -1. */
int chat_store_list(struct chat_store *st, uint64_t receiver_id, uint64_t after_id, int all,
                    uint32_t limit, struct chat_msg **out, size_t *n, int *more);

/* Mark the given ids delivered, but only rows whose receiver is receiver_id; ids of
 * other partitions are ignored. *marked (may be NULL) counts rows changed. 0 or -1. */
int chat_store_mark_delivered(struct chat_store *st, uint64_t receiver_id, const uint64_t *ids,
                              size_t n, size_t *marked);

void chat_msg_clear(struct chat_msg *msg);
void chat_msg_free_list(struct chat_msg *list, size_t n);

#endif
