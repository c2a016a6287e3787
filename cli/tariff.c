/*
 * opsnctl tariff: add a version from an INI or JSON file (the INI form is
 * turned into the API's JSON here, see ops/tariff.sample.ini), list, show,
 * make one the default, give an open-ended version its last day, bind a
 * member to one. Amounts stay decimal strings end to end: the controller
 * parses them exactly.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>
#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define TARIFF_FILE_MAX	(1024 * 1024)

static char	*tariff_fmt_delib(json_t *);
static char	*tariff_fmt_default(json_t *);

static const struct format_col tariff_cols[] = {
	{ "NAME",		"name",			NULL },
	{ "VERSION",		"version",		NULL },
	{ "FROM",		"effective_from",	NULL },
	{ "TO",			"effective_to",		NULL },
	{ "DELIBERATION",	"deliberation",		tariff_fmt_delib },
	{ "DEFAULT",		"default",		tariff_fmt_default },
	{ "MEMBERS",		"bound_members",	NULL },
};

/* "2026-031 (2026-09-24)" */
static char *
tariff_fmt_delib(json_t *v)
{
	char	*n, *d, *s;

	if (!json_is_object(v))
		return (format_value(v));
	n = format_value(json_object_get(v, "number"));
	d = format_value(json_object_get(v, "date"));
	xasprintf(&s, "%s (%s)", n, d);
	free(n);
	free(d);
	return (s);
}

static char *
tariff_fmt_default(json_t *v)
{
	return (xstrdup(json_is_true(v) ? "yes" : "-"));
}

/* ---- the INI form ---- */

struct tariff_ini {
	json_t	*doc;
	char	*error;
};

