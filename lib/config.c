/* Table-driven configuration over inih. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "opsn/config.h"
#include "opsn/util.h"

struct cfg_load_ctx {
	const struct cfg_table	*table;
	void			*conf;
	const char		*path;
	char			*cause;
	int			 lineno;
	int			 indented;	/* the line starts with a blank */
};

static const struct cfg_option *
cfg_find(const struct cfg_table *t, const char *section, const char *name)
{
	size_t	 i;

	for (i = 0; i < t->ct_nopts; i++) {
		if (section != NULL &&
		    strcmp(t->ct_opts[i].co_section, section) != 0)
			continue;
		if (strcmp(t->ct_opts[i].co_name, name) == 0)
			return (&t->ct_opts[i]);
	}
	return (NULL);
}

static int
cfg_section_known(const struct cfg_table *t, const char *section)
{
	size_t	 i;

	for (i = 0; i < t->ct_nopts; i++)
		if (strcmp(t->ct_opts[i].co_section, section) == 0)
			return (1);
	return (0);
}

static int
cfg_parse_ms(const char *s, int64_t *out)
{
	char		*end;
	long long	 n;
	int64_t		 mul;

	errno = 0;
	n = strtoll(s, &end, 10);
	if (end == s || errno != 0 || n < 0)
		return (-1);
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0)
		mul = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mul = 3600 * 1000;
	else if (strcmp(end, "d") == 0)
		mul = 86400 * 1000;
	else
		return (-1);
	if (n > INT64_MAX / mul)
		return (-1);
	*out = n * mul;
	return (0);
}

static int
cfg_enum_ok(const char *choices, const char *v)
{
	const char	*p = choices, *bar;
	size_t		 len = strlen(v);

	while (*p != '\0') {
		bar = strchr(p, '|');
		if (bar == NULL)
			bar = p + strlen(p);
		if ((size_t)(bar - p) == len && strncmp(p, v, len) == 0)
			return (1);
		p = *bar == '|' ? bar + 1 : bar;
	}
	return (0);
}

static int
cfg_apply(const struct cfg_option *o, void *conf, const char *value,
    char **cause)
{
	char		*base = conf, *end;
	char		**sp;
	long long	 n;
	int64_t		 ms;

	switch (o->co_type) {
	case CFG_ENUM:
		if (!cfg_enum_ok(o->co_choices, value)) {
			xasprintf(cause, "%s: '%s' is not one of %s",
			    o->co_name, value, o->co_choices);
			return (-1);
		}
		/* FALLTHROUGH */
	case CFG_STRING:
		sp = (char **)(base + o->co_offset);
		free(*sp);
		*sp = xstrdup(value);
		return (0);
	case CFG_INT:
		errno = 0;
		n = strtoll(value, &end, 10);
		if (*value == '\0' || *end != '\0' || errno != 0) {
			xasprintf(cause, "%s: '%s' is not a whole number",
			    o->co_name, value);
			return (-1);
		}
		if (n < o->co_min || n > o->co_max) {
			xasprintf(cause, "%s: %lld is out of range (%lld to "
			    "%lld)", o->co_name, n, (long long)o->co_min,
			    (long long)o->co_max);
			return (-1);
		}
		*(int64_t *)(base + o->co_offset) = n;
		return (0);
	case CFG_DURATION:
		if (cfg_parse_ms(value, &ms) == -1) {
			xasprintf(cause, "%s: '%s' is not a duration (e.g. "
			    "500ms, 30s, 15m, 1h, 7d)", o->co_name, value);
			return (-1);
		}
		if (ms < o->co_min || ms > o->co_max) {
			xasprintf(cause, "%s: %s is out of range (%lldms to "
			    "%lldms)", o->co_name, value, (long long)o->co_min,
			    (long long)o->co_max);
			return (-1);
		}
		*(int64_t *)(base + o->co_offset) = ms;
		return (0);
	case CFG_BOOL:
		if (strcasecmp(value, "yes") == 0 ||
		    strcasecmp(value, "true") == 0 ||
		    strcasecmp(value, "on") == 0 || strcmp(value, "1") == 0)
			*(int *)(base + o->co_offset) = 1;
		else if (strcasecmp(value, "no") == 0 ||
		    strcasecmp(value, "false") == 0 ||
		    strcasecmp(value, "off") == 0 || strcmp(value, "0") == 0)
			*(int *)(base + o->co_offset) = 0;
		else {
			xasprintf(cause, "%s: '%s' is not yes or no",
			    o->co_name, value);
			return (-1);
		}
		return (0);
	}
	xasprintf(cause, "%s: bad option type", o->co_name);
	return (-1);
}

/* Set every option to its default. */
void
cfg_defaults(const struct cfg_table *t, void *conf)
{
	size_t	 i;
	char	*cause = NULL;

	for (i = 0; i < t->ct_nopts; i++) {
		if (t->ct_opts[i].co_default == NULL)
			continue;
		if (cfg_apply(&t->ct_opts[i], conf, t->ct_opts[i].co_default,
		    &cause) == -1) {
			/* A bad default is a programming error. */
			fprintf(stderr, "config default: %s\n", cause);
			abort();
		}
	}
}

