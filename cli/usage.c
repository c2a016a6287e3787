/*
 * opsnctl usage: what members used (GET /v1/usage), as a table, as JSON,
 * or as the controller's CSV (UTF-8 with a BOM, ';' and ',' by default so
 * that LibreOffice opens it right under a French locale).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

static const struct format_col usage_cols[] = {
	{ "TENANT",	"tenant_name",		NULL },
	{ "PERIOD",	"period",		NULL },
	{ "KIND",	"kind",			NULL },
	{ "RESOURCE",	"resource",		NULL },
	{ "METRIC",	"metric",		NULL },
	{ "QUANTITY",	"display_quantity",	NULL },
	{ "UNIT",	"display_unit",		NULL },
};

static size_t
usage_write_cb(char *data, size_t size, size_t n, void *arg)
{
	return (fwrite(data, size, n, arg));
}

/* CSV is no JSON: fetch it with the same settings and copy it out. */
static int
usage_csv(const char *path)
{
	CURL			*c;
	struct curl_slist	*hdrs = NULL;
	char			*url, *auth = NULL, err[CURL_ERROR_SIZE];
	long			 status = 0;
	CURLcode		 rc;
	FILE			*body;
	char			*text = NULL;
	size_t			 len = 0;

	if ((c = curl_easy_init()) == NULL) {
		fprintf(stderr, "opsnctl: cannot start libcurl\n");
		return (CLI_EXIT_ERROR);
	}
	if ((body = open_memstream(&text, &len)) == NULL) {
		curl_easy_cleanup(c);
		return (CLI_EXIT_ERROR);
	}
	xasprintf(&url, "%s%s", cli_conf.cc_url, path);
	err[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "opsnctl/" OPSN_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, usage_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	if (cli_conf.cc_ca != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, cli_conf.cc_ca);
	if (cli_conf.cc_token != NULL) {
		xasprintf(&auth, "Authorization: Bearer %s", cli_conf.cc_token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	fclose(body);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	if (auth != NULL) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	if (rc != CURLE_OK) {
		fprintf(stderr, "opsnctl: %s: %s\n", url, err[0] ? err :
		    curl_easy_strerror(rc));
		free(url);
		free(text);
		return (CLI_EXIT_ERROR);
	}
	free(url);
	if (status != 200) {
		json_t *j = json_loadb(text, len, 0, NULL);
		const char *msg = json_string_value(json_object_get(
		    json_object_get(j, "error"), "message"));

		fprintf(stderr, "opsnctl: usage: %s (HTTP %ld)\n", msg ? msg :
		    "the controller refused", status);
		json_decref(j);
		free(text);
		return (CLI_EXIT_ERROR);
	}
	fwrite(text, 1, len, stdout);
	free(text);
	return (fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR);
}

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
	    strcmp(fmt, "table") != 0) {
		fprintf(stderr, "opsnctl: --format is table, json or csv\n");
		return (CLI_EXIT_USAGE);
	}
	if (fmt != NULL && strcmp(fmt, "csv") == 0) {
		q[9] = "csv";
		path = cli_path_query("/v1/usage", q);
		rc = usage_csv(path);
		free(path);
		return (rc);
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