/* "S:0.0040 M:0.0050 L:0.0060" -> {"S": "0.0040", ...}; else the string. */
static json_t *
tariff_ini_banded(const char *value, char **error)
{
	json_t	*o;
	char	*copy, *tok, *save = NULL, *colon;

	if (strchr(value, ':') == NULL)
		return (json_string(value));
	o = json_object();
	copy = xstrdup(value);
	for (tok = strtok_r(copy, " \t", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t", &save)) {
		if ((colon = strchr(tok, ':')) == NULL || colon == tok ||
		    colon[1] == '\0') {
			xasprintf(error, "'%s' is not BAND:AMOUNT", tok);
			json_decref(o);
			o = NULL;
			break;
		}
		*colon = '\0';
		if (json_object_get(o, tok) != NULL) {
			xasprintf(error, "band %s is given twice", tok);
			json_decref(o);
			o = NULL;
			break;
		}
		json_object_set_new(o, tok, json_string(colon + 1));
	}
	free(copy);
	return (o);
}

static int
tariff_ini_cb(void *arg, const char *section, const char *name,
    const char *value)
{
	static const char *const plain[] = { "name", "deliberation_number",
	    "deliberation_date", "effective_from", "effective_to", "currency",
	    "default", "monthly_fee", "contribution_per_inhabitant", NULL };
	struct tariff_ini *ti = arg;
	const char *const *k;
	json_t		*o, *v, *bands;
	char		*error = NULL;

	/* inih goes on after an error and reports the first one's line. */
	if (ti->error != NULL)
		return (0);

	if (strcmp(section, "tariff") == 0) {
		for (k = plain; *k != NULL; k++)
			if (strcmp(*k, name) == 0)
				break;
		if (*k == NULL) {
			xasprintf(&ti->error, "[tariff]: unknown key '%s'",
			    name);
			return (0);
		}
		if (strncmp(name, "deliberation_", 13) == 0) {
			if ((o = json_object_get(ti->doc, "deliberation")) ==
			    NULL) {
				o = json_object();
				json_object_set_new(ti->doc, "deliberation", o);
			}
			json_object_set_new(o, name + 13, json_string(value));
		} else if (strcmp(name, "default") == 0) {
			if (strcmp(value, "yes") == 0 ||
			    strcmp(value, "true") == 0)
				json_object_set_new(ti->doc, name, json_true());
			else if (strcmp(value, "no") == 0 ||
			    strcmp(value, "false") == 0)
				json_object_set_new(ti->doc, name,
				    json_false());
			else {
				xasprintf(&ti->error, "[tariff] default: give "
				    "yes or no");
				return (0);
			}
		} else if (strcmp(name, "effective_to") == 0 && *value == '\0')
			json_object_set_new(ti->doc, name, json_null());
		else if (strcmp(name, "monthly_fee") == 0 ||
		    strcmp(name, "contribution_per_inhabitant") == 0) {
			if ((v = tariff_ini_banded(value, &error)) == NULL)
				goto bad;
			json_object_set_new(ti->doc, name, v);
		} else
			json_object_set_new(ti->doc, name, json_string(value));
		return (1);
	}
	if (strcmp(section, "bands") == 0) {
		if ((bands = json_object_get(ti->doc, "bands")) == NULL) {
			bands = json_array();
			json_object_set_new(ti->doc, "bands", bands);
		}
		if (*value == '\0')
			o = json_pack("{s:s}", "name", name);
		else {
			char		*end;
			long long	 max = strtoll(value, &end, 10);

			if (!isdigit((unsigned char)*value) || *end != '\0') {
				xasprintf(&ti->error, "[bands] %s: give the "
				    "largest population of the band, or "
				    "nothing for the last band", name);
				return (0);
			}
			o = json_pack("{s:s,s:I}", "name", name, "max",
			    (json_int_t)max);
		}
		json_array_append_new(bands, o);
		return (1);
	}
	if (strcmp(section, "rates") == 0 ||
	    strcmp(section, "allowances") == 0) {
		if ((o = json_object_get(ti->doc, section)) == NULL) {
			o = json_object();
			json_object_set_new(ti->doc, section, o);
		}
		if (json_object_get(o, name) != NULL) {
			xasprintf(&ti->error, "[%s] %s is given twice", section,
			    name);
			return (0);
		}
		if ((v = tariff_ini_banded(value, &error)) == NULL)
			goto bad;
		json_object_set_new(o, name, v);
		return (1);
	}
	xasprintf(&ti->error, "unknown section [%s] (tariff, bands, rates, "
	    "allowances)", section);
	return (0);
bad:
	xasprintf(&ti->error, "[%s] %s: %s", section, name, error);
	free(error);
	return (0);
}

/* The API's JSON for a tariff file (INI or JSON); NULL after printing why. */
static json_t *
tariff_file(const char *path)
{
	struct tariff_ini ti;
	json_error_t	 jerr;
	json_t		*doc;
	char		*text, *cause, *clean;
	const char	*p;
	int		 line;

	if (util_read_file(path, TARIFF_FILE_MAX, &text, NULL, &cause) == -1) {
		fprintf(stderr, "opsnctl: %s\n", cause);
		free(cause);
		return (NULL);
	}
	clean = format_clean(path);
	for (p = text; isspace((unsigned char)*p); p++)
		;
	if (*p == '{') {
		if ((doc = json_loads(text, 0, &jerr)) == NULL)
			fprintf(stderr, "opsnctl: %s:%d: %s\n", clean,
			    jerr.line, jerr.text);
		free(text);
		free(clean);
		return (doc);
	}
	ti.doc = json_object();
	ti.error = NULL;
	if ((line = ini_parse_string(text, tariff_ini_cb, &ti)) != 0) {
		fprintf(stderr, "opsnctl: %s:%d: %s\n", clean, line,
		    ti.error ? ti.error : "not an INI or JSON tariff");
		json_decref(ti.doc);
		ti.doc = NULL;
	}
	free(ti.error);
	free(text);
	free(clean);
	return (ti.doc);
}

/* Print a version readably. */
static void
tariff_print_banded(const char *label, json_t *v)
{
	const char	*k;
	json_t		*x;
	char		*s;
	int		 same = 1;
	const char	*first = NULL;

	if (v == NULL || json_is_null(v))
		return;
	json_object_foreach(v, k, x) {
		if (first == NULL)
			first = json_string_value(x);
		else if (json_string_value(x) == NULL || first == NULL ||
		    strcmp(first, json_string_value(x)) != 0)
			same = 0;
	}
	printf("  %s:", label);
	if (same && first != NULL) {
		s = format_clean(first);
		printf(" %s\n", s);
		free(s);
		return;
	}
	json_object_foreach(v, k, x) {
		s = format_value(x);
		printf(" %s %s", k, s);
		free(s);
	}
	printf("\n");
}

static void
tariff_print_version(json_t *v)
{
	json_t		*b, *x;
	const char	*k;
	char		*s, *d, label[96];
	size_t		 i;

	s = format_value(json_object_get(v, "effective_to"));
	d = tariff_fmt_delib(json_object_get(v, "deliberation"));
	printf("version %" JSON_INTEGER_FORMAT ": from %s to %s, "
	    "deliberation %s, %s\n",
	    json_integer_value(json_object_get(v, "version")),
	    json_string_value(json_object_get(v, "effective_from")), s, d,
	    json_string_value(json_object_get(v, "currency")));
	free(s);
	free(d);
	printf("  bands:");
	json_array_foreach(json_object_get(v, "bands"), i, b) {
		x = json_object_get(b, "max");
		if (json_is_integer(x))
			printf(" %s (to %" JSON_INTEGER_FORMAT ")",
			    json_string_value(json_object_get(b, "name")),
			    json_integer_value(x));
		else
			printf(" %s", json_string_value(json_object_get(b,
			    "name")));
	}
	printf("\n");
	json_object_foreach(json_object_get(v, "rates"), k, x) {
		snprintf(label, sizeof(label), "rate %s (EUR per unit)", k);
		tariff_print_banded(label, x);
	}
	json_object_foreach(json_object_get(v, "allowances"), k, x) {
		snprintf(label, sizeof(label), "free %s per month", k);
		tariff_print_banded(label, x);
	}
	tariff_print_banded("monthly fee (EUR)",
	    json_object_get(v, "monthly_fee"));
	tariff_print_banded("contribution per inhabitant per year (EUR)",
	    json_object_get(v, "contribution_per_inhabitant"));
}

int
tariff_add(struct cli_call *call)
{
	const char	*file = cli_opt(call, "file");
	json_t		*doc, *out;

	if (file == NULL) {
		fprintf(stderr, "opsnctl: tariff add: --file is required\n");
		return (cli_usage(call));
	}
	if ((doc = tariff_file(file)) == NULL)
		return (CLI_EXIT_ERROR);
	if (cli_request("POST", "/v1/tariffs", doc, &out) == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON) {
		format_json(stdout, out);
		json_decref(out);
		return (CLI_EXIT_OK);
	}
	printf("tariff %s%s\n", json_string_value(json_object_get(out,
	    "name")), json_is_true(json_object_get(out, "default")) ?
	    " (default)" : "");
	tariff_print_version(out);
	json_decref(out);
	return (CLI_EXIT_OK);
}

int
tariff_list(struct cli_call *call)
{
	(void)call;
	return (cli_show_list("/v1/tariffs", tariff_cols, nitems(tariff_cols)));
}

int
tariff_show(struct cli_call *call)
{
	const char	*version = cli_opt(call, "version");
	const char	*kv[] = { "version", version, NULL };
	char		*e, *base, *path;
	json_t		*t, *v;
	size_t		 i;
	int		 rc;

	e = cli_escape(call->ca_argv[0]);
	xasprintf(&base, "/v1/tariffs/%s", e);
	path = cli_path_query(base, kv);
	rc = cli_request("GET", path, NULL, &t);
	free(e);
	free(base);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON) {
		format_json(stdout, t);
		json_decref(t);
		return (CLI_EXIT_OK);
	}
	printf("tariff %s%s\n", json_string_value(json_object_get(t, "name")),
	    json_is_true(json_object_get(t, "default")) ? " (default)" : "");
	json_array_foreach(json_object_get(t, "versions"), i, v)
		tariff_print_version(v);
	json_decref(t);
	return (CLI_EXIT_OK);
}

