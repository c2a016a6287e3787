/*
 * opsnctl mail domain check, site check: what the DNS publishes, record by
 * record, against what opsn expects ("ok", "missing", or "different" with
 * both values). The controller resolves (the system's resolvers, or
 * --resolver ADDR[:PORT]); the exit status is 0 only when all is ok.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define CHECK_SHOWN	72	/* a long value (a DKIM key) is cut there */

static void
check_value(const char *label, const char *v)
{
	size_t	 len = strlen(v);
	char	*clean = format_clean(v);

	if (len > CHECK_SHOWN)
		printf("    %-9s %.*s... (%zu characters)\n", label,
		    CHECK_SHOWN, clean, len);
	else
		printf("    %-9s %s\n", label, clean);
	free(clean);
}

/* The records of a check, each with its status and values. */
static int
check_print(json_t *doc)
{
	json_t		*rec, *v;
	const char	*status;
	size_t		 i, k;
	int		 ok = json_is_true(json_object_get(doc, "ok"));

	if (cli_conf.cc_output == CLI_OUTPUT_JSON) {
		format_json(stdout, doc);
		return (ok ? CLI_EXIT_OK : CLI_EXIT_ERROR);
	}
	json_array_foreach(json_object_get(doc, "records"), i, rec) {
		status = json_string_value(json_object_get(rec, "status"));
		printf("%-9s %-12s %s%s\n", status, json_string_value(
		    json_object_get(rec, "type")), json_string_value(
		    json_object_get(rec, "name")), json_is_true(
		    json_object_get(rec, "next")) ? " (next key)" : "");
		if (strcmp(status, "ok") == 0 && cli_conf.cc_quiet)
			continue;
		check_value("expected", json_string_value(json_object_get(rec,
		    "expected")));
		json_array_foreach(json_object_get(rec, "found"), k, v)
			check_value(k == 0 ? "found" : "", json_string_value(v));
		if ((v = json_object_get(rec, "error")) != NULL)
			check_value("error", json_string_value(v));
	}
	if (json_is_true(json_object_get(doc, "dkim_rotated")))
		printf("the next DKIM key is published: it signs from now on\n");
	if (!cli_conf.cc_quiet)
		printf("%s (resolver: %s)\n", ok ? "all records are published "
		    "as expected" : "some records are missing or different",
		    json_string_value(json_object_get(doc, "resolver")));
	return (ok ? CLI_EXIT_OK : CLI_EXIT_ERROR);
}

static int
check_run(const char *what, const char *ref, const char *resolver)
{
	const char	*q[] = { "resolver", resolver, NULL };
	json_t		*doc;
	char		*e, *base, *path;
	int		 rc;

	e = cli_escape(ref);
	xasprintf(&base, "/v1/%s/%s/check", what, e);
	free(e);
	path = cli_path_query(base, q);
	free(base);
	rc = cli_request("GET", path, NULL, &doc);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	rc = check_print(doc);
	json_decref(doc);
	return (rc);
}

int
check_domain(struct cli_call *call)
{
	return (check_run("mail/domains", call->ca_argv[0],
	    cli_opt(call, "resolver")));
}

int
check_site(struct cli_call *call)
{
	return (check_run("sites", call->ca_argv[0],
	    cli_opt(call, "resolver")));
}
