/*
 * notify_store: notify-svc's SQLite file (<data-dir>/notify.db): the notifications
 * table (notifications_table.c), the per-user delivery cursors (cursors_table.c), and
 * the backlog query that joins them (notify_store.c).
 *
 * Model. One row per (injection, target user): a multi-user injection is one row per
 * user, a broadcast is one row with user_id 0. Ids are AUTOINCREMENT, so they grow in
 * the order injections were stored and are never reused, even after the retention
 * purge deleted the newest rows. UNIQUE(stream_seq, user_id) makes storing a
 * JetStream redelivery a no-op. A user's cursor is the highest id delivered to any of
 * their notification sockets (advanced by notify.delivered receipts).
 *
 * The never-connected rule. A user without a cursor row has never synced: they get
 * the rows addressed to them (sent before their first connection, within retention),
 * but not the broadcasts from before it. So the first sync creates the cursor with
 * last_id = 0 and bcast_floor = the highest broadcast id at that moment, and the
 * backlog of a user U is:
 *     user_id = U  AND id > max(after_id, last_id)
 *  or user_id = 0  AND id > max(after_id, last_id, bcast_floor)
 * restricted to the retention window, ascending. Once last_id >= bcast_floor (after
 * their first delivery receipt) the floor stops mattering. A broadcast stored after
 * the first sync is above the floor, and a gateway subscribes before it syncs, so no
 * broadcast can fall between the two.
 *
 * A store handle belongs to one thread at a time (the caller serializes); several
 * handles may open the same file (WAL: readers never wait for the writer).
 */
#ifndef NOTIFY_STORE_H
#define NOTIFY_STORE_H

#include <stddef.h>
#include <stdint.h>

enum notify_store_status {
	NOTIFY_STORE_ERR = -1,
	NOTIFY_STORE_OK = 0,
	NOTIFY_STORE_DUP = 1,       /* insert: (stream_seq, user_id) was stored before */
	NOTIFY_STORE_NOT_FOUND = 2, /* look-up: no such row */
};

/* One stored notification. Rows read from the store own their strings through `mem`
 * (notify_row_free_list); a row passed to notify_store_insert only lends them. */
struct notify_row {
	uint64_t id;
	uint64_t user_id; /* 0 = broadcast */
	int64_t ts_ms;
	const char *title;
	const char *message;
	const char *type;
	char *mem;
};

struct notify_cursor {
	uint64_t last_id;     /* highest id delivered to a socket of the user */
	uint64_t bcast_floor; /* broadcasts at or below this predate the user's first sync */
};

struct notify_store;

/* Open (creating and migrating) the store at path: WAL, synchronous=FULL, busy
 * timeout, statements prepared once. Returns 0 and sets *out, or -1 (logged). */
int notify_store_open(struct notify_store **out, const char *path);

/* PRAGMA synchronous = NORMAL on this handle: its commits are not fsynced (WAL mode).
 * For the sync handle, whose only write is a user's first cursor (see main.c). */
int notify_store_relax_sync(struct notify_store *st);

/* Finalize the statements and close. NULL is a no-op. */
void notify_store_destroy(struct notify_store *st);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK: 0 or -1 (logged); rollback outside a
 * transaction is a no-op. */
int notify_store_begin(struct notify_store *st);
int notify_store_commit(struct notify_store *st);
void notify_store_rollback(struct notify_store *st);

/* A small integer setting kept in the file (e.g. which JetStream stream the stored
 * sequences belong to). get: NOTIFY_STORE_OK / NOT_FOUND / ERR. set: 0 / -1. */
int notify_store_meta_get(struct notify_store *st, const char *key, int64_t *value);
int notify_store_meta_set(struct notify_store *st, const char *key, int64_t value);

/* ---- notifications_table.c ---- */

/* Store row (user_id, title, message, type, ts_ms are read) as part of injection
 * stream_seq (>= 1). NOTIFY_STORE_OK sets row->id; NOTIFY_STORE_DUP when this
 * (stream_seq, user_id) exists; NOTIFY_STORE_ERR (logged). Call inside a
 * transaction to group many. */
int notify_store_insert(struct notify_store *st, uint64_t stream_seq, struct notify_row *row);

/* Every row stored for stream_seq, ascending id, into a malloc'd owning array
 * (notify_row_free_list). NOTIFY_STORE_OK (n >= 1), NOT_FOUND or ERR. */
int notify_store_find_seq(struct notify_store *st, uint64_t stream_seq, struct notify_row **out,
                          size_t *n);

/* Rows with (user_id = user_id AND id > after_id) or (user_id = 0 AND id > bcast_after),
 * ts_ms >= min_ts_ms, ascending id, at most limit (>= 1); *more = 1 when others
 * follow. *out is malloc'd and owning (NULL when *n == 0). Returns 0 or -1. */
int notify_store_list(struct notify_store *st, uint64_t user_id, uint64_t after_id,
                      uint64_t bcast_after, int64_t min_ts_ms, uint32_t limit,
                      struct notify_row **out, size_t *n, int *more);

/* Delete rows with ts_ms < before_ms, in transactions of at most chunk rows so the
 * writer lock is never held long. *deleted (may be NULL) counts them. 0 or -1. */
int notify_store_purge(struct notify_store *st, int64_t before_ms, size_t chunk, size_t *deleted);

/* Forget which stream sequence every stored row came from (set stream_seq to NULL),
 * for when the stream was recreated and sequences restart at 1: otherwise new
 * injections would be mistaken for redeliveries of old ones. 0 or -1. */
int notify_store_forget_stream_seqs(struct notify_store *st);

void notify_row_free_list(struct notify_row *rows, size_t n);

/* ---- cursors_table.c ---- */

/* NOTIFY_STORE_OK and *out, NOTIFY_STORE_NOT_FOUND (never synced), or ERR. */
int notify_cursor_get(struct notify_store *st, uint64_t user_id, struct notify_cursor *out);

/* Create user_id's cursor if missing (last_id 0, bcast_floor = highest broadcast id
 * now), then read it into *out. 0 or -1. */
int notify_cursor_create(struct notify_store *st, uint64_t user_id, struct notify_cursor *out);

/* cursor(user_id) = max(cursor, id), with id clamped to the highest id ever issued
 * (a bogus receipt cannot hide future notifications); creates the cursor when
 * missing. Call inside a transaction to group many. 0 or -1. */
int notify_cursor_advance(struct notify_store *st, uint64_t user_id, uint64_t id);

/* ---- notify_store.c: the backlog (the rule in the header comment) ---- */

/* One page of user_id's backlog after after_id, within retention (ts_ms >=
 * min_ts_ms): creates the cursor on a user's first sync. With `resync` (a socket that
 * missed live deliveries) the user's cursor is not applied: everything after after_id,
 * whether another socket had it or not (never broadcasts from before the user's
 * first sync). Same outputs as notify_store_list. Returns 0 or -1. */
int notify_store_sync(struct notify_store *st, uint64_t user_id, uint64_t after_id, int resync,
                      int64_t min_ts_ms, uint32_t limit, struct notify_row **out, size_t *n,
                      int *more);

#endif
