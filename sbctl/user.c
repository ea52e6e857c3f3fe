/*
 * user: `sbctl user add | remove | show`, over auth.admin and auth.lookup.
 *
 * Design: a single add is one request; `add --stdin` parses every line first, then
 * pipelines one UserAdd per line (upserts, so re-running a half-applied file is safe)
 * and reports failures by input line. Success prints nothing, so scripts stay quiet.
 */
#include <stdlib.h>
#include <string.h>

#include "sb_subjects.h"
#include "sb_util.h"
#include "sbctl.h"

#define USER_ID_MAX ((uint64_t)INT64_MAX)

static int parse_id(const char *s, uint64_t *id)
{
	return sb_parse_u64(s, USER_ID_MAX, id);
}

static int run_admin(struct sbctl *c, Sb__Envelope *req)
{
	Sb__Envelope *rep = NULL;
	int rc = sbctl_request(c, SB_SUBJ_AUTH_ADMIN, req, &rep);
	if (rc != SBCTL_EXIT_OK)
		return rc;
	const char *why = NULL;
	rc = sbctl_admin_result(rep, &why);
	if (rc != SBCTL_EXIT_OK)
		sbctl_fail("%s", why);
	sb_envelope_free(rep);
	return rc;
}

/* ---- add --stdin ---- */

struct bulk_add {
	struct sbctl_lines lines;
	uint64_t *ids; /* 0 = the line did not parse; not sent */
	size_t *which; /* request index -> line index */
	char **names;  /* points into the line text */
	size_t n_requests;
	Sb__UserAdd scratch;
};

static void bulk_fill(void *ctx, size_t i, Sb__Envelope *req)
{
	struct bulk_add *b = ctx;
	size_t l = b->which[i];
	sb__user_add__init(&b->scratch);
	b->scratch.user_id = b->ids[l];
	b->scratch.display_name = b->names[l];
	req->body_case = SB__ENVELOPE__BODY_USER_ADD;
	req->user_add = &b->scratch;
}

static void bulk_reply(void *ctx, size_t i, const Sb__Envelope *reply)
{
	struct bulk_add *b = ctx;
	struct sbctl_line *line = &b->lines.v[b->which[i]];
	const char *why = NULL;
	if (!reply)
		sbctl_line_fail(line, SBCTL_NO_ANSWER);
	else if (sbctl_admin_result(reply, &why) != SBCTL_EXIT_OK)
		sbctl_line_fail(line, why);
}

/* "ID NAME...": the id, then one or more blanks, then the name (the rest of the line,
 * inner blanks kept). */
static int split_line(char *text, uint64_t *id, char **name)
{
	char *sep = text + strcspn(text, " \t");
	if (!*sep)
		return -1;
	*sep++ = 0;
	sep += strspn(sep, " \t");
	if (!*sep || parse_id(text, id) < 0)
		return -1;
	*name = sep;
	return 0;
}

static int add_stdin(struct sbctl *c)
{
	struct bulk_add b;
	memset(&b, 0, sizeof b);
	if (sbctl_read_lines(stdin, &b.lines) < 0)
		return SBCTL_EXIT_FAIL;
	size_t n = b.lines.n;
	b.ids = calloc(n ? n : 1, sizeof *b.ids);
	b.which = calloc(n ? n : 1, sizeof *b.which);
	b.names = calloc(n ? n : 1, sizeof *b.names);
	int rc = SBCTL_EXIT_OK;
	if (!b.ids || !b.which || !b.names) {
		rc = sbctl_fail("out of memory");
		goto out;
	}
	for (size_t l = 0; l < n; l++) {
		if (split_line(b.lines.v[l].text, &b.ids[l], &b.names[l]) < 0) {
			b.ids[l] = 0;
			sbctl_line_fail(&b.lines.v[l], "expected \"ID NAME\" with ID in 1..2^63-1");
			continue;
		}
		b.which[b.n_requests++] = l;
	}
	if (sbctl_pipeline(c, SB_SUBJ_AUTH_ADMIN, b.n_requests, bulk_fill, bulk_reply, &b) ==
	    (size_t)-1) {
		rc = SBCTL_EXIT_FAIL;
		goto out;
	}
	rc = sbctl_report_lines(&b.lines);
out:
	free(b.ids);
	free(b.which);
	free(b.names);
	sbctl_lines_free(&b.lines);
	return rc;
}

/* ---- subcommands ---- */

