/*
 * chat_store: one partition's messages table (see chat_store.h).
 *
 * Every statement is prepared once at open and used bind -> step -> check -> reset,
 * whatever the outcome. The schema is versioned with PRAGMA user_version and each
 * migration runs in its own transaction, so reopening a file is idempotent. Undelivered
 * backlogs are served from a partial index on (receiver_id, seq) WHERE delivered = 0,
 * which stays as small as the backlog, not the history.
 */
#include "chat_store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_log.h"

#define BUSY_TIMEOUT_MS 5000

struct chat_store {
	sqlite3 *db;
	uint32_t partitions;
	uint32_t partition;
	int readonly;
	int durable; /* synchronous=FULL (1) or NORMAL (0) */
	sqlite3_stmt *begin;
	sqlite3_stmt *commit;
	sqlite3_stmt *rollback;
	sqlite3_stmt *insert;
	sqlite3_stmt *find_key;
	sqlite3_stmt *list;
	sqlite3_stmt *list_all;
	sqlite3_stmt *mark;
};

/* migrations[i] takes the schema from user_version i to i + 1. Append only. */
static const char *const migrations[] = {
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
    "CREATE INDEX messages_undelivered ON messages(receiver_id, seq) WHERE delivered = 0;"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

#define ROW_COLUMNS "seq, sender_id, sender_name, receiver_id, body, attachment, ts_ms"

static int fail(struct chat_store *st, const char *op)
{
	SB_ERROR("store_error", "partition=%u op=%s code=%d error=\"%s\"", st->partition, op,
	         sqlite3_extended_errcode(st->db), sqlite3_errmsg(st->db));
	return -1;
}

static int query_int(struct chat_store *st, const char *sql, int64_t *out)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(stmt);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int64(stmt, 0);
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK)
		fail(st, sql);
	sqlite3_finalize(stmt);
	return rc == SQLITE_OK ? 0 : -1;
}

static int exec(struct chat_store *st, const char *sql)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return fail(st, sql);
	return 0;
}

static int migrate(struct chat_store *st)
{
	int64_t version = 0;
	if (exec(st, "BEGIN IMMEDIATE") < 0)
		return -1;
	if (query_int(st, "PRAGMA user_version", &version) < 0)
		goto rollback;
	if (version > SCHEMA_VERSION) {
		SB_ERROR("store_schema_newer", "partition=%u version=%lld known=%d", st->partition,
		         (long long)version, SCHEMA_VERSION);
		goto rollback;
	}
	for (int v = (int)version; v < SCHEMA_VERSION; v++) {
		char pragma[64];
		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
		if (exec(st, migrations[v]) < 0 || exec(st, pragma) < 0)
			goto rollback;
		SB_INFO("store_migrated", "partition=%u version=%d", st->partition, v + 1);
	}
	char layout[160];
	snprintf(
	    layout, sizeof layout,
	    "INSERT OR IGNORE INTO meta(key, value) VALUES ('partitions', %u), ('partition', %u)",
	    st->partitions, st->partition);
	if (exec(st, layout) < 0 || exec(st, "COMMIT") < 0)
		goto rollback;
	return 0;
rollback:
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* The file remembers which partition layout its ids were minted under. */
static int check_layout(struct chat_store *st)
{
	int64_t version = 0, partitions = -1, partition = -1;
	if (query_int(st, "PRAGMA user_version", &version) < 0)
		return -1;
	if (version != SCHEMA_VERSION) {
		SB_ERROR("store_schema_mismatch", "partition=%u version=%lld want=%d",
		         st->partition, (long long)version, SCHEMA_VERSION);
		return -1;
	}
	if (query_int(st, "SELECT value FROM meta WHERE key = 'partitions'", &partitions) < 0 ||
	    query_int(st, "SELECT value FROM meta WHERE key = 'partition'", &partition) < 0)
		return -1;
	if (partitions != st->partitions || partition != st->partition) {
		SB_ERROR("store_layout_mismatch",
		         "msg=\"file was created for another partition layout; ids would change\" "
		         "file_partitions=%lld file_partition=%lld partitions=%u partition=%u",
		         (long long)partitions, (long long)partition, st->partitions,
		         st->partition);
		return -1;
	}
	return 0;
}

static int prepare(struct chat_store *st, sqlite3_stmt **stmt, const char *sql)
{
	if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL) != SQLITE_OK)
		return fail(st, sql);
	return 0;
}

