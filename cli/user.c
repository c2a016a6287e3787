/*
 * opsnctl user: accounts of the web console, with the same roles and
 * member scopes as API tokens. A new account gets a one-time link on
 * which its owner chooses the password (printed alone on stdout, so that
 * L=$(opsnctl user add ...) works), or its password from standard input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define USER_PASSWORD_MAX	1024

static char	*user_fmt_tenant(json_t *);

static const struct format_col user_cols[] = {
	{ "NAME",	"name",		NULL },
	{ "ROLE",	"role",		NULL },
	{ "TENANT",	"tenant",	user_fmt_tenant },
	{ "STATUS",	"status",	NULL },
	{ "TOTP",	"totp",		NULL },
	{ "LAST-LOGIN",	"last_login_at", format_age },
};

/* A member as its INSEE code, SIREN or id; "-" for none. */
static char *
user_fmt_tenant(json_t *v)
{
	const char	*s;

	if (!json_is_object(v))
		return (xstrdup("-"));
	if ((s = json_string_value(json_object_get(v, "insee"))) != NULL ||
	    (s = json_string_value(json_object_get(v, "siren"))) != NULL)
		return (format_clean(s));
	return (format_value(json_object_get(v, "id")));
}

/*
 * Print the one-time link of reply: the console's /setup page with the
 * secret in the fragment, which the browser never sends anywhere.
 */
static int
user_print_link(json_t *reply)
{
	const char	*tok = json_string_value(json_object_get(reply,
			    "setup_token"));
	const char	*until = json_string_value(json_object_get(reply,
			    "setup_expires_at"));
	char		*clean;

	if (tok == NULL) {
		fprintf(stderr, "opsnctl: the reply holds no link\n");
		return (CLI_EXIT_ERROR);
	}
	printf("%s/setup#token=%s\n", cli_conf.cc_url, tok);
	if (!cli_conf.cc_quiet && isatty(STDERR_FILENO)) {
		clean = format_clean(until != NULL ? until : "?");
		fprintf(stderr, "opsnctl: hand this link to its owner: it sets "
		    "the password once, until %s\n", clean);
		free(clean);
	}
	return (CLI_EXIT_OK);
}

int
user_add(struct cli_call *call)
{
	const char	*role = cli_opt(call, "role"), *v;
	json_t		*body, *reply;
	char		*pw = NULL, *name;
	int		 rc;

	if (role == NULL) {
		fprintf(stderr, "opsnctl: user add: --role is required\n");
		return (cli_usage(call));
	}
	body = json_pack("{s:s,s:s}", "name", call->ca_argv[0], "role", role);
	if ((v = cli_opt(call, "tenant")) != NULL)
		json_object_set_new(body, "tenant", json_string(v));
	if ((v = cli_opt(call, "email")) != NULL)
		json_object_set_new(body, "email", json_string(v));
	if (cli_opt(call, "password-stdin") != NULL) {
		if ((pw = cli_read_password(USER_PASSWORD_MAX)) == NULL) {
			json_decref(body);
			return (CLI_EXIT_ERROR);
		}
		json_object_set_new(body, "password", json_string(pw));
	}
	rc = cli_request("POST", "/v1/users", body, &reply);
	if (pw != NULL) {
		explicit_bzero(pw, strlen(pw));
		free(pw);
	}
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, reply);
	else if (json_object_get(reply, "setup_token") != NULL)
		rc = user_print_link(reply);
	else if (!cli_conf.cc_quiet) {
		name = format_clean(call->ca_argv[0]);
		printf("user %s: added with its password\n", name);
		free(name);
	}
	json_decref(reply);
	return (rc == -1 ? CLI_EXIT_ERROR : rc);
}

int
user_list(struct cli_call *call)
{
	const char	*kv[] = { "tenant", cli_opt(call, "tenant"), NULL };
	char		*path = cli_path_query("/v1/users", kv);
	int		 rc;

	rc = cli_show_list(path, user_cols, nitems(user_cols));
	free(path);
	return (rc);
}

/* The account's path, with what follows ("/reset"); caller frees. */
static char *
user_path(struct cli_call *call, const char *tail)
{
	char	*e = cli_escape(call->ca_argv[0]), *path;

	xasprintf(&path, "/v1/users/%s%s", e, tail);
	free(e);
	return (path);
}

int
user_show(struct cli_call *call)
{
	char	*path = user_path(call, "");
	json_t	*reply;
	int	 rc;

	rc = cli_request("GET", path, NULL, &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(reply, user_cols, nitems(user_cols)));
}

/* POST or DELETE on the account; say what happened. */
static int
user_act(struct cli_call *call, const char *method, const char *tail,
    const char *done)
{
	char	*path = user_path(call, tail), *name;
	json_t	*reply;
	int	 rc;

	rc = cli_request(method, path, strcmp(method, "POST") == 0 ?
	    json_object() : NULL, &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	rc = CLI_EXIT_OK;
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, reply);
	else if (done == NULL)
		rc = user_print_link(reply);
	else if (!cli_conf.cc_quiet) {
		name = format_clean(call->ca_argv[0]);
		printf("user %s: %s\n", name, done);
		free(name);
	}
	json_decref(reply);
	return (rc);
}

int
user_link(struct cli_call *call)
{
	return (user_act(call, "POST", "/reset", NULL));
}

int
user_disable(struct cli_call *call)
{
	return (user_act(call, "POST", "/disable", "disabled, sessions ended"));
}

int
user_enable(struct cli_call *call)
{
	return (user_act(call, "POST", "/enable", "enabled"));
}

int
user_totp_reset(struct cli_call *call)
{
	return (user_act(call, "DELETE", "/totp", "second factor removed"));
}

int
user_delete(struct cli_call *call)
{
	return (user_act(call, "DELETE", "", "deleted, sessions ended"));
}