int
tariff_default(struct cli_call *call)
{
	char	*e, *path;
	int	 rc;

	e = cli_escape(call->ca_argv[0]);
	xasprintf(&path, "/v1/tariffs/%s/default", e);
	rc = cli_request("POST", path, NULL, NULL);
	free(e);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (!cli_conf.cc_quiet)
		printf("tariff %s is the default\n", call->ca_argv[0]);
	return (CLI_EXIT_OK);
}

int
tariff_end(struct cli_call *call)
{
	const char	*on = cli_opt(call, "on");
	int64_t		 version;
	char		*e, *path, *cause;
	int		 rc;

	if (on == NULL) {
		fprintf(stderr, "opsnctl: tariff end: --on DATE (the last day "
		    "of the version) is required\n");
		return (cli_usage(call));
	}
	if (format_parse_count(call->ca_argv[1], 1, INT32_MAX, &version,
	    &cause) == -1) {
		fprintf(stderr, "opsnctl: VERSION: %s\n", cause);
		free(cause);
		return (cli_usage(call));
	}
	e = cli_escape(call->ca_argv[0]);
	xasprintf(&path, "/v1/tariffs/%s/end", e);
	rc = cli_request("POST", path, json_pack("{s:I,s:s}", "version",
	    (json_int_t)version, "effective_to", on), NULL);
	free(e);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (!cli_conf.cc_quiet)
		printf("tariff %s version %lld ends on %s\n", call->ca_argv[0],
		    (long long)version, on);
	return (CLI_EXIT_OK);
}

int
tariff_bind(struct cli_call *call)
{
	const char	*name = call->ca_argv[1];
	char		*e, *path;
	json_t		*out;
	int		 rc;

	e = cli_escape(call->ca_argv[0]);
	xasprintf(&path, "/v1/tenants/%s/tariff", e);
	rc = cli_request("POST", path, json_pack("{s:o}", "tariff",
	    strcmp(name, "default") == 0 ? json_null() : json_string(name)),
	    &out);
	free(e);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, out);
	else if (!cli_conf.cc_quiet) {
		e = format_value(json_object_get(out, "effective"));
		printf("%s: billed with tariff %s%s\n", call->ca_argv[0], e,
		    json_is_null(json_object_get(out, "tariff")) ?
		    " (the default)" : "");
		free(e);
	}
	json_decref(out);
	return (CLI_EXIT_OK);
}
