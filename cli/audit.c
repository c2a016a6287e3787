/*
 * opsnctl audit: read the controller's audit trail (one record per change,
 * who, what, when) and have it check the trail's hash chain.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define AUDIT_SUMMARY_MIN	20	/* columns left to a summary, at least */
#define AUDIT_GAP		2	/* as format_table puts between columns */

static char	*audit_fmt_summary(json_t *);

/* SUMMARY last: on a terminal it is cut to the width that remains. */
static const struct format_col audit_cols[] = {
	{ "ID",		"id",		NULL },
	{ "AT",		"at",		NULL },
	{ "TOKEN",	"token",	NULL },
	{ "ROLE",	"role",		NULL },
	{ "ACTION",	"action",	NULL },
	{ "OBJECT",	"object",	NULL },
	{ "SUMMARY",	"summary",	audit_fmt_summary },
};

static char	*audit_since(const char *);
static void	 audit_fit(json_t *, size_t);

/* The summary as compact JSON; a string is one already cut to fit. */
static char *
audit_fmt_summary(json_t *v)
{
	char	*s, *out;

	if (v == NULL || json_is_string(v))
		return (format_value(v));
	if ((s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS |
	    JSON_ENCODE_ANY)) == NULL)
		return (xstrdup("?"));
	out = format_clean(s);
	free(s);
	return (out);
}

/*
 * --since as the API takes it: a date or time as is, or a duration ("7d")
 * as the unix time that long ago; caller frees.
 */
static char *
audit_since(const char *since)
{
	char	*cause = NULL, *s;
	int64_t	 secs;
	size_t	 len = strlen(since);

	if (len > 1 && strchr("smhd", since[len - 1]) != NULL &&
	    util_parse_duration(since, &secs, &cause) == 0) {
		xasprintf(&s, "%" PRId64, util_now() - secs);
		return (s);
	}
	free(cause);
	return (xstrdup(since));
}

/*
 * Replace each item's summary by its text cut to what a terminal of cols
 * columns leaves after the other columns, so that a row stays one line.
 */
static void
audit_fit(json_t *items, size_t cols)
{
	json_t	*item;
	size_t	 i, c, w, used = 0, budget, n;
	char	*s, *p;

	for (c = 0; c + 1 < nitems(audit_cols); c++) {
		w = format_width(audit_cols[c].fc_header);
		json_array_foreach(items, i, item) {
			s = format_value(json_object_get(item,
			    audit_cols[c].fc_key));
			if (format_width(s) > w)
				w = format_width(s);
			free(s);
		}
		used += w + AUDIT_GAP;
	}
	budget = cols > used + AUDIT_SUMMARY_MIN ? cols - used :
	    AUDIT_SUMMARY_MIN;
	json_array_foreach(items, i, item) {
		s = audit_fmt_summary(json_object_get(item, "summary"));
		if (format_width(s) > budget) {
			/* Cut after budget - 3 code points, then "...". */
			for (p = s, n = 0; *p != '\0'; p++) {
				if (((unsigned char)*p & 0xc0) != 0x80 &&
				    n++ == budget - 3)
					break;
			}
			strcpy(p, "...");
		}
		json_object_set_new(item, "summary", json_string(s));
		free(s);
	}
}

int
audit_list(struct cli_call *call)
{
	const char	*since = cli_opt(call, "since");
	const char	*q[] = { "since", NULL, "object", cli_opt(call,
			    "object"), NULL };
	json_t		*list, *items;
	char		*path, *s = NULL;
	size_t		 cols;
	int		 rc;

	if (since != NULL)
		q[1] = s = audit_since(since);
	path = cli_path_query("/v1/audit", q);
	rc = cli_list(path, &list);
	free(path);
	free(s);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	items = json_object_get(list, "items");
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, list);
	else {
		if ((cols = cli_columns(STDOUT_FILENO)) > 0)
			audit_fit(items, cols);
		format_table(stdout, audit_cols, nitems(audit_cols), items);
	}
	json_decref(list);
	return (CLI_EXIT_OK);
}

/* The trail is the evidence: a broken one is the command's failure. */
int
audit_verify(struct cli_call *call)
{
	json_t		*reply;
	const char	*why;
	char		*clean;
	int		 ok;

	(void)call;
	if (cli_request("GET", "/v1/audit/verify", NULL, &reply) == -1)
		return (CLI_EXIT_ERROR);
	if (!json_is_boolean(json_object_get(reply, "ok"))) {
		fprintf(stderr, "opsnctl: the reply does not say whether the "
		    "trail is intact\n");
		json_decref(reply);
		return (CLI_EXIT_ERROR);
	}
	ok = json_is_true(json_object_get(reply, "ok"));
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, reply);
	else if (ok)
		printf("audit trail intact: %" JSON_INTEGER_FORMAT " records\n",
		    json_integer_value(json_object_get(reply, "records")));
	else {
		why = json_string_value(json_object_get(reply, "reason"));
		clean = format_clean(why != NULL ? why : "no reason given");
		printf("audit trail BROKEN at record %" JSON_INTEGER_FORMAT
		    ": %s\n", json_integer_value(json_object_get(reply,
		    "first_bad")), clean);
		free(clean);
	}
	json_decref(reply);
	return (ok ? CLI_EXIT_OK : CLI_EXIT_ERROR);
}
