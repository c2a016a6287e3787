/*
 * opsnctl adjustment: corrections an operator enters for a member (a
 * credit is negative). Each lands on the member's earliest open statement,
 * at once if it has one, else when the next period is generated. The
 * amount is sent as the decimal string given: the controller parses it
 * exactly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

static char	*adjustment_fmt_tenant(json_t *);

static const struct format_col adjustment_cols[] = {
	{ "ID",		"id",			NULL },
	{ "TENANT",	"tenant",		adjustment_fmt_tenant },
	{ "AMOUNT",	"amount",		NULL },
	{ "CORRECTS",	"corrects_period",	NULL },
	{ "STATE",	"state",		NULL },
	{ "STATEMENT",	"statement",		NULL },
	{ "REASON",	"reason",		NULL },
};

static const struct format_col adjustment_fields[] = {
	{ "id",			"id",			NULL },
	{ "tenant",		"tenant",		adjustment_fmt_tenant },
	{ "amount (EUR)",	"amount",		NULL },
	{ "reason",		"reason",		NULL },
	{ "corrects",		"corrects_period",	NULL },
	{ "state",		"state",		NULL },
	{ "statement",		"statement",		NULL },
	{ "statement period",	"statement_period",	NULL },
	{ "created-at",		"created_at",		format_time },
	{ "created-by",		"created_by",		NULL },
};

/* "31001 (Agassac)" */
static char *
adjustment_fmt_tenant(json_t *t)
{
	json_t	*ref;
	char	*r, *n, *s;

	if (!json_is_object(t))
		return (format_value(t));
	ref = json_object_get(t, "insee");
	if (!json_is_string(ref))
		ref = json_object_get(t, "siren");
	if (!json_is_string(ref))
		ref = json_object_get(t, "id");
	r = format_value(ref);
	n = format_value(json_object_get(t, "name"));
	xasprintf(&s, "%s (%s)", r, n);
	free(r);
	free(n);
	return (s);
}

int
adjustment_add(struct cli_call *call)
{
	const char	*tenant = cli_opt(call, "tenant");
	const char	*amount = cli_opt(call, "amount");
	const char	*reason = cli_opt(call, "reason");
	const char	*period = cli_opt(call, "period");
	json_t		*body, *out;

	if (tenant == NULL || amount == NULL || reason == NULL) {
		fprintf(stderr, "opsnctl: adjustment add: --tenant, --amount "
		    "and --reason are required\n");
		return (cli_usage(call));
	}
	body = json_pack("{s:s,s:s,s:s}", "tenant", tenant, "amount", amount,
	    "reason", reason);
	if (period != NULL)
		json_object_set_new(body, "period", json_string(period));
	if (cli_request("POST", "/v1/adjustments", body, &out) == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(out, adjustment_fields,
	    nitems(adjustment_fields)));
}

int
adjustment_list(struct cli_call *call)
{
	const char	*kv[] = { "tenant", cli_opt(call, "tenant"), "pending",
	    cli_opt(call, "pending") != NULL ? "1" : NULL, NULL };
	char		*path;
	int		 rc;

	path = cli_path_query("/v1/adjustments", kv);
	rc = cli_show_list(path, adjustment_cols, nitems(adjustment_cols));
	free(path);
	return (rc);
}
