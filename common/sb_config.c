/*
 * sb_config: table-driven flags + SB_ environment variables, see sb_config.h.
 */
#include "sb_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_value(const struct sb_opt *o, const char *val, const char *from)
{
	switch (o->type) {
	case SB_OPT_STR:
		*(const char **)o->dst = val;
		return 0;
	case SB_OPT_INT: {
		char *end = NULL;
		errno = 0;
		long long v = strtoll(val, &end, 10);
		if (errno || end == val || *end) {
			fprintf(stderr, "error: %s: --%s expects an integer, got \"%s\"\n", from,
			        o->flag, val);
			return -1;
		}
		*(int64_t *)o->dst = v;
		return 0;
	}
	case SB_OPT_BOOL:
		if (!strcmp(val, "1") || !strcmp(val, "true") || !strcmp(val, "yes") ||
		    !strcmp(val, "on"))
			*(int *)o->dst = 1;
		else if (!strcmp(val, "0") || !strcmp(val, "false") || !strcmp(val, "no") ||
		         !strcmp(val, "off") || !*val)
			*(int *)o->dst = 0;
		else {
			fprintf(stderr, "error: %s: --%s expects true or false, got \"%s\"\n", from,
			        o->flag, val);
			return -1;
		}
		return 0;
	}
	return -1;
}

void sb_config_help(const struct sb_opt *opts, const char *usage)
{
	printf("%s\n\nOptions (flag, environment variable, default):\n", usage);
	for (const struct sb_opt *o = opts; o->flag; o++) {
		printf("  --%-22s %-24s %s", o->flag, o->env ? o->env : "", o->help);
		if (o->def && *o->def)
			printf(" (default: %s)", o->def);
		printf("\n");
	}
	printf("  --%-22s %-24s %s\n", "help", "", "print this help and exit");
}

int sb_config_parse(int argc, char **argv, const struct sb_opt *opts, const char *usage)
{
	for (const struct sb_opt *o = opts; o->flag; o++)
		if (o->def && set_value(o, o->def, "default") < 0)
			return -1;
	for (const struct sb_opt *o = opts; o->flag; o++) {
		const char *v = o->env ? getenv(o->env) : NULL;
		if (v && set_value(o, v, o->env) < 0)
			return -1;
	}
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || a[1] != '-')
			break;
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "--help")) {
			sb_config_help(opts, usage);
			return 0;
		}
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const struct sb_opt *o = opts;
		for (; o->flag; o++)
			if (strlen(o->flag) == nlen && !strncmp(o->flag, name, nlen))
				break;
		if (!o->flag) {
			fprintf(stderr, "error: unknown option %s (see --help)\n", a);
			return -1;
		}
		const char *val;
		if (eq)
			val = eq + 1;
		else if (o->type == SB_OPT_BOOL)
			val = "true";
		else if (i + 1 < argc)
			val = argv[++i];
		else {
			fprintf(stderr, "error: option --%s needs a value\n", o->flag);
			return -1;
		}
		if (set_value(o, val, "flag") < 0)
			return -1;
	}
	return i;
}