static int set_wal(struct chat_store *st)
{
	sqlite3_stmt *stmt = NULL;
	int ok = 0;
	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step(stmt) == SQLITE_ROW) {
		const unsigned char *mode = sqlite3_column_text(stmt, 0);
		ok = mode && strcmp((const char *)mode, "wal") == 0;
	}
	sqlite3_finalize(stmt);
	if (!ok)
		return fail(st, "PRAGMA journal_mode = WAL");
	return 0;
}

int chat_store_open(struct chat_store **out, const char *path, uint32_t partitions,
                    uint32_t partition, int readonly)
{
	if (partitions == 0 || partition >= partitions)
		return -1;
	struct chat_store *st = calloc(1, sizeof *st);
	if (!st)
		return -1;
	st->partitions = partitions;
	st->partition = partition;
	st->readonly = readonly;
	st->durable = 1;
	int flags = SQLITE_OPEN_NOMUTEX |
	            (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
		SB_ERROR("store_open", "path=%s error=\"%s\"", path,
		         st->db ? sqlite3_errmsg(st->db) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(st->db, 1);
	if (sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS) != SQLITE_OK)
		goto fail;
	if (!readonly) {
		/* FULL: the WAL is fsynced at every COMMIT, so an ack means on disk. */
		if (set_wal(st) < 0 || exec(st, "PRAGMA synchronous = FULL") < 0 || migrate(st) < 0)
			goto fail;
	}
	if (check_layout(st) < 0)
		goto fail;
	if (prepare(st, &st->begin, "BEGIN IMMEDIATE") < 0 ||
	    prepare(st, &st->commit, "COMMIT") < 0 || prepare(st, &st->rollback, "ROLLBACK") < 0 ||
	    prepare(st, &st->insert,
	            "INSERT INTO messages (idem_key, sender_id, sender_name, receiver_id, body,"
	            " attachment, ts_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
	            " ON CONFLICT (idem_key) DO NOTHING") < 0 ||
	    prepare(st, &st->find_key, "SELECT " ROW_COLUMNS " FROM messages WHERE idem_key = ?1") <
	        0 ||
	    prepare(st, &st->list,
	            "SELECT " ROW_COLUMNS " FROM messages"
	            " WHERE receiver_id = ?1 AND delivered = 0 AND seq > ?2"
	            " ORDER BY seq LIMIT ?3") < 0 ||
	    /* by rowid from ?2: no index over delivered rows (it would cost every insert) */
	    prepare(st, &st->list_all,
	            "SELECT " ROW_COLUMNS " FROM messages"
	            " WHERE seq > ?2 AND receiver_id = ?1 ORDER BY seq LIMIT ?3") < 0 ||
	    prepare(st, &st->mark,
	            "UPDATE messages SET delivered = 1"
	            " WHERE seq = ?1 AND receiver_id = ?2 AND delivered = 0") < 0)
		goto fail;
	*out = st;
	return 0;
fail:
	SB_ERROR("store_open_failed", "path=%s partition=%u", path, partition);
	chat_store_destroy(st);
	return -1;
}

void chat_store_destroy(struct chat_store *st)
{
	if (!st)
		return;
	sqlite3_finalize(st->begin);
	sqlite3_finalize(st->commit);
	sqlite3_finalize(st->rollback);
	sqlite3_finalize(st->insert);
	sqlite3_finalize(st->find_key);
	sqlite3_finalize(st->list);
	sqlite3_finalize(st->list_all);
	sqlite3_finalize(st->mark);
	sqlite3_close(st->db);
	free(st);
}

struct sqlite3 *chat_store_handle(struct chat_store *st)
{
	return st->db;
}

/* Step a statement that returns no rows, then reset it. */
static int step_done(struct chat_store *st, sqlite3_stmt *stmt, const char *op)
{
	int rc = sqlite3_step(stmt);
	if (rc != SQLITE_DONE)
		fail(st, op);
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	return rc == SQLITE_DONE ? 0 : -1;
}

int chat_store_begin(struct chat_store *st)
{
	if (!sqlite3_get_autocommit(st->db)) {
		SB_WARN("store_transaction_left_open", "partition=%u msg=\"rolled back\"",
		        st->partition);
		if (step_done(st, st->rollback, "rollback left open") < 0)
			return -1;
	}
	return step_done(st, st->begin, "begin");
}

int chat_store_set_durable(struct chat_store *st, int durable)
{
	durable = !!durable;
	if (st->durable == durable)
		return 0;
	/* a PRAGMA acts when it is compiled, so it is run afresh, not kept prepared */
	if (exec(st, durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL") < 0)
		return -1;
	st->durable = durable;
	return 0;
}

int chat_store_commit(struct chat_store *st)
{
	return step_done(st, st->commit, "commit");
}

void chat_store_rollback(struct chat_store *st)
{
	/* After some errors SQLite has already rolled back on its own. */
	if (!sqlite3_get_autocommit(st->db))
		step_done(st, st->rollback, "rollback");
}

static int bind_text_or_null(sqlite3_stmt *stmt, int idx, const char *s)
{
	if (!s || !*s)
		return sqlite3_bind_null(stmt, idx);
	return sqlite3_bind_text(stmt, idx, s, -1, SQLITE_STATIC);
}

int chat_store_insert(struct chat_store *st, const char *idem_key, struct chat_msg *msg)
{
	sqlite3_stmt *s = st->insert;
	int rc = bind_text_or_null(s, 1, idem_key);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 2, (sqlite3_int64)msg->sender_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 3, msg->sender_name ? msg->sender_name : "", -1,
		                       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 4, (sqlite3_int64)msg->receiver_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 5, msg->body ? msg->body : "", -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = msg->attachment ? sqlite3_bind_text(s, 6, msg->attachment, -1, SQLITE_STATIC)
		                     : sqlite3_bind_null(s, 6);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 7, msg->ts_ms);
	if (rc != SQLITE_OK) {
		fail(st, "insert bind");
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		return CHAT_STORE_ERR;
	}
	if (step_done(st, s, "insert") < 0)
		return CHAT_STORE_ERR;
	if (sqlite3_changes(st->db) == 0)
		return CHAT_STORE_DUP;
	msg->id = chat_id_from_seq((uint64_t)sqlite3_last_insert_rowid(st->db), st->partitions,
	                           st->partition);
	return CHAT_STORE_OK;
}

/* Copy the current row of a ROW_COLUMNS statement into an owning chat_msg. */
static int read_row(struct chat_store *st, sqlite3_stmt *s, struct chat_msg *out)
{
	const char *name = (const char *)sqlite3_column_text(s, 2);
	size_t nl = (size_t)sqlite3_column_bytes(s, 2);
	const char *body = (const char *)sqlite3_column_text(s, 4);
	size_t bl = (size_t)sqlite3_column_bytes(s, 4);
	const char *att = (const char *)sqlite3_column_text(s, 5);
	size_t al = (size_t)sqlite3_column_bytes(s, 5);
	if (!name || !body || (!att && sqlite3_column_type(s, 5) != SQLITE_NULL))
		return -1; /* out of memory inside SQLite */
	char *mem = malloc(nl + bl + al + 3);
	if (!mem)
		return -1;
	memset(out, 0, sizeof *out);
	out->mem = mem;
	out->id =
	    chat_id_from_seq((uint64_t)sqlite3_column_int64(s, 0), st->partitions, st->partition);
	out->sender_id = (uint64_t)sqlite3_column_int64(s, 1);
	out->receiver_id = (uint64_t)sqlite3_column_int64(s, 3);
	out->ts_ms = sqlite3_column_int64(s, 6);
	memcpy(mem, name, nl);
	mem[nl] = 0;
	out->sender_name = mem;
	mem += nl + 1;
	memcpy(mem, body, bl);
	mem[bl] = 0;
	out->body = mem;
	mem += bl + 1;
	if (att) {
		memcpy(mem, att, al);
		mem[al] = 0;
		out->attachment = mem;
	}
	return 0;
}

int chat_store_find_key(struct chat_store *st, const char *idem_key, struct chat_msg *out)
{
	if (!idem_key || !*idem_key)
		return CHAT_STORE_NOT_FOUND;
	sqlite3_stmt *s = st->find_key;
	int status = CHAT_STORE_ERR;
	if (sqlite3_bind_text(s, 1, idem_key, -1, SQLITE_STATIC) != SQLITE_OK) {
		fail(st, "find_key bind");
		goto done;
	}
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		status = CHAT_STORE_NOT_FOUND;
	else if (rc != SQLITE_ROW)
		fail(st, "find_key");
	else if (read_row(st, s, out) < 0)
		SB_ERROR("store_error", "partition=%u op=find_key error=\"out of memory\"",
		         st->partition);
	else
		status = CHAT_STORE_OK;
done:
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return status;
}

int chat_store_list(struct chat_store *st, uint64_t receiver_id, uint64_t after_id, int all,
                    uint32_t limit, struct chat_msg **out, size_t *n, int *more)
{
	*out = NULL;
	*n = 0;
	*more = 0;
	if (limit == 0)
		return 0;
	/* id = seq * P + p > after_id  <=>  seq > (after_id - p) / P, for after_id >= p. */
	uint64_t after_seq =
	    after_id < st->partition ? 0 : (after_id - st->partition) / st->partitions;
	if (after_seq >= (uint64_t)INT64_MAX)
		return 0;
	sqlite3_stmt *s = all ? st->list_all : st->list;
	struct chat_msg *rows = NULL;
	size_t count = 0, cap = 0;
	int status = -1;
	if (sqlite3_bind_int64(s, 1, (sqlite3_int64)receiver_id) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, (sqlite3_int64)after_seq) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 3, (sqlite3_int64)limit + 1) != SQLITE_OK) {
		fail(st, "list bind");
		goto done;
	}
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (count == limit) {
			*more = 1; /* the one extra row we asked for */
			break;
		}
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			if (ncap > limit)
				ncap = limit;
			struct chat_msg *nrows = realloc(rows, ncap * sizeof *rows);
			if (!nrows)
				goto nomem;
			rows = nrows;
			cap = ncap;
		}
		if (read_row(st, s, &rows[count]) < 0)
			goto nomem;
		count++;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		fail(st, "list");
		goto done;
	}
	status = 0;
	goto done;
