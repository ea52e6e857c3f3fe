/*
 * tokens: read the "USER_ID TOKEN" file (see tokens.h). The whole file is read into
 * one buffer and split in place: one allocation for any number of users.
 */
#include "tokens.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_util.h"

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (n < cap)
			break;
		char *grown = cap < (1u << 30) ? realloc(buf, cap * 2 + 1) : NULL;
		if (!grown) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = grown;
		cap *= 2;
	}
	if (buf && ferror(f)) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf) {
		buf[n] = 0;
		*len = n;
	}
	return buf;
}

int lg_tokens_load(const char *path, size_t max, struct lg_tokens **out)
{
	size_t len = 0;
	char *buf = read_all(path, &len);
	if (!buf) {
		fprintf(stderr, "error: cannot read token file %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t lines = 1;
	for (size_t i = 0; i < len; i++)
		lines += buf[i] == '\n';
	if (lines > max)
		lines = max;
	struct lg_tokens *t = calloc(1, sizeof *t);
	if (t) {
		t->buf = buf;
		t->uid = calloc(lines, sizeof *t->uid);
		t->token = calloc(lines, sizeof *t->token);
	}
	if (!t || !t->uid || !t->token) {
		fprintf(stderr, "error: out of memory reading %s\n", path);
		if (t) {
			free(t->uid);
			free(t->token);
			free(t);
		}
		free(buf);
		return -1;
	}
	size_t lineno = 0;
	for (char *line = buf, *next; line && *line && t->n < lines; line = next) {
		lineno++;
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		size_t l = strlen(line);
		while (l && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t'))
			line[--l] = 0;
		if (!l || line[0] == '#')
			continue;
		char *sp = strpbrk(line, " \t");
		if (!sp) {
			fprintf(stderr, "error: %s:%zu: expected \"USER_ID TOKEN\"\n", path,
			        lineno);
			lg_tokens_destroy(t);
			return -1;
		}
		*sp++ = 0;
		while (*sp == ' ' || *sp == '\t')
			sp++;
		if (sb_parse_u64(line, UINT64_MAX / 2, &t->uid[t->n]) < 0 || !*sp ||
		    strpbrk(sp, " \t&#")) {
			fprintf(stderr, "error: %s:%zu: expected \"USER_ID TOKEN\"\n", path,
			        lineno);
			lg_tokens_destroy(t);
			return -1;
		}
		t->token[t->n++] = sp;
	}
	*out = t;
	return 0;
}

void lg_tokens_destroy(struct lg_tokens *t)
{
	if (!t)
		return;
	free(t->uid);
	free(t->token);
	free(t->buf);
	free(t);
}
