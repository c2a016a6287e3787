/* opsnctl group: anti-affinity groups of VMs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

static const struct format_col group_cols[] = {
	{ "NAME",	"name",		NULL },
	{ "POLICY",	"policy",	NULL },
	{ "VMS",	"vms",		NULL },
	{ "NODES",	"nodes",	NULL },
	{ "CREATED",	"created_at",	format_age },
};

/* opsnctl group add NAME [--policy anti-affinity|soft-anti-affinity] */
int
group_add(struct cli_call *call)
{
	const char	*policy = cli_opt(call, "policy");
	json_t		*reply;

	if (policy == NULL)
		policy = "anti-affinity";
	if (strcmp(policy, "anti-affinity") != 0 &&
	    strcmp(policy, "soft-anti-affinity") != 0) {
		fprintf(stderr, "opsnctl: --policy must be anti-affinity or "
		    "soft-anti-affinity\n");
		return (cli_usage(call));
	}
	if (cli_request("POST", "/v1/groups", json_pack("{s:s,s:s}", "name",
	    call->ca_argv[0], "policy", policy), &reply) == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(reply, group_cols, nitems(group_cols)));
}

int
group_list(struct cli_call *call)
{
	(void)call;
	return (cli_show_list("/v1/groups", group_cols, nitems(group_cols)));
}

int
group_delete(struct cli_call *call)
{
	char	*e, *path, *name;
	int	 rc;

	e = cli_escape(call->ca_argv[0]);
	xasprintf(&path, "/v1/groups/%s", e);
	free(e);
	rc = cli_request("DELETE", path, NULL, NULL);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (!cli_conf.cc_quiet && cli_conf.cc_output != CLI_OUTPUT_JSON) {
		name = format_clean(call->ca_argv[0]);
		printf("group %s: deleted\n", name);
		free(name);
	}
	return (CLI_EXIT_OK);
}
