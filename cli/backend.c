/*
 * opsnctl backend: the mail and web backends (nodes whose agent has role
 * mail or web), their load and how far they have applied their desired
 * state; set the public name their mail domains' MX records give.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

static char	*backend_fmt_gen(json_t *);

static const struct format_col backend_cols[] = {
	{ "NAME",	"name",		NULL },
	{ "ROLES",	"roles",	NULL },
	{ "STATE",	"state",	NULL },
	{ "DOMAINS",	"domains",	NULL },
	{ "MAILBOXES",	"mailboxes",	NULL },
	{ "SITES",	"sites",	NULL },
	{ "STORAGE",	"storage_bytes", format_size },
	{ "APPLIED",	"applied",	NULL },
	{ "PENDING",	"pending_changes", NULL },
	{ "FAILED",	"failed_changes", NULL },
};

static const struct format_col backend_fields[] = {
	{ "name",		"name",			NULL },
	{ "roles",		"roles",		NULL },
	{ "state",		"state",		NULL },
	{ "ready",		"ready",		NULL },
	{ "hostname",		"hostname",		NULL },
	{ "public-name",	"public_name",		NULL },
	{ "mail-hostname",	"mail_hostname",	NULL },
	{ "certificate",	"certificate",		format_cert },
	{ "domains",		"domains",		NULL },
	{ "mailboxes",		"mailboxes",		NULL },
	{ "aliases",		"aliases",		NULL },
	{ "sites",		"sites",		NULL },
	{ "storage",		"storage_bytes",	format_size_exact },
	{ "generation",		"applied",		NULL },
	{ "last-error",		"last_error",		NULL },
	{ "reported-at",	"reported_at",		format_time },
	{ "pending-changes",	"pending_changes",	NULL },
	{ "failed-changes",	"failed_changes",	NULL },
};

/* "5/7": applied of generation. */
static char *
backend_fmt_gen(json_t *b)
{
	char	*s;

	xasprintf(&s, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
	    json_integer_value(json_object_get(b, "applied_generation")),
	    json_integer_value(json_object_get(b, "generation")));
	return (s);
}

/* Add the computed "applied" cell to a backend object. */
static void
backend_flatten(json_t *b)
{
	char	*g = backend_fmt_gen(b);

	json_object_set_new(b, "applied", json_string(g));
	free(g);
}

int
backend_list(struct cli_call *call)
{
	json_t	*list, *b;
	size_t	 i;

	if (cli_list("/v1/backends", &list) == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, list);
	else {
		json_array_foreach(json_object_get(list, "items"), i, b)
			backend_flatten(b);
		format_table(stdout, backend_cols, nitems(backend_cols),
		    json_object_get(list, "items"));
	}
	json_decref(list);
	return (CLI_EXIT_OK);
}

static int
backend_print(json_t *b)
{
	if (cli_conf.cc_output != CLI_OUTPUT_JSON && json_is_object(b))
		backend_flatten(b);
	return (cli_show_object(b, backend_fields, nitems(backend_fields)));
}

int
backend_show(struct cli_call *call)
{
	json_t	*b;
	char	*e, *path;
	int	 rc;

	e = cli_escape(call->ca_argv[0]);
	xasprintf(&path, "/v1/backends/%s", e);
	free(e);
	rc = cli_request("GET", path, NULL, &b);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (backend_print(b));
}

int
backend_set(struct cli_call *call)
{
	const char	*pub = cli_opt(call, "mail-hostname");
	json_t		*b;
	char		*e, *path;
	int		 rc;

	if (pub == NULL)
		pub = cli_opt(call, "public-name");
	if (pub == NULL) {
		fprintf(stderr, "opsnctl: backend set: nothing to change\n");
		return (cli_usage(call));
	}
	e = cli_escape(call->ca_argv[0]);
	xasprintf(&path, "/v1/backends/%s", e);
	free(e);
	rc = cli_request("PATCH", path, json_pack("{s:s}", "public_name",
	    strcmp(pub, "none") == 0 ? "" : pub), &b);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (backend_print(b));
}
