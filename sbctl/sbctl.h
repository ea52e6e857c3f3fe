/*
 * sbctl: what the command files (user.c, token.c, and later notify.c) share: the
 * global options, the command-table type, argument and stdin helpers (cli.c), and the
 * bus helpers (bus.c).
 *
 * Design: main.c holds the table of command groups and dispatches; each group is one
 * file with its own table of subcommands; a subcommand parses its own flags with the
 * same sb_config table the services use, so every level has --help for free.
 * Exit status: 0 done, 1 the operation failed ("sbctl: <reason>" on stderr), 2 usage.
 * Single-threaded; libnats' own threads never call back into sbctl code.
 */
#ifndef SBCTL_H
#define SBCTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sb_bus.h"
#include "sb_config.h"

enum { SBCTL_EXIT_OK = 0, SBCTL_EXIT_FAIL = 1, SBCTL_EXIT_USAGE = 2 };

struct sbctl {
	const char *nats_url;
	int64_t timeout_ms;
	struct sb_bus *bus; /* NULL until sbctl_connect() */
};

/* One command or subcommand. run() gets argv[0] = its own name and returns an exit
 * status. */
struct sbctl_cmd {
	const char *name;
	int (*run)(struct sbctl *c, int argc, char **argv);
	const char *summary;
};

/* ---- cli.c ---- */

/* Run the subcommand named by argv[1] from cmds (terminated by a NULL name). argv[0]
 * is the group name. Prints the group's help for --help, -h, help or nothing given. */
int sbctl_dispatch(struct sbctl *c, const char *group, const struct sbctl_cmd *cmds, int argc,
                   char **argv);

/* Parse a subcommand's flags (argv[0] = subcommand). Returns 1 to go on, 0 when help
 * was printed (exit 0), -1 on a usage error (already reported; exit 2). Positional
 * arguments are usage errors. */
int sbctl_parse(int argc, char **argv, const struct sb_opt *opts, const char *usage);

/* Print "sbctl: <message>\n" to stderr; return SBCTL_EXIT_FAIL. */
int sbctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "sbctl: <message> (see --help)\n" to stderr; return SBCTL_EXIT_USAGE. */
int sbctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Flush stdout; SBCTL_EXIT_OK, or SBCTL_EXIT_FAIL after saying the output was lost. */
int sbctl_flush_stdout(void);

/* Lines of stdin that carry data: blank lines and lines starting with '#' (after
 * leading blanks) are skipped; trailing blanks and CR are stripped. */
struct sbctl_line {
	size_t lineno; /* 1-based, in the input */
	char *text;    /* owned by the struct sbctl_lines */
	char *error;   /* malloc'd failure reason, set by the command; NULL = fine */
};
struct sbctl_lines {
	struct sbctl_line *v;
	size_t n;
};

/* Read every data line of in. 0, or -1 after reporting the read error. */
int sbctl_read_lines(FILE *in, struct sbctl_lines *out);
void sbctl_lines_free(struct sbctl_lines *lines);

/* Record why a line failed (copied; the first reason recorded wins). */
void sbctl_line_fail(struct sbctl_line *line, const char *reason);

/* Print the failed lines to stderr, runs of lines with the same reason collapsed
 * ("sbctl: lines 3-9: no such user"). Returns SBCTL_EXIT_OK when none failed, else
 * SBCTL_EXIT_FAIL. */
int sbctl_report_lines(const struct sbctl_lines *lines);

/* ---- bus.c ---- */

#define SBCTL_NO_ANSWER "auth-svc did not answer (is it running?)"

/* Connect once (no retry loop), giving up after the timeout. 0, or 1 after printing
 * why. Idempotent. */
int sbctl_connect(struct sbctl *c);
void sbctl_disconnect(struct sbctl *c);

/* One request/reply. 0 and *reply (free with sb_envelope_free), or 1 after printing
 * why (SBCTL_NO_ANSWER when nobody answered in time). Connects when needed. */
int sbctl_request(struct sbctl *c, const char *subject, Sb__Envelope *req, Sb__Envelope **reply);

/* fill() writes request i into req (already initialised; storage it points to must
 * stay valid until the next fill call). on_reply() gets reply i, or NULL when none
 * came; an undecodable reply arrives as an envelope with no body. */
typedef void (*sbctl_fill_fn)(void *ctx, size_t i, Sb__Envelope *req);
typedef void (*sbctl_reply_fn)(void *ctx, size_t i, const Sb__Envelope *reply);

/* Send n requests on subject, pipelined: at most SBCTL_WINDOW in flight, each with its
 * own reply subject under one inbox subscription. Gives up on the rest when no reply
 * arrives for the timeout, or the server reports no responders. Every i gets exactly
 * one on_reply call. Returns how many got no answer, or (size_t)-1 when it could not
 * start (reported). Connects when needed. */
#define SBCTL_WINDOW 512
size_t sbctl_pipeline(struct sbctl *c, const char *subject, size_t n, sbctl_fill_fn fill,
                      sbctl_reply_fn on_reply, void *ctx);

/* For admin replies: SBCTL_EXIT_OK when reply is AdminReply{ok}, else a reason (points
 * into reply or is static) in *why and SBCTL_EXIT_FAIL. */
int sbctl_admin_result(const Sb__Envelope *reply, const char **why);

/* ---- command groups ---- */
int sbctl_user(struct sbctl *c, int argc, char **argv);
int sbctl_token(struct sbctl *c, int argc, char **argv);

#endif
