/*
 * opsnctl token: API tokens with a role (admin, operator, finance,
 * auditor), maybe scoped to one tenant. The controller keeps only their
 * hashes: a token is shown once, when it is created.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

static const char *const token_roles[] = {
	"admin", "operator", "finance", "auditor"
};

static char	*token_fmt_revoked(json_t *);

static const struct format_col token_cols[] = {
	{ "NAME",	"name",		NULL },
	{ "ROLE",	"role",		NULL },
	{ "TENANT",	"tenant",	NULL },
	{ "CREATED",	"created_at",	format_age },
	{ "EXPIRES",	"expires_at",	format_expiry },
	{ "REVOKED",	"revoked_at",	token_fmt_revoked },
};

static char *
token_fmt_revoked(json_t *v)
{
	return (json_is_null(v) ? xstrdup("-") : format_age(v));
}

/*
 * Only the token goes to stdout, so that T=$(opsnctl token create ...)
 * works; the warning that it is shown once is for a person, on stderr
 * when that is a terminal.
 */
int
token_create(struct cli_call *call)
{
	const char	*name = cli_opt(call, "name"), *role = cli_opt(call,
			    "role"), *ttl = cli_opt(call, "ttl"), *v, *token;
	json_t		*body, *reply;
	char		*cause = NULL, *clean;
	int64_t		 secs;
	size_t		 i;

	if (name == NULL || role == NULL) {
		fprintf(stderr, "opsnctl: token create: --name and --role are "
		    "required\n");
		return (cli_usage(call));
	}
	for (i = 0; i < nitems(token_roles); i++) {
		if (strcmp(role, token_roles[i]) == 0)
			break;
	}
	if (i == nitems(token_roles)) {
		fprintf(stderr, "opsnctl: --role: '%s' is not admin, operator, "
		    "finance or auditor\n", role);
		return (cli_usage(call));
	}
	if (ttl != NULL && (util_parse_duration(ttl, &secs, &cause) == -1 ||
	    secs == 0)) {
		fprintf(stderr, "opsnctl: --ttl: %s\n", cause != NULL ? cause :
		    "must be longer than 0");
		free(cause);
		return (cli_usage(call));
	}
	body = json_pack("{s:s,s:s}", "name", name, "role", role);
	if ((v = cli_opt(call, "tenant")) != NULL)
		json_object_set_new(body, "tenant", json_string(v));
	if (ttl != NULL)
		json_object_set_new(body, "ttl", json_string(ttl));
	if (cli_request("POST", "/v1/tokens", body, &reply) == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON) {
		format_json(stdout, reply);
		json_decref(reply);
		return (CLI_EXIT_OK);
	}
	if ((token = json_string_value(json_object_get(reply, "token"))) ==
	    NULL) {
		fprintf(stderr, "opsnctl: the reply holds no token\n");
		json_decref(reply);
		return (CLI_EXIT_ERROR);
	}
	printf("%s\n", token);
	if (!cli_conf.cc_quiet && isatty(STDERR_FILENO)) {
		v = json_string_value(json_object_get(reply, "expires_at"));
		clean = format_clean(v != NULL ? v : "never");
		fprintf(stderr, "opsnctl: this token is shown only once: keep "
		    "it now (it expires %s%s)\n", v != NULL ? "at " : "",
		    clean);
		free(clean);
	}
	json_decref(reply);
	return (CLI_EXIT_OK);
}

int
token_list(struct cli_call *call)
{
	(void)call;
	return (cli_show_list("/v1/tokens", token_cols, nitems(token_cols)));
}

int
token_revoke(struct cli_call *call)
{
	json_t	*reply;
	char	*e, *path, *name;
	int	 rc;

	e = cli_escape(call->ca_argv[0]);
	xasprintf(&path, "/v1/tokens/%s/revoke", e);
	free(e);
	rc = cli_request("POST", path, json_object(), &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, reply);
	else if (!cli_conf.cc_quiet) {
		name = format_clean(call->ca_argv[0]);
		printf("token %s: revoked\n", name);
		free(name);
	}
	json_decref(reply);
	return (CLI_EXIT_OK);
}