static int
cfg_ini_cb(void *arg, const char *section, const char *name,
    const char *value)
{
	struct cfg_load_ctx	*ctx = arg;
	const struct cfg_option	*o;
	char			*why = NULL;

	if (ctx->cause != NULL)
		return (0);
	/*
	 * inih reads an indented line as more of the option above it: the
	 * value an operator sees in the file is not the one that applies.
	 */
	if (ctx->indented) {
		xasprintf(&ctx->cause, "%s:%d: the line starts with a blank, "
		    "which would continue option '%s' above it: remove the "
		    "indentation", ctx->path, ctx->lineno, name);
		return (0);
	}
	if (*section == '\0') {
		xasprintf(&ctx->cause, "%s:%d: option '%s' is outside a "
		    "[section]", ctx->path, ctx->lineno, name);
		return (0);
	}
	if (!cfg_section_known(ctx->table, section)) {
		xasprintf(&ctx->cause, "%s:%d: unknown section [%s]",
		    ctx->path, ctx->lineno, section);
		return (0);
	}
	if ((o = cfg_find(ctx->table, section, name)) == NULL) {
		xasprintf(&ctx->cause, "%s:%d: unknown option '%s' in [%s]",
		    ctx->path, ctx->lineno, name, section);
		return (0);
	}
	if (cfg_apply(o, ctx->conf, value, &why) == -1) {
		xasprintf(&ctx->cause, "%s:%d: %s", ctx->path, ctx->lineno,
		    why);
		free(why);
		return (0);
	}
	return (1);
}

/*
 * inih reports the line of a handler failure through its return value only
 * for the first error; keep our own line count by reading line by line.
 * Two kinds of line inih would misread are refused here: one with a NUL
 * byte (inih stops at it, and what follows on the next line could pass for
 * more of the option above) and one longer than inih's buffer (the rest
 * would be read as a line of its own).
 */
static char *
cfg_reader(char *str, int num, void *stream)
{
	struct {
		FILE			*f;
		struct cfg_load_ctx	*ctx;
	} *s = stream;
	struct cfg_load_ctx	*ctx = s->ctx;
	int			 c = EOF, len = 0;

	if (ctx->cause != NULL)
		return (NULL);
	while (len < num - 1 && (c = getc(s->f)) != EOF) {
		if (c == '\0') {
			xasprintf(&ctx->cause, "%s:%d: the line holds a NUL "
			    "byte", ctx->path, ctx->lineno + 1);
			return (NULL);
		}
		str[len++] = (char)c;
		if (c == '\n')
			break;
	}
	if (len == 0)
		return (NULL);
	str[len] = '\0';
	ctx->lineno++;
	/* A full buffer: the line must end here. */
	if (len == num - 1 && c != '\n' && (c = getc(s->f)) != EOF &&
	    c != '\n') {
		xasprintf(&ctx->cause, "%s:%d: the line is longer than %d "
		    "characters", ctx->path, ctx->lineno, num - 1);
		return (NULL);
	}
	/* Any blank inih skips: a form feed or a CR continues too. */
	ctx->indented = isspace((unsigned char)str[0]);
	return (str);
}

/* Read an INI file into conf; errors name file:line. */
int
cfg_load(const struct cfg_table *t, void *conf, const char *path,
    char **cause)
{
	struct cfg_load_ctx	 ctx = { t, conf, path, NULL, 0, 0 };
	struct {
		FILE			*f;
		struct cfg_load_ctx	*ctx;
	} stream;
	int			 rv;

	if ((stream.f = fopen(path, "re")) == NULL) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	stream.ctx = &ctx;
	rv = ini_parse_stream(cfg_reader, &stream, cfg_ini_cb, &ctx);
	fclose(stream.f);
	if (ctx.cause != NULL) {
		*cause = ctx.cause;
		return (-1);
	}
	if (rv != 0) {
		xasprintf(cause, "%s:%d: syntax error (expected [section] or "
		    "key = value)", path, rv > 0 ? rv : ctx.lineno);
		return (-1);
	}
	return (0);
}

/* Set an option by name; origin ("--data-dir") prefixes the error. */
int
cfg_set(const struct cfg_table *t, void *conf, const char *name,
    const char *value, const char *origin, char **cause)
{
	const struct cfg_option	*o;
	char			*why = NULL;

	if ((o = cfg_find(t, NULL, name)) == NULL) {
		xasprintf(cause, "%s: unknown option '%s'", origin, name);
		return (-1);
	}
	if (cfg_apply(o, conf, value, &why) == -1) {
		xasprintf(cause, "%s: %s", origin, why);
		free(why);
		return (-1);
	}
	return (0);
}

