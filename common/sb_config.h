/*
 * sb_config: every setting of every binary is one row of a table, read from a
 * flag (--nats) or an environment variable (SB_NATS_URL); the flag wins. The same
 * table prints --help, so the help text and the parser cannot drift apart.
 */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stdint.h>

enum sb_opt_type { SB_OPT_STR, SB_OPT_INT, SB_OPT_BOOL };

struct sb_opt {
	const char *flag; /* without the leading "--" */
	const char *env;  /* environment variable, or NULL */
	enum sb_opt_type type;
	void *dst;       /* const char ** / int64_t * / int * (bool) */
	const char *def; /* default as text, applied before env and flags; NULL = none */
	const char *help;
};

/* Parse defaults, then the environment, then argv (--flag VALUE, --flag=VALUE, or a bare
 * --flag for booleans). Returns the index of the first non-option argument (>= 1), or -1
 * after printing an error, or 0 when --help was printed (caller exits 0). String results
 * point into argv, the environment or the table's defaults and live for the process. */
int sb_config_parse(int argc, char **argv, const struct sb_opt *opts, const char *usage);

/* Print the usage line and the option table to stdout. */
void sb_config_help(const struct sb_opt *opts, const char *usage);

#endif
