/* opsnctl health: is the controller up, and how are its nodes. */
#include <stdio.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

static const struct format_col health_fields[] = {
	{ "status",	"status",	NULL },
	{ "version",	"version",	NULL },
	{ "nodes",	"nodes",	format_counts },
};

int
health_show(struct cli_call *call)
{
	json_t	*reply;

	(void)call;
	if (cli_request("GET", "/v1/health", NULL, &reply) == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(reply, health_fields, nitems(health_fields)));
}
