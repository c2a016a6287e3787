/*
 * opsnctl changes: the provisioning journal of the mail and web backends,
 * newest first: each change to a domain, mailbox, alias or site, and
 * whether its backend has applied it.
 */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

static const struct format_col changes_cols[] = {
	{ "ID",		"id",		NULL },
	{ "AT",		"at",		format_age },
	{ "NODE",	"node",		NULL },
	{ "GEN",	"generation",	NULL },
	{ "KIND",	"kind",		NULL },
	{ "OBJECT",	"object",	NULL },
	{ "ACTION",	"action",	NULL },
	{ "STATE",	"state",	NULL },
	{ "MESSAGE",	"message",	NULL },
};

int
changes_list(struct cli_call *call)
{
	const char	*q[] = {
		"pending", cli_opt(call, "pending") != NULL ? "1" : NULL,
		"failed", cli_opt(call, "failed") != NULL ? "1" : NULL,
		"node", cli_opt(call, "node"),
		NULL
	};
	char		*path;
	int		 rc;

	path = cli_path_query("/v1/changes", q);
	rc = cli_show_list(path, changes_cols, nitems(changes_cols));
	free(path);
	return (rc);
}