static int user_add(struct sbctl *c, int argc, char **argv)
{
	static const char usage[] =
	    "usage: sbctl user add --id ID --name NAME\n"
	    "       sbctl user add --stdin < users.txt\n"
	    "\n"
	    "Add a user, or rename it when the id exists. With --stdin, read lines \"ID NAME\"\n"
	    "(name = the rest of the line; blank lines and #comments skipped) and add them all,\n"
	    "reporting failures by line number. Prints nothing on success.";
	const char *id_s = NULL, *name = NULL;
	int from_stdin = 0;
	const struct sb_opt opts[] = {
	    {"id", NULL, SB_OPT_STR, &id_s, NULL, "user id, 1..2^63-1"},
	    {"name", NULL, SB_OPT_STR, &name, NULL, "display name (1..256 bytes of UTF-8)"},
	    {"stdin", NULL, SB_OPT_BOOL, &from_stdin, NULL, "read \"ID NAME\" lines from stdin"},
	    {NULL, NULL, SB_OPT_STR, NULL, NULL, NULL},
	};
	int r = sbctl_parse(argc, argv, opts, usage);
	if (r <= 0)
		return r == 0 ? SBCTL_EXIT_OK : SBCTL_EXIT_USAGE;
	if (from_stdin) {
		if (id_s || name)
			return sbctl_usage_error("--stdin excludes --id and --name");
		return add_stdin(c);
	}
	uint64_t id;
	if (!id_s || !name)
		return sbctl_usage_error("user add needs --id and --name, or --stdin");
	if (parse_id(id_s, &id) < 0)
		return sbctl_usage_error("--id must be an integer in 1..2^63-1, got \"%s\"", id_s);
	Sb__UserAdd add = SB__USER_ADD__INIT;
	Sb__Envelope req = SB__ENVELOPE__INIT;
	add.user_id = id;
	add.display_name = (char *)name;
	req.body_case = SB__ENVELOPE__BODY_USER_ADD;
	req.user_add = &add;
	return run_admin(c, &req);
}

static int user_remove(struct sbctl *c, int argc, char **argv)
{
	static const char usage[] =
	    "usage: sbctl user remove --id ID\n"
	    "\n"
	    "Remove a user. Every token of theirs stops working at once (and stays dead if the\n"
	    "id is added again); gateways close their sockets. Prints nothing on success.";
	const char *id_s = NULL;
	const struct sb_opt opts[] = {
	    {"id", NULL, SB_OPT_STR, &id_s, NULL, "user id"},
	    {NULL, NULL, SB_OPT_STR, NULL, NULL, NULL},
	};
	int r = sbctl_parse(argc, argv, opts, usage);
	if (r <= 0)
		return r == 0 ? SBCTL_EXIT_OK : SBCTL_EXIT_USAGE;
	uint64_t id;
	if (!id_s)
		return sbctl_usage_error("user remove needs --id");
	if (parse_id(id_s, &id) < 0)
		return sbctl_usage_error("--id must be an integer in 1..2^63-1, got \"%s\"", id_s);
	Sb__UserRemove rm = SB__USER_REMOVE__INIT;
	Sb__Envelope req = SB__ENVELOPE__INIT;
	rm.user_id = id;
	req.body_case = SB__ENVELOPE__BODY_USER_REMOVE;
	req.user_remove = &rm;
	return run_admin(c, &req);
}

static int user_show(struct sbctl *c, int argc, char **argv)
{
	static const char usage[] = "usage: sbctl user show --id ID\n"
	                            "\n"
	                            "Print \"ID NAME\" (the format `user add --stdin` reads), or\n"
	                            "fail with \"no such user\".";
	const char *id_s = NULL;
	const struct sb_opt opts[] = {
	    {"id", NULL, SB_OPT_STR, &id_s, NULL, "user id"},
	    {NULL, NULL, SB_OPT_STR, NULL, NULL, NULL},
	};
	int r = sbctl_parse(argc, argv, opts, usage);
	if (r <= 0)
		return r == 0 ? SBCTL_EXIT_OK : SBCTL_EXIT_USAGE;
	uint64_t id;
	if (!id_s)
		return sbctl_usage_error("user show needs --id");
	if (parse_id(id_s, &id) < 0)
		return sbctl_usage_error("--id must be an integer in 1..2^63-1, got \"%s\"", id_s);
	Sb__UserLookup lk = SB__USER_LOOKUP__INIT;
	Sb__Envelope req = SB__ENVELOPE__INIT;
	lk.user_id = id;
	req.body_case = SB__ENVELOPE__BODY_USER_LOOKUP;
	req.user_lookup = &lk;
	Sb__Envelope *rep = NULL;
	int rc = sbctl_request(c, SB_SUBJ_AUTH_LOOKUP, &req, &rep);
	if (rc != SBCTL_EXIT_OK)
		return rc;
	if (rep->body_case == SB__ENVELOPE__BODY_USER_INFO && rep->user_info) {
		if (rep->user_info->found) {
			printf("%llu %s\n", (unsigned long long)rep->user_info->user_id,
			       rep->user_info->display_name);
			rc = sbctl_flush_stdout();
		} else {
			rc = sbctl_fail("no such user");
		}
	} else {
		const char *why = NULL;
		sbctl_admin_result(rep, &why);
		rc = sbctl_fail("%s", why);
	}
	sb_envelope_free(rep);
	return rc;
}

int sbctl_user(struct sbctl *c, int argc, char **argv)
{
	static const struct sbctl_cmd cmds[] = {
	    {"add", user_add, "add or rename a user (--stdin: many)"},
	    {"remove", user_remove, "remove a user and kill their tokens"},
	    {"show", user_show, "print a user's display name"},
	    {NULL, NULL, NULL},
	};
	return sbctl_dispatch(c, "user", cmds, argc, argv);
}
