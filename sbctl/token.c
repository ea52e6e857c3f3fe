/*
 * token: `sbctl token issue | revoke | verify`, over auth.admin and auth.verify.
 *
 * Design: stdout carries tokens and nothing else (one per line, in input order), so
 * `TOKEN=$(sbctl token issue --user 5)` just works; everything else goes to stderr.
 * A token is shown exactly once: auth-svc keeps only its hash. A token given to revoke
 * or verify may be read from stdin (`--token -`) to keep it out of `ps` and shell
 * history.
 */
#include <stdlib.h>
#include <string.h>

#include "sb_subjects.h"
#include "sb_token.h"
#include "sb_util.h"
#include "sbctl.h"

#define USER_ID_MAX ((uint64_t)INT64_MAX)

static int parse_ttl(const char *s, int64_t *ttl)
{
	if (!s) {
		*ttl = 0;
		return 0;
	}
	return sb_parse_duration(s, ttl);
}

/* "--token -": the first line of stdin, trimmed. 0 / -1 (reported). */
static int token_from_stdin(char *buf, size_t size)
{
	if (!fgets(buf, (int)size, stdin)) {
		sbctl_fail("--token -: nothing on stdin");
		return -1;
	}
	buf[strcspn(buf, " \t\r\n")] = 0;
	return 0;
}

/* ---- issue ---- */

struct bulk_issue {
	struct sbctl_lines lines;
	uint64_t *ids;
	size_t *which; /* request index -> line index */
	char **tokens; /* by line; NULL = failed */
	size_t n_requests;
	int64_t ttl;
	Sb__TokenIssue scratch;
};

static void issue_fill(void *ctx, size_t i, Sb__Envelope *req)
{
	struct bulk_issue *b = ctx;
	sb__token_issue__init(&b->scratch);
	b->scratch.user_id = b->ids[b->which[i]];
	b->scratch.ttl_seconds = b->ttl;
	req->body_case = SB__ENVELOPE__BODY_TOKEN_ISSUE;
	req->token_issue = &b->scratch;
}

/* The token in a TokenIssued reply, or NULL with *why set. */
static const char *issued_token(const Sb__Envelope *rep, const char **why)
{
	if (rep->body_case == SB__ENVELOPE__BODY_TOKEN_ISSUED && rep->token_issued &&
	    sb_token_well_formed(rep->token_issued->token, strlen(rep->token_issued->token)))
		return rep->token_issued->token;
	if (sbctl_admin_result(rep, why) == SBCTL_EXIT_OK)
		*why = "unexpected reply from auth-svc";
	return NULL;
}

static void issue_reply(void *ctx, size_t i, const Sb__Envelope *reply)
{
	struct bulk_issue *b = ctx;
	size_t l = b->which[i];
	const char *why = SBCTL_NO_ANSWER;
	const char *tok = reply ? issued_token(reply, &why) : NULL;
	if (tok) {
		b->tokens[l] = strdup(tok);
		if (!b->tokens[l])
			sbctl_line_fail(&b->lines.v[l], "out of memory");
	} else {
		sbctl_line_fail(&b->lines.v[l], why);
	}
}

static int issue_stdin(struct sbctl *c, int64_t ttl)
{
	struct bulk_issue b;
	memset(&b, 0, sizeof b);
	b.ttl = ttl;
	if (sbctl_read_lines(stdin, &b.lines) < 0)
		return SBCTL_EXIT_FAIL;
	size_t n = b.lines.n;
	b.ids = calloc(n ? n : 1, sizeof *b.ids);
	b.which = calloc(n ? n : 1, sizeof *b.which);
	b.tokens = calloc(n ? n : 1, sizeof *b.tokens);
	int rc = SBCTL_EXIT_OK;
	if (!b.ids || !b.which || !b.tokens) {
		rc = sbctl_fail("out of memory");
		goto out;
	}
	for (size_t l = 0; l < n; l++) {
		if (sb_parse_u64(b.lines.v[l].text, USER_ID_MAX, &b.ids[l]) < 0) {
			sbctl_line_fail(&b.lines.v[l], "expected a user id in 1..2^63-1");
			continue;
		}
		b.which[b.n_requests++] = l;
	}
	if (sbctl_pipeline(c, SB_SUBJ_AUTH_ADMIN, b.n_requests, issue_fill, issue_reply, &b) ==
	    (size_t)-1) {
		rc = SBCTL_EXIT_FAIL;
		goto out;
	}
	/* One output line per input line that carried data; an empty one where it failed,
	 * so line k of the output always belongs to the k-th user id. */
	for (size_t l = 0; l < n; l++)
		printf("%s\n", b.tokens[l] ? b.tokens[l] : "");
	rc = sbctl_flush_stdout();
	if (sbctl_report_lines(&b.lines) != SBCTL_EXIT_OK)
		rc = SBCTL_EXIT_FAIL;
out:
	if (b.tokens)
		for (size_t l = 0; l < n; l++)
			free(b.tokens[l]);
	free(b.tokens);
	free(b.ids);
	free(b.which);
	sbctl_lines_free(&b.lines);
	return rc;
}

