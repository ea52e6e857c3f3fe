/*
 * sbctl main: the operator's command-line tool. Parses the global options and hands
 * the rest of argv to a command group.
 *
 * Design: the groups are rows of one table, each implemented in its own file (user.c,
 * token.c, notify.c). Everything talks NATS, so
 * sbctl works from any host that reaches the bus.
 */
#include <string.h>

#include "notify.h"
#include "sbctl.h"

static const struct sbctl_cmd groups[] = {
    {"user", sbctl_user, "add, remove and show users"},
    {"token", sbctl_token, "issue, revoke and verify tokens"},
    {"notify", sbctl_notify, "send a notification"},
    {NULL, NULL, NULL},
};

static const char usage[] =
    "usage: sbctl [global options] <command> <subcommand> [options]\n"
    "\n"
    "Operate a Switchboard deployment over NATS.\n"
    "\n"
    "Commands:\n"
    "  user add     --id ID --name NAME | --stdin    add or rename users\n"
    "  user remove  --id ID                          remove a user, kill their tokens\n"
    "  user show    --id ID                          print \"ID NAME\"\n"
    "  token issue  --user ID | --stdin [--ttl D]    issue tokens, print them\n"
    "  token revoke --token T | --user ID            revoke tokens\n"
    "  token verify --token T                        check a token\n"
    "  notify       --user ID | --users ID,ID | --all --title T --message M [--type TYPE]\n"
    "                                                send a notification\n"
    "\n"
    "Each level takes --help. Exit status: 0 ok, 1 failed (reason on stderr), 2 usage.";

int main(int argc, char **argv)
{
	struct sbctl c = {NULL, 0, NULL};
	const struct sb_opt opts[] = {
	    {"nats", "SB_NATS_URL", SB_OPT_STR, &c.nats_url, "nats://127.0.0.1:4222",
	     "NATS server URL(s), comma-separated"},
	    {"timeout-ms", "SB_TIMEOUT_MS", SB_OPT_INT, &c.timeout_ms, "5000",
	     "give up on NATS or a service after this long"},
	    {NULL, NULL, SB_OPT_STR, NULL, NULL, NULL},
	};
	int first = sb_config_parse(argc, argv, opts, usage);
	if (first == 0)
		return SBCTL_EXIT_OK;
	if (first < 0)
		return SBCTL_EXIT_USAGE;
	if (c.timeout_ms < 1 || c.timeout_ms > 3600 * 1000)
		return sbctl_usage_error("--timeout-ms must be in 1..3600000");
	if (first >= argc) {
		fprintf(stderr, "%s\n", usage);
		return SBCTL_EXIT_USAGE;
	}
	const char *name = argv[first];
	if (!strcmp(name, "help")) {
		sb_config_help(opts, usage);
		return SBCTL_EXIT_OK;
	}
	int rc = -1;
	for (const struct sbctl_cmd *g = groups; g->name; g++)
		if (!strcmp(g->name, name))
			rc = g->run(&c, argc - first, argv + first);
	if (rc < 0)
		rc = sbctl_usage_error("unknown command \"%s\"", name);
	sbctl_disconnect(&c);
	nats_Close();
	return rc;
}
