/*
 * tmpdb: a SQLite file in a fresh temporary directory for one unit test, and its
 * removal with the WAL and shared-memory files SQLite leaves beside it.
 */
#ifndef TESTS_UNIT_TMPDB_H
#define TESTS_UNIT_TMPDB_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct tmpdb {
	char dir[64];
	char path[128]; /* <dir>/<file> */
	char wal[160];  /* <path>-wal */
};

/* Make /tmp/<test>.XXXXXX and name <file> in it. 0, or -1. */
static inline int tmpdb_make(struct tmpdb *t, const char *test, const char *file)
{
	snprintf(t->dir, sizeof t->dir, "/tmp/%s.XXXXXX", test);
	if (!mkdtemp(t->dir))
		return -1;
	snprintf(t->path, sizeof t->path, "%s/%s", t->dir, file);
	snprintf(t->wal, sizeof t->wal, "%s-wal", t->path);
	return 0;
}

static inline void tmpdb_remove(const struct tmpdb *t)
{
	const char *suffixes[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		char p[160];
		snprintf(p, sizeof p, "%s%s", t->path, suffixes[i]);
		unlink(p);
	}
	rmdir(t->dir);
}

/* cmocka setup and teardown for tests whose state is just the file: *state is a
 * struct tmpdb named after the test, with chat-0.db in it. */
static inline int tmpdb_setup_named(void **state, const char *test)
{
	struct tmpdb *t = calloc(1, sizeof *t);
	if (!t)
		return -1;
	if (tmpdb_make(t, test, "chat-0.db") < 0) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

static inline int tmpdb_teardown(void **state)
{
	tmpdb_remove(*state);
	free(*state);
	return 0;
}

#endif
