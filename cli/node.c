/* opsnctl node: list, show, enrol (join tokens) and revoke nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define NODE_TTL_DEFAULT	"1h"

static const struct format_col node_cols[] = {
	{ "NAME",	"name",		NULL },
	{ "STATE",	"state",	NULL },
	{ "ROLES",	"roles",	NULL },
	{ "ADDRESS",	"address",	NULL },
	{ "CPUS",	"cpus",		NULL },
	{ "MEMORY",	"memory_bytes",	format_size },
	{ "LAST-SEEN",	"last_seen",	format_age },
};

static const struct format_col node_fields[] = {
	{ "name",		"name",			NULL },
	{ "state",		"state",		NULL },
	{ "roles",		"roles",		NULL },
	{ "address",		"address",		NULL },
	{ "proto-version",	"proto_version",	NULL },
	{ "agent-version",	"agent_version",	NULL },
	{ "cpus",		"cpus",			NULL },
	{ "memory",		"memory_bytes",		format_size_exact },
	{ "disk",		"disk_bytes",		format_size_exact },
	{ "libvirt",		"libvirt_version",	NULL },
	{ "qemu",		"qemu_version",		NULL },
	{ "last-seen",		"last_seen",		format_time },
	{ "enrolled-at",	"enrolled_at",		format_time },
	{ "fingerprint",	"cert_fingerprint",	NULL },
};

static char	*node_path(const char *, const char *);

/* "/v1/nodes/NAME" plus suffix, with NAME escaped; caller frees. */
static char *
node_path(const char *name, const char *suffix)
{
	char	*e, *path;

	e = cli_escape(name);
	xasprintf(&path, "/v1/nodes/%s%s", e, suffix);
	free(e);
	return (path);
}

int
node_list(struct cli_call *call)
{
	(void)call;
	return (cli_show_list("/v1/nodes", node_cols, nitems(node_cols)));
}

int
node_show(struct cli_call *call)
{
	json_t	*reply;
	char	*path;
	int	 rc;

	path = node_path(call->ca_argv[0], "");
	rc = cli_request("GET", path, NULL, &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(reply, node_fields, nitems(node_fields)));
}

/*
 * Only the token goes to stdout, so that T=$(opsnctl node token) works; the
 * expiry is for a person, on stderr when that is a terminal.
 */
int
node_token(struct cli_call *call)
{
	const char	*ttl, *token, *expires;
	char		*cause, *clean;
	int64_t		 secs;
	json_t		*reply;

	if ((ttl = cli_opt(call, "ttl")) == NULL)
		ttl = NODE_TTL_DEFAULT;
	if (util_parse_duration(ttl, &secs, &cause) == -1 || secs == 0) {
		fprintf(stderr, "opsnctl: --ttl: %s\n", cause != NULL ? cause :
		    "must be longer than 0");
		free(cause);
		return (cli_usage(call));
	}
	if (cli_request("POST", "/v1/node-tokens", json_pack("{s:s}", "ttl",
	    ttl), &reply) == -1)
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
	expires = json_string_value(json_object_get(reply, "expires_at"));
	if (expires != NULL && !cli_conf.cc_quiet && isatty(STDERR_FILENO)) {
		clean = format_clean(expires);
		fprintf(stderr, "opsnctl: the token expires at %s\n", clean);
		free(clean);
	}
	json_decref(reply);
	return (CLI_EXIT_OK);
}

int
node_revoke(struct cli_call *call)
{
	json_t		*reply;
	const char	*state;
	char		*path, *name, *cstate;
	int		 rc;

	path = node_path(call->ca_argv[0], "/revoke");
	rc = cli_request("POST", path, json_object(), &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, reply);
	else if (!cli_conf.cc_quiet) {
		state = json_string_value(json_object_get(reply, "state"));
		name = format_clean(call->ca_argv[0]);
		cstate = format_clean(state != NULL ? state : "revoked");
		printf("node %s: %s\n", name, cstate);
		free(name);
		free(cstate);
	}
	json_decref(reply);
	return (CLI_EXIT_OK);
}
