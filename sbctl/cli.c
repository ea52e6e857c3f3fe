/*
 * cli: the conventions every sbctl command shares: subcommand dispatch, flag parsing,
 * the "sbctl: reason" error lines and exit codes, and reading bulk input from stdin.
 *
 * Design: bulk input is read whole before anything is sent, so every request can be
 * pipelined and every failure reported against its input line number.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sbctl.h"

int sbctl_fail(const char *fmt, ...)
{
	va_list ap;
	fputs("sbctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return SBCTL_EXIT_FAIL;
}

int sbctl_usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("sbctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see --help)\n", stderr);
	return SBCTL_EXIT_USAGE;
}

int sbctl_flush_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout))
		return sbctl_fail("cannot write to stdout: %s", strerror(errno));
	return SBCTL_EXIT_OK;
}

static void group_help(FILE *f, const char *group, const struct sbctl_cmd *cmds)
{
	fprintf(f, "usage: sbctl [global options] %s <command> [options]\n\nCommands:\n", group);
	for (const struct sbctl_cmd *k = cmds; k->name; k++)
		fprintf(f, "  %-10s %s\n", k->name, k->summary);
	fprintf(f, "\nRun `sbctl %s <command> --help` for its options.\n", group);
}

int sbctl_dispatch(struct sbctl *c, const char *group, const struct sbctl_cmd *cmds, int argc,
                   char **argv)
{
	if (argc < 2) {
		group_help(stderr, group, cmds);
		return SBCTL_EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
		group_help(stdout, group, cmds);
		return SBCTL_EXIT_OK;
	}
	for (const struct sbctl_cmd *k = cmds; k->name; k++)
		if (!strcmp(k->name, name))
			return k->run(c, argc - 1, argv + 1);
	return sbctl_usage_error("unknown command \"%s %s\"", group, name);
}

int sbctl_parse(int argc, char **argv, const struct sb_opt *opts, const char *usage)
{
	int first = sb_config_parse(argc, argv, opts, usage);
	if (first <= 0)
		return first;
	if (first < argc) {
		sbctl_usage_error("unexpected argument \"%s\"", argv[first]);
		return -1;
	}
	return 1;
}

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

int sbctl_read_lines(FILE *in, struct sbctl_lines *out)
{
	struct sbctl_lines ls = {NULL, 0};
	size_t cap = 0;
	char *buf = NULL;
	size_t bufcap = 0;
	size_t lineno = 0;
	ssize_t len;
	while ((len = getline(&buf, &bufcap, in)) >= 0) {
		lineno++;
		while (len > 0 && is_blank(buf[len - 1]))
			buf[--len] = 0;
		const char *p = buf;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			continue;
		if (ls.n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			struct sbctl_line *nv = realloc(ls.v, ncap * sizeof *nv);
			if (!nv)
				goto oom;
			ls.v = nv;
			cap = ncap;
		}
		char *text = strdup(p);
		if (!text)
			goto oom;
		ls.v[ls.n++] = (struct sbctl_line){lineno, text, NULL};
	}
	free(buf);
	if (ferror(in)) {
		sbctl_fail("cannot read stdin: %s", strerror(errno));
		sbctl_lines_free(&ls);
		return -1;
	}
	*out = ls;
	return 0;
oom:
	free(buf);
	sbctl_lines_free(&ls);
	sbctl_fail("out of memory reading stdin (line %zu)", lineno);
	return -1;
}

/* Stands in for a reason that could not be copied, so the line still counts as failed. */
static char no_memory_reason[] = "failed (out of memory)";

void sbctl_lines_free(struct sbctl_lines *lines)
{
	for (size_t i = 0; i < lines->n; i++) {
		free(lines->v[i].text);
		if (lines->v[i].error != no_memory_reason)
			free(lines->v[i].error);
	}
	free(lines->v);
	lines->v = NULL;
	lines->n = 0;
}

void sbctl_line_fail(struct sbctl_line *line, const char *reason)
{
	if (line->error)
		return;
	line->error = strdup(reason && *reason ? reason : "failed");
	if (!line->error)
		line->error = no_memory_reason;
}

int sbctl_report_lines(const struct sbctl_lines *lines)
{
	size_t failed = 0;
	for (size_t i = 0; i < lines->n;) {
		const struct sbctl_line *l = &lines->v[i];
		if (!l->error) {
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < lines->n && lines->v[j].error && !strcmp(lines->v[j].error, l->error))
			j++;
		if (j - i == 1)
			fprintf(stderr, "sbctl: line %zu: %s\n", l->lineno, l->error);
		else
			fprintf(stderr, "sbctl: lines %zu-%zu: %s\n", l->lineno,
			        lines->v[j - 1].lineno, l->error);
		failed += j - i;
		i = j;
	}
	if (!failed)
		return SBCTL_EXIT_OK;
	fprintf(stderr, "sbctl: %zu of %zu lines failed\n", failed, lines->n);
	return SBCTL_EXIT_FAIL;
}