static int token_issue(struct sbctl *c, int argc, char **argv)
{
	static const char usage[] =
	    "usage: sbctl token issue --user ID [--ttl DURATION]\n"
	    "       sbctl token issue --stdin [--ttl DURATION] < user-ids.txt\n"
	    "\n"
	    "Issue a token and print it (only it, one line). It is shown this once: auth-svc\n"
	    "stores only its hash. DURATION: 3600, 90s, 30m, 12h, 7d; without --ttl the token\n"
	    "never expires. With --stdin, read one user id per line and print one token per\n"
	    "line in the same order (an empty line where issuing failed).";
	const char *user_s = NULL, *ttl_s = NULL;
	int from_stdin = 0;
	const struct sb_opt opts[] = {
	    {"user", NULL, SB_OPT_STR, &user_s, NULL, "user id"},
	    {"ttl", NULL, SB_OPT_STR, &ttl_s, NULL, "lifetime, e.g. 12h (default: never expires)"},
	    {"stdin", NULL, SB_OPT_BOOL, &from_stdin, NULL, "read user ids from stdin"},
	    {NULL, NULL, SB_OPT_STR, NULL, NULL, NULL},
	};
	int r = sbctl_parse(argc, argv, opts, usage);
	if (r <= 0)
		return r == 0 ? SBCTL_EXIT_OK : SBCTL_EXIT_USAGE;
	int64_t ttl;
	if (parse_ttl(ttl_s, &ttl) < 0)
		return sbctl_usage_error("--ttl: bad duration \"%s\"", ttl_s);
	if (from_stdin) {
		if (user_s)
			return sbctl_usage_error("--stdin excludes --user");
		return issue_stdin(c, ttl);
	}
	uint64_t id;
	if (!user_s)
		return sbctl_usage_error("token issue needs --user, or --stdin");
	if (sb_parse_u64(user_s, USER_ID_MAX, &id) < 0)
		return sbctl_usage_error("--user must be an integer in 1..2^63-1, got \"%s\"",
		                         user_s);
	Sb__TokenIssue ti = SB__TOKEN_ISSUE__INIT;
	Sb__Envelope req = SB__ENVELOPE__INIT;
	ti.user_id = id;
	ti.ttl_seconds = ttl;
	req.body_case = SB__ENVELOPE__BODY_TOKEN_ISSUE;
	req.token_issue = &ti;
	Sb__Envelope *rep = NULL;
	int rc = sbctl_request(c, SB_SUBJ_AUTH_ADMIN, &req, &rep);
	if (rc != SBCTL_EXIT_OK)
		return rc;
	const char *why = NULL;
	const char *tok = issued_token(rep, &why);
	if (tok) {
		printf("%s\n", tok);
		rc = sbctl_flush_stdout();
	} else {
		rc = sbctl_fail("%s", why);
	}
	sb_envelope_free(rep);
	return rc;
}

/* ---- revoke ---- */

