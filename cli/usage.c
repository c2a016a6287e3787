/*
 * opsnctl usage: what members used (GET /v1/usage), as a table, as JSON,
 * as the controller's CSV (UTF-8 with a BOM, ';' and ',' by default so
 * that LibreOffice opens it right under a French locale), or as an
 * OpenDocument spreadsheet whose cells keep their types.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define USAGE_ODS	"application/vnd.oasis.opendocument.spreadsheet"

static const struct format_col usage_cols[] = {
	{ "TENANT",	"tenant_name",		NULL },
	{ "PERIOD",	"period",		NULL },
	{ "KIND",	"kind",			NULL },
	{ "RESOURCE",	"resource",		NULL },
	{ "METRIC",	"metric",		NULL },
	{ "QUANTITY",	"display_quantity",	NULL },
	{ "UNIT",	"display_unit",		NULL },
};

/* opsnctl usage --from D --to D [--tenant T] [--group G] [--format F] */
int
usage_show(struct cli_call *call)
{
	const char	*fmt = cli_opt(call, "format");
	const char	*q[] = {
		"tenant", cli_opt(call, "tenant"),
		"from", cli_opt(call, "from"),
		"to", cli_opt(call, "to"),
		"group", cli_opt(call, "group"),
		"format", NULL,
		"sep", cli_opt(call, "sep"),
		"decimal", cli_opt(call, "decimal"),
		NULL
	};
	json_t		*reply;
	char		*path;
	int		 rc;

	if (q[3] == NULL || q[5] == NULL) {
		fprintf(stderr, "opsnctl: usage needs --from and --to "
		    "(YYYY-MM-DD)\n");
		return (cli_usage(call));
	}
	if (fmt != NULL && strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0 &&
	    strcmp(fmt, "table") != 0 && strcmp(fmt, "ods") != 0) {
		fprintf(stderr, "opsnctl: --format is table, json, csv or "
		    "ods\n");
		return (CLI_EXIT_USAGE);
	}
	/* CSV and spreadsheets are the controller's files, as they come. */
	if (fmt != NULL && (strcmp(fmt, "csv") == 0 ||
	    strcmp(fmt, "ods") == 0)) {
		q[9] = fmt;
		path = cli_path_query("/v1/usage", q);
		rc = cli_save(path, strcmp(fmt, "csv") == 0 ? "text/csv" :
		    USAGE_ODS, NULL, cli_opt(call, "file"),
		    strcmp(fmt, "ods") == 0);
		free(path);
		return (rc == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR);
	}
	path = cli_path_query("/v1/usage", q);
	rc = cli_request("GET", path, NULL, &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if ((fmt != NULL && strcmp(fmt, "json") == 0) ||
	    cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, reply);
	else
		format_table(stdout, usage_cols, nitems(usage_cols),
		    json_object_get(reply, "items"));
	json_decref(reply);
	return (CLI_EXIT_OK);
}
