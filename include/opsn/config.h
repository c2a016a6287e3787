/*
 * Configuration: INI files read with inih, described by one option table
 * per program. Each option has a type, bounds, a default and a secret flag;
 * command-line flags override the file through the same table.
 */
#ifndef OPSN_CONFIG_H
#define OPSN_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type {
	CFG_STRING,	/* char * (owned by the config struct) */
	CFG_INT,	/* int64_t within [min, max] */
	CFG_BOOL,	/* int: yes/no, true/false, on/off, 1/0 */
	CFG_DURATION,	/* int64_t milliseconds; "30s", "15m", "1h", "500ms" */
	CFG_ENUM,	/* char *, one of the '|'-separated words in choices */
};

struct cfg_option {
	const char	*co_section;	/* INI section, e.g. "controller" */
	const char	*co_name;	/* key, e.g. "api_listen" */
	enum cfg_type	 co_type;
	size_t		 co_offset;	/* offsetof() into the program's struct */
	const char	*co_default;	/* as text, NULL = unset */
	int64_t		 co_min, co_max;	/* CFG_INT, CFG_DURATION (ms) */
	const char	*co_choices;	/* CFG_ENUM: "hypervisor|mail|web" */
	int		 co_secret;	/* never printed */
	const char	*co_flag;	/* command-line --flag, or NULL */
	const char	*co_help;
};

struct cfg_table {
	const struct cfg_option	*ct_opts;
	size_t			 ct_nopts;
};

/* Set every option to its default. */
void	cfg_defaults(const struct cfg_table *, void *conf);
/*
 * Read an INI file into conf. Unknown sections or keys and bad values are
 * errors naming file:line; *cause is set and conf may be partly changed.
 */
int	cfg_load(const struct cfg_table *, void *conf, const char *path,
	    char **cause);
/* Set an option by name (for command-line flags); origin names the source. */
int	cfg_set(const struct cfg_table *, void *conf, const char *name,
	    const char *value, const char *origin, char **cause);
/* Find the option a --flag sets, or NULL. */
const struct cfg_option *cfg_find_flag(const struct cfg_table *, const char *);
/* Command-line --flags collected by cfg_getopt, applied after the file. */
struct cfg_args {
	int	 ca_n;
	int	*ca_idx;	/* option index in the table */
	char	**ca_val;
};

/*
 * Parse argv with getopt_long: the table's flags are collected into args,
 * "help" and "version" map to 'h' and 'V', and other short options (from
 * shortopts) go to shortcb. Returns the index of the first operand, or -1
 * on an unknown option.
 */
int	cfg_getopt(const struct cfg_table *, int argc, char **argv,
	    const char *shortopts, void (*shortcb)(int, const char *, void *),
	    void *arg, struct cfg_args *args);
/* Apply collected flags over conf, then free them. */
int	cfg_apply_args(const struct cfg_table *, void *conf, struct cfg_args *,
	    char **cause);
/* Print the table's flags with their help, for usage(). */
void	cfg_usage(const struct cfg_table *, FILE *);

/* Print the effective configuration as INI; secrets are masked. */
void	cfg_print(const struct cfg_table *, const void *conf, FILE *);
/* Free the strings held by conf. */
void	cfg_free(const struct cfg_table *, void *conf);

#endif