/* Find the option a --flag sets, or NULL. */
const struct cfg_option *
cfg_find_flag(const struct cfg_table *t, const char *flag)
{
	size_t	 i;

	for (i = 0; i < t->ct_nopts; i++)
		if (t->ct_opts[i].co_flag != NULL &&
		    strcmp(t->ct_opts[i].co_flag, flag) == 0)
			return (&t->ct_opts[i]);
	return (NULL);
}

/* Print the effective configuration as INI, secrets masked. */
void
cfg_print(const struct cfg_table *t, const void *conf, FILE *f)
{
	const char	*base = conf, *section = "";
	size_t		 i;

	for (i = 0; i < t->ct_nopts; i++) {
		const struct cfg_option *o = &t->ct_opts[i];

		if (strcmp(o->co_section, section) != 0) {
			section = o->co_section;
			fprintf(f, "%s[%s]\n", i ? "\n" : "", section);
		}
		if (o->co_secret) {
			fprintf(f, "%s = (secret)\n", o->co_name);
			continue;
		}
		switch (o->co_type) {
		case CFG_STRING:
		case CFG_ENUM: {
			char *s = *(char *const *)(base + o->co_offset);

			/*
			 * After a blank, inih takes ';' for a comment: a value
			 * that starts with one is written against the '='.
			 */
			fprintf(f, "%s =%s%s\n", o->co_name,
			    s != NULL && *s == ';' ? "" : " ", s ? s : "");
			break;
		}
		case CFG_INT:
			fprintf(f, "%s = %lld\n", o->co_name,
			    (long long)*(const int64_t *)(base + o->co_offset));
			break;
		case CFG_DURATION:
			fprintf(f, "%s = %lldms\n", o->co_name,
			    (long long)*(const int64_t *)(base + o->co_offset));
			break;
		case CFG_BOOL:
			fprintf(f, "%s = %s\n", o->co_name,
			    *(const int *)(base + o->co_offset) ? "yes" : "no");
			break;
		}
	}
}

/* Free the strings held by conf. */
void
cfg_free(const struct cfg_table *t, void *conf)
{
	char	*base = conf;
	size_t	 i;

	for (i = 0; i < t->ct_nopts; i++) {
		if (t->ct_opts[i].co_type != CFG_STRING &&
		    t->ct_opts[i].co_type != CFG_ENUM)
			continue;
		char **sp = (char **)(base + t->ct_opts[i].co_offset);
		free(*sp);
		*sp = NULL;
	}
}

/* Parse argv; table flags are collected, short options go to shortcb. */
int
cfg_getopt(const struct cfg_table *t, int argc, char **argv,
    const char *shortopts, void (*shortcb)(int, const char *, void *),
    void *arg, struct cfg_args *args)
{
	struct option	*lopts;
	size_t		 i, n = 0;
	int		 ch, idx;

	memset(args, 0, sizeof(*args));
	args->ca_idx = xcalloc((size_t)argc, sizeof(*args->ca_idx));
	args->ca_val = xcalloc((size_t)argc, sizeof(*args->ca_val));
	lopts = xcalloc(t->ct_nopts + 3, sizeof(*lopts));
	for (i = 0; i < t->ct_nopts; i++) {
		if (t->ct_opts[i].co_flag == NULL)
			continue;
		lopts[n].name = t->ct_opts[i].co_flag;
		lopts[n].has_arg = required_argument;
		lopts[n].val = 1000 + (int)i;
		n++;
	}
	lopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	lopts[n++] = (struct option){ "version", no_argument, NULL, 'V' };
	optind = 1;
	while ((ch = getopt_long(argc, argv, shortopts, lopts, &idx)) != -1) {
		if (ch >= 1000) {
			args->ca_idx[args->ca_n] = ch - 1000;
			args->ca_val[args->ca_n] = optarg;
			args->ca_n++;
			continue;
		}
		if (ch == '?' || ch == ':') {
			free(lopts);
			return (-1);
		}
		shortcb(ch, optarg, arg);
	}
	free(lopts);
	return (optind);
}

/* Apply collected flags over conf, then free them. */
int
cfg_apply_args(const struct cfg_table *t, void *conf, struct cfg_args *args,
    char **cause)
{
	int	 i, rv = 0;
	char	*origin;

	for (i = 0; i < args->ca_n && rv == 0; i++) {
		const struct cfg_option *o = &t->ct_opts[args->ca_idx[i]];

		xasprintf(&origin, "--%s", o->co_flag);
		rv = cfg_set(t, conf, o->co_name, args->ca_val[i], origin,
		    cause);
		free(origin);
	}
	free(args->ca_idx);
	free(args->ca_val);
	memset(args, 0, sizeof(*args));
	return (rv);
}

/* Print the table's flags with their help. */
void
cfg_usage(const struct cfg_table *t, FILE *f)
{
	size_t	 i;

	for (i = 0; i < t->ct_nopts; i++)
		if (t->ct_opts[i].co_flag != NULL)
			fprintf(f, "  --%-22s %s\n", t->ct_opts[i].co_flag,
			    t->ct_opts[i].co_help);
}
