/*
 * sb-sqlitebench: the raw SQLite insert rate on this machine's disk, the cost under
 * every acknowledged chat message (chat-svc acknowledges only after its commit).
 *
 * The table has the shape of chat-svc's messages table (autoincrement key, a unique
 * idempotency key, a partial index on undelivered rows), the database is in WAL mode
 * with synchronous=FULL, like chat-svc's. For each batch size N given (default 1, 64
 * and 1024 rows per transaction) it inserts for --seconds, bounded by --max-rows, and
 * reports rows/s, commits/s and the commit latency. N=1 is one fsync per message; the
 * larger N show what group commit buys. Result: JSON on stdout.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "sb_config.h"

static const char schema[] =
    "CREATE TABLE messages ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " idem_key TEXT UNIQUE,"
    " sender_id INTEGER NOT NULL,"
    " sender_name TEXT NOT NULL,"
    " receiver_id INTEGER NOT NULL,"
    " body TEXT NOT NULL,"
    " attachment TEXT,"
    " ts_ms INTEGER NOT NULL,"
    " delivered INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX messages_undelivered ON messages(receiver_id, seq) WHERE delivered = 0;";

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "error: %s: %s\n", sql, err ? err : "?");
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

/* One batch size on a fresh database file. Returns a JSON object or NULL. */
static json_t *run_batch(const char *dir, int64_t batch, double seconds, int64_t max_rows,
                         int64_t body_bytes)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/sqlitebench-%d-%lld.db", dir, (int)getpid(),
	         (long long)batch);
	sqlite3 *db = NULL;
	sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
	json_t *out = NULL;
	struct lg_hist *commit_us = calloc(1, sizeof *commit_us);
	char *body = malloc((size_t)body_bytes + 1);
	if (!commit_us || !body)
		goto done;
	memset(body, 'x', (size_t)body_bytes);
	body[body_bytes] = 0;
	if (sqlite3_open(path, &db) != SQLITE_OK || exec(db, "PRAGMA journal_mode = WAL") < 0 ||
	    exec(db, "PRAGMA synchronous = FULL") < 0 ||
	    exec(db, "PRAGMA busy_timeout = 5000") < 0 || exec(db, schema) < 0)
		goto done;
	if (sqlite3_prepare_v2(
	        db,
	        "INSERT INTO messages (idem_key, sender_id, sender_name, "
	        "receiver_id, body, attachment, ts_ms) VALUES (?, ?, ?, ?, ?, NULL, ?)",
	        -1, &ins, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK) {
		fprintf(stderr, "error: prepare: %s\n", sqlite3_errmsg(db));
		goto done;
	}
	int64_t rows = 0, commits = 0;
	int64_t t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9);
	while (now_ns() < end && rows < max_rows) {
		int64_t tb = now_ns();
		sqlite3_step(begin);
		sqlite3_reset(begin);
		for (int64_t i = 0; i < batch; i++, rows++) {
			char key[64];
			snprintf(key, sizeof key, "gwbench:%lld", (long long)rows);
			sqlite3_bind_text(ins, 1, key, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int64(ins, 2, 1 + rows % 1000);
			sqlite3_bind_text(ins, 3, "Bench User", -1, SQLITE_STATIC);
			sqlite3_bind_int64(ins, 4, 1001 + rows % 1000);
			sqlite3_bind_text(ins, 5, body, (int)body_bytes, SQLITE_STATIC);
			sqlite3_bind_int64(ins, 6, 1767225600000LL + rows);
			int rc = sqlite3_step(ins);
			sqlite3_reset(ins);
			if (rc != SQLITE_DONE) {
				fprintf(stderr, "error: insert: %s\n", sqlite3_errmsg(db));
				goto done;
			}
		}
		if (sqlite3_step(commit) != SQLITE_DONE) {
			fprintf(stderr, "error: commit: %s\n", sqlite3_errmsg(db));
			sqlite3_reset(commit);
			goto done;
		}
		sqlite3_reset(commit);
		lg_hist_add(commit_us, (now_ns() - tb) / 1000);
		commits++;
	}
	double secs = (double)(now_ns() - t0) / 1e9;
	out = json_pack("{s:I,s:I,s:I,s:f,s:f,s:f,s:o}", "rows_per_txn", (json_int_t)batch, "rows",
	                (json_int_t)rows, "commits", (json_int_t)commits, "seconds", secs,
	                "rows_per_s", (double)rows / secs, "commits_per_s", (double)commits / secs,
	                "txn_us", lg_hist_json(commit_us));
done:
	sqlite3_finalize(ins);
	sqlite3_finalize(begin);
	sqlite3_finalize(commit);
	sqlite3_close(db);
	free(commit_us);
	free(body);
	char side[4200];
	unlink(path);
	snprintf(side, sizeof side, "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", path);
	unlink(side);
	return out;
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *batches = NULL;
	int64_t seconds = 0, max_rows = 0, body_bytes = 0;
	const struct sb_opt opts[] = {
	    {"dir", NULL, SB_OPT_STR, &dir, "/tmp", "directory for the scratch database"},
	    {"batches", NULL, SB_OPT_STR, &batches, "1,64,1024",
	     "rows per transaction, comma list"},
	    {"seconds", NULL, SB_OPT_INT, &seconds, "3", "seconds per batch size"},
	    {"max-rows", NULL, SB_OPT_INT, &max_rows, "2000000", "rows per batch size at most"},
	    {"body-bytes", NULL, SB_OPT_INT, &body_bytes, "64", "message body size"},
	    {NULL, NULL, 0, NULL, NULL, NULL},
	};
	int argi = sb_config_parse(argc, argv, opts,
	                           "usage: sb-sqlitebench [options]\n\n"
	                           "Raw SQLite insert rate (WAL, synchronous=FULL) for several "
	                           "rows-per-transaction sizes; JSON on stdout.");
	if (argi <= 0)
		return argi == 0 ? 0 : 2;
	if (seconds < 1 || seconds > 600 || max_rows < 1 || body_bytes < 0 || body_bytes > 65536) {
		fprintf(stderr, "error: options out of range (see --help)\n");
		return 2;
	}
	json_t *out = json_object();
	json_object_set_new(out, "sqlite", json_string(sqlite3_libversion()));
	json_object_set_new(out, "dir", json_string(dir));
	json_object_set_new(out, "journal", json_string("wal, synchronous=FULL"));
	json_t *runs = json_array();
	int rc = 0;
	for (const char *p = batches; *p;) {
		char *end = NULL;
		long long n = strtoll(p, &end, 10);
		if (end == p || n < 1 || n > 1000000) {
			fprintf(stderr,
			        "error: --batches expects positive integers, comma-separated\n");
			rc = 2;
			break;
		}
		fprintf(stderr, "sqlitebench: %lld row(s) per transaction for %llds...\n", n,
		        (long long)seconds);
		json_t *r = run_batch(dir, n, (double)seconds, max_rows, body_bytes);
		if (!r) {
			rc = 1;
			break;
		}
		json_array_append_new(runs, r);
		p = *end == ',' ? end + 1 : end;
	}
	json_object_set_new(out, "runs", runs);
	json_dumpf(out, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(out);
	return rc;
}
