/*
 * opsnctl site: add, list, show, suspend, reactivate and delete the
 * members' websites. A site is named by its host name (Unicode is fine:
 * the controller stores punycode) or its id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define SITE_PEM_MAX	(64 * 1024)

/* suspend, activate, delete: the route and what to say. */
static const struct site_action {
	const char	*sa_verb;
	const char	*sa_method;
	const char	*sa_suffix;
	const char	*sa_done;
} site_actions[] = {
	{ "suspend",	"POST",		"/suspend",	"suspended" },
	{ "activate",	"POST",		"/activate",	"active" },
	{ "delete",	"DELETE",	"",		"deleted" },
};

static char	*site_fmt_https(json_t *);

static const struct format_col site_cols[] = {
	{ "HOSTNAME",	"hostname",	NULL },
	{ "ALIASES",	"aliases",	NULL },
	{ "TENANT",	"tenant",	NULL },
	{ "BACKEND",	"backend",	NULL },
	{ "QUOTA",	"quota_bytes",	format_size },
	{ "STATUS",	"status",	NULL },
	{ "LIVE",	"live",		mail_fmt_live },
	{ "HTTPS",	"certificate",	site_fmt_https },
};

static const struct format_col site_fields[] = {
	{ "id",			"id",			NULL },
	{ "hostname",		"hostname",		NULL },
	{ "hostname-unicode",	"hostname_unicode",	NULL },
	{ "aliases",		"aliases",		NULL },
	{ "tenant",		"tenant",		NULL },
	{ "backend",		"backend",		NULL },
	{ "quota",		"quota_bytes",		format_size_exact },
	{ "used",		"used_bytes",		format_size },
	{ "status",		"status",		NULL },
	{ "member-suspended",	"member_suspended",	NULL },
	{ "live",		"live",			mail_fmt_live },
	{ "tls",		"tls",			NULL },
	{ "certificate",	"certificate",		format_cert },
	{ "created-at",		"created_at",		format_time },
	{ "updated-at",		"updated_at",		format_time },
};

static char *
site_path(const char *ref, const char *suffix)
{
	char	*e, *path;

	e = cli_escape(ref);
	xasprintf(&path, "/v1/sites/%s%s", e, suffix);
	free(e);
	return (path);
}

int
site_add(struct cli_call *call)
{
	const char	*tenant = cli_opt(call, "tenant"), *v, **aliases;
	json_t		*body, *a, *site;
	uint64_t	 quota;
	char		*cause;
	size_t		 i, n;

	if (tenant == NULL) {
		fprintf(stderr, "opsnctl: site add: --tenant is required\n");
		return (cli_usage(call));
	}
	body = json_pack("{s:s,s:s}", "hostname", call->ca_argv[0], "tenant",
	    tenant);
	if ((v = cli_opt(call, "quota")) != NULL) {
		if (format_parse_size(v, &quota, &cause) == -1) {
			fprintf(stderr, "opsnctl: --quota: %s\n", cause);
			free(cause);
			json_decref(body);
			return (cli_usage(call));
		}
		json_object_set_new(body, "quota_bytes",
		    json_integer((json_int_t)quota));
	}
	if ((v = cli_opt(call, "backend")) != NULL)
		json_object_set_new(body, "backend", json_string(v));
	if ((aliases = cli_opt_list(call, "alias", &n)) != NULL && n > 0) {
		a = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(a, json_string(aliases[i]));
		json_object_set_new(body, "aliases", a);
	}
	if (cli_request("POST", "/v1/sites", body, &site) == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(site, site_fields, nitems(site_fields)));
}

int
site_list(struct cli_call *call)
{
	const char	*q[] = {
		"tenant", cli_opt(call, "tenant"),
		"backend", cli_opt(call, "backend"),
		NULL
	};
	char		*path;
	int		 rc;

	path = cli_path_query("/v1/sites", q);
	rc = cli_show_list(path, site_cols, nitems(site_cols));
	free(path);
	return (rc);
}

int
site_show(struct cli_call *call)
{
	json_t	*site;
	char	*path;
	int	 rc;

	path = site_path(call->ca_argv[0], "");
	rc = cli_request("GET", path, NULL, &site);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(site, site_fields, nitems(site_fields)));
}

int
site_action(struct cli_call *call)
{
	const struct site_action	*a = NULL;
	json_t				*site;
	char				*path, *host, *status;
	size_t				 i;
	int				 rc;

	for (i = 0; i < nitems(site_actions); i++)
		if (strcmp(call->ca_cmd->c_path[1], site_actions[i].sa_verb) == 0)
			a = &site_actions[i];
	if (a == NULL)
		return (cli_usage(call));
	path = site_path(call->ca_argv[0], a->sa_suffix);
	rc = cli_request(a->sa_method, path, NULL, &site);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, site);
	else if (!cli_conf.cc_quiet) {
		host = format_value(json_object_get(site, "hostname"));
		status = a->sa_method[0] == 'D' ? xstrdup(a->sa_done) :
		    format_value(json_object_get(site, "status"));
		printf("site %s: %s%s\n", host, status, json_is_true(
		    json_object_get(site, "member_suspended")) ?
		    " (its member is suspended)" : "");
		free(host);
		free(status);
	}
	json_decref(site);
	return (CLI_EXIT_OK);
}

/* A list's HTTPS column: the certificate's state, and until when. */
static char *
site_fmt_https(json_t *c)
{
	const char	*state = json_string_value(json_object_get(c, "state"));
	char		*until, *s;

	if (state == NULL)
		return (xstrdup("-"));
	if (strcmp(state, "valid") != 0)
		return (xstrdup(state));
	until = format_expiry(json_object_get(c, "not_after"));
	xasprintf(&s, "valid, %s", until);
	free(until);
	return (s);
}

/* A PEM file's text; NULL after saying why. */
static char *
site_read_pem(const char *opt, const char *path)
{
	char	*text = NULL, *cause = NULL;
	size_t	 len;

	if (util_read_file(path, SITE_PEM_MAX, &text, &len, &cause) == -1) {
		fprintf(stderr, "opsnctl: --%s: %s\n", opt, cause);
		free(cause);
		return (NULL);
	}
	return (text);
}

/*
 * site cert set HOST --cert FILE --key FILE: the member's own certificate
 * (chain in PEM, leaf first) and key, checked by the controller and kept
 * by the web backend only. site cert acme HOST: back to ACME.
 */
int
site_cert(struct cli_call *call)
{
	const char	*certf = cli_opt(call, "cert");
	const char	*keyf = cli_opt(call, "key");
	json_t		*body = NULL, *site;
	char		*path, *cert = NULL, *key = NULL;
	int		 acme, rc;

	acme = strcmp(call->ca_cmd->c_path[2], "acme") == 0;
	if (!acme) {
		if (certf == NULL || keyf == NULL) {
			fprintf(stderr, "opsnctl: site cert set: --cert and "
			    "--key are required\n");
			return (cli_usage(call));
		}
		if ((cert = site_read_pem("cert", certf)) == NULL ||
		    (key = site_read_pem("key", keyf)) == NULL) {
			free(cert);
			return (CLI_EXIT_ERROR);
		}
		body = json_pack("{s:s,s:s}", "cert_pem", cert, "key_pem", key);
		explicit_bzero(key, strlen(key));
		free(key);
		free(cert);
	}
	path = site_path(call->ca_argv[0], "/certificate");
	rc = cli_request(acme ? "DELETE" : "POST", path, body, &site);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(site, site_fields, nitems(site_fields)));
}
