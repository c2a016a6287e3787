/* opsnctl plan: the named sizes of VMs (vcpus, memory, disk). */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define PLAN_VCPUS_MAX	256

static const struct format_col plan_cols[] = {
	{ "NAME",	"name",		NULL },
	{ "VCPUS",	"vcpus",	NULL },
	{ "MEMORY",	"memory_mib",	format_mib },
	{ "DISK",	"disk_bytes",	format_size },
};

static const struct format_col plan_fields[] = {
	{ "name",	"name",		NULL },
	{ "vcpus",	"vcpus",	NULL },
	{ "memory",	"memory_mib",	format_mib },
	{ "disk",	"disk_bytes",	format_size_exact },
};

int
plan_add(struct cli_call *call)
{
	const char	*vcpus = cli_opt(call, "vcpus");
	const char	*memory = cli_opt(call, "memory");
	const char	*disk = cli_opt(call, "disk");
	json_t		*plan;
	uint64_t	 mib, bytes;
	int64_t		 n;
	char		*cause;

	if (vcpus == NULL || memory == NULL || disk == NULL) {
		fprintf(stderr, "opsnctl: plan add: --vcpus, --memory and "
		    "--disk are required\n");
		return (cli_usage(call));
	}
	if (format_parse_count(vcpus, 1, PLAN_VCPUS_MAX, &n, &cause) == -1) {
		fprintf(stderr, "opsnctl: --vcpus: %s\n", cause);
		goto usage;
	}
	if (format_parse_mib(memory, &mib, &cause) == -1) {
		fprintf(stderr, "opsnctl: --memory: %s\n", cause);
		goto usage;
	}
	if (format_parse_size(disk, &bytes, &cause) == -1) {
		fprintf(stderr, "opsnctl: --disk: %s\n", cause);
		goto usage;
	}
	/* The controller says which sizes are too small or too large. */
	if (cli_request("POST", "/v1/plans", json_pack("{s:s,s:I,s:I,s:I}",
	    "name", call->ca_argv[0], "vcpus", (json_int_t)n, "memory_mib",
	    (json_int_t)mib, "disk_bytes", (json_int_t)bytes), &plan) == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(plan, plan_fields, nitems(plan_fields)));
usage:
	free(cause);
	return (cli_usage(call));
}

int
plan_list(struct cli_call *call)
{
	(void)call;
	return (cli_show_list("/v1/plans", plan_cols, nitems(plan_cols)));
}
