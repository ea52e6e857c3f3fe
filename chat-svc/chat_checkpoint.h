/*
 * chat_checkpoint: WAL checkpoints of one partition file, off the commit path.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1000
 * pages: that commit copies every page into the database file and fsyncs it, 3-5 ms
 * on this disk, and every message queued behind it waits (the 5,000 msg/s p99).
 * Here the writer's connection has no automatic checkpoint. A thread of our own with
 * its own connection runs PASSIVE checkpoints, which copy and fsync while the writer
 * goes on committing. A passive checkpoint cannot catch up with a writer that never
 * pauses, and SQLite starts the WAL over only when every frame was copied, so once the
 * background checkpoint has copied most of the WAL the writer copies the few frames
 * committed meanwhile itself (about one fsync of a handful of pages); its next
 * transaction then starts the WAL from the beginning and the file stays bounded. If
 * the background thread falls far behind, the writer checkpoints itself, as SQLite
 * would have.
 */
#ifndef CHAT_CHECKPOINT_H
#define CHAT_CHECKPOINT_H

#include <sqlite3.h>
#include <stdint.h>

#include "sb_metrics.h"

/* WAL pages at which a background checkpoint is asked for (SQLite's own default). */
#define CHAT_CHECKPOINT_PAGES 1000

struct chat_checkpoint_stats {
	uint64_t background; /* checkpoints the background thread ran */
	uint64_t writer;     /* short ones the writer ran to let the WAL start over */
	uint64_t forced;     /* the writer's own because the background fell behind */
};

struct chat_checkpoint;

/* Take over checkpointing of `wr`, the writer's read-write connection to `path`:
 * turns its automatic checkpoint off, installs its WAL hook and starts the background
 * thread with a connection of its own. The hook then runs on whichever thread commits
 * on `wr` (the partition's writer). bg_seconds and writer_seconds (histograms) may be
 * NULL. Returns 0 and sets *out, or -1 (logged; `wr` is left as it was). */
int chat_checkpoint_create(struct chat_checkpoint **out, sqlite3 *wr, const char *path,
                           uint32_t partition, struct sb_metric *bg_seconds,
                           struct sb_metric *writer_seconds);

/* Once nothing commits on `wr` any more: give `wr` back its automatic checkpoint, stop
 * and join the background thread and close its connection. Call before closing `wr`
 * (whose close then checkpoints what is left). Logs the counts. NULL is a no-op. */
void chat_checkpoint_destroy(struct chat_checkpoint *c);

/* Any thread. */
void chat_checkpoint_get_stats(struct chat_checkpoint *c, struct chat_checkpoint_stats *out);

#endif