static int token_revoke(struct sbctl *c, int argc, char **argv)
{
	static const char usage[] =
	    "usage: sbctl token revoke --token TOKEN|-\n"
	    "       sbctl token revoke --user ID\n"
	    "\n"
	    "Revoke one token (\"-\": read it from stdin), or every token of a user. Gateways\n"
	    "close the sockets those tokens opened. Prints nothing on success.";
	const char *token = NULL, *user_s = NULL;
	const struct sb_opt opts[] = {
	    {"token", NULL, SB_OPT_STR, &token, NULL, "the token, or - to read it from stdin"},
	    {"user", NULL, SB_OPT_STR, &user_s, NULL, "revoke every token of this user id"},
	    {NULL, NULL, SB_OPT_STR, NULL, NULL, NULL},
	};
	int r = sbctl_parse(argc, argv, opts, usage);
	if (r <= 0)
		return r == 0 ? SBCTL_EXIT_OK : SBCTL_EXIT_USAGE;
	if (!token == !user_s)
		return sbctl_usage_error("token revoke needs exactly one of --token and --user");
	Sb__TokenRevoke tr = SB__TOKEN_REVOKE__INIT;
	Sb__Envelope req = SB__ENVELOPE__INIT;
	char buf[256];
	if (token) {
		if (!strcmp(token, "-")) {
			if (token_from_stdin(buf, sizeof buf) < 0)
				return SBCTL_EXIT_FAIL;
			token = buf;
		}
		if (!*token)
			return sbctl_usage_error("--token is empty");
		tr.token = (char *)token;
	} else if (sb_parse_u64(user_s, USER_ID_MAX, &tr.user_id) < 0) {
		return sbctl_usage_error("--user must be an integer in 1..2^63-1, got \"%s\"",
		                         user_s);
	}
	req.body_case = SB__ENVELOPE__BODY_TOKEN_REVOKE;
	req.token_revoke = &tr;
	Sb__Envelope *rep = NULL;
	int rc = sbctl_request(c, SB_SUBJ_AUTH_ADMIN, &req, &rep);
	memset(buf, 0, sizeof buf);
	if (rc != SBCTL_EXIT_OK)
		return rc;
	const char *why = NULL;
	rc = sbctl_admin_result(rep, &why);
	if (rc != SBCTL_EXIT_OK)
		sbctl_fail("%s", why);
	sb_envelope_free(rep);
	return rc;
}

/* ---- verify ---- */

static int token_verify(struct sbctl *c, int argc, char **argv)
{
	static const char usage[] =
	    "usage: sbctl token verify --token TOKEN|-\n"
	    "\n"
	    "Ask auth-svc what the gateway would: print \"USER_ID NAME\" and exit 0 when the\n"
	    "token is good; else print why it is refused (malformed, unknown, expired, revoked,\n"
	    "user removed) and exit 1.";
	const char *token = NULL;
	const struct sb_opt opts[] = {
	    {"token", NULL, SB_OPT_STR, &token, NULL, "the token, or - to read it from stdin"},
	    {NULL, NULL, SB_OPT_STR, NULL, NULL, NULL},
	};
	int r = sbctl_parse(argc, argv, opts, usage);
	if (r <= 0)
		return r == 0 ? SBCTL_EXIT_OK : SBCTL_EXIT_USAGE;
	if (!token)
		return sbctl_usage_error("token verify needs --token");
	char buf[256];
	if (!strcmp(token, "-")) {
		if (token_from_stdin(buf, sizeof buf) < 0)
			return SBCTL_EXIT_FAIL;
		token = buf;
	}
	Sb__VerifyRequest vr = SB__VERIFY_REQUEST__INIT;
	Sb__Envelope req = SB__ENVELOPE__INIT;
	vr.token = (char *)token;
	req.body_case = SB__ENVELOPE__BODY_VERIFY_REQUEST;
	req.verify_request = &vr;
	Sb__Envelope *rep = NULL;
	int rc = sbctl_request(c, SB_SUBJ_AUTH_VERIFY, &req, &rep);
	memset(buf, 0, sizeof buf);
	if (rc != SBCTL_EXIT_OK)
		return rc;
	if (rep->body_case == SB__ENVELOPE__BODY_VERIFY_REPLY && rep->verify_reply) {
		const Sb__VerifyReply *v = rep->verify_reply;
		if (v->ok) {
			printf("%llu %s\n", (unsigned long long)v->user_id, v->display_name);
			rc = sbctl_flush_stdout();
		} else {
			rc = sbctl_fail("token refused: %s", v->reason);
		}
	} else {
		const char *why = NULL;
		sbctl_admin_result(rep, &why);
		rc = sbctl_fail("%s", why);
	}
	sb_envelope_free(rep);
	return rc;
}

int sbctl_token(struct sbctl *c, int argc, char **argv)
{
	static const struct sbctl_cmd cmds[] = {
	    {"issue", token_issue, "issue a token and print it (--stdin: many)"},
	    {"revoke", token_revoke, "revoke a token, or every token of a user"},
	    {"verify", token_verify, "check a token as the gateway would"},
	    {NULL, NULL, NULL},
	};
	return sbctl_dispatch(c, "token", cmds, argc, argv);
}