nomem:
	SB_ERROR("store_error", "partition=%u op=list error=\"out of memory\"", st->partition);
done:
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (status < 0) {
		chat_msg_free_list(rows, count);
		*more = 0;
		return -1;
	}
	if (count == 0) {
		free(rows);
		rows = NULL;
	}
	*out = rows;
	*n = count;
	return 0;
}

int chat_store_mark_delivered(struct chat_store *st, uint64_t receiver_id, const uint64_t *ids,
                              size_t n, size_t *marked)
{
	size_t changed = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t seq;
		if (chat_id_to_seq(ids[i], st->partitions, st->partition, &seq) < 0 ||
		    seq > (uint64_t)INT64_MAX)
			continue;
		if (sqlite3_bind_int64(st->mark, 1, (sqlite3_int64)seq) != SQLITE_OK ||
		    sqlite3_bind_int64(st->mark, 2, (sqlite3_int64)receiver_id) != SQLITE_OK) {
			fail(st, "mark bind");
			sqlite3_reset(st->mark);
			sqlite3_clear_bindings(st->mark);
			return -1;
		}
		if (step_done(st, st->mark, "mark") < 0)
			return -1;
		changed += (size_t)sqlite3_changes(st->db);
	}
	if (marked)
		*marked = changed;
	return 0;
}

void chat_msg_clear(struct chat_msg *msg)
{
	if (!msg)
		return;
	free(msg->mem);
	memset(msg, 0, sizeof *msg);
}

void chat_msg_free_list(struct chat_msg *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].mem);
	free(list);
}
