/*
 * opsnctl statement: generate and close a period's statements, list and
 * show them, export a period for finance (CSV of every line, CSV
 * summary, JSON documents, or a spreadsheet with both), and fetch its
 * titres de recettes as a PES V2 file. A CSV or JSON export is fetched
 * page by page and written whole; the period's checksum and statement
 * count go to stderr so that finance can reconcile the file with the
 * controller.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define STATEMENT_PAGE	"1000"
#define STATEMENT_ODS	"application/vnd.oasis.opendocument.spreadsheet"

static const struct format_col statement_cols[] = {
	{ "ID",		"id",		NULL },
	{ "PERIOD",	"period",	NULL },
	{ "STATUS",	"status",	NULL },
	{ "INSEE",	"insee",	NULL },
	{ "SIREN",	"siren",	NULL },
	{ "MEMBER",	"member",	NULL },
	{ "LINES",	"lines",	NULL },
	{ "TOTAL",	"total",	NULL },
};

static const struct format_col statement_line_cols[] = {
	{ "#",		"seq",		NULL },
	{ "TYPE",	"type",		NULL },
	{ "METRIC",	"metric",	NULL },
	{ "QUANTITY",	"quantity",	NULL },
	{ "UNIT",	"unit",		NULL },
	{ "PRICE",	"unit_price",	NULL },
	{ "AMOUNT",	"amount",	NULL },
	{ "TARIFF",	"tariff_label",	NULL },
	{ "FROM",	"from",		NULL },
	{ "TO",		"to",		NULL },
	{ "CORRECTS",	"corrects_period", NULL },
};

static const struct format_col statement_period_cols[] = {
	{ "PERIOD",	"period",	NULL },
	{ "STATUS",	"status",	NULL },
	{ "FROM",	"from",		NULL },
	{ "TO",		"to",		NULL },
	{ "STATEMENTS",	"statements",	NULL },
	{ "TOTAL",	"total",	NULL },
	{ "REVISION",	"revision",	NULL },
	{ "CHECKSUM",	"checksum",	NULL },
};

static const struct format_col statement_gen_fields[] = {
	{ "period",		"period",		NULL },
	{ "status",		"status",		NULL },
	{ "time zone",		"tz",			NULL },
	{ "revision",		"revision",		NULL },
	{ "statements",		"statements",		NULL },
	{ "lines",		"lines",		NULL },
	{ "late usage lines",	"late_usage_lines",	NULL },
	{ "adjustments",	"adjustments",		NULL },
	{ "removed drafts",	"removed",		NULL },
	{ "total (EUR)",	"total",		NULL },
	{ "checksum",		"checksum",		NULL },
	{ "usage",		"usage_table",		NULL },
	{ "elapsed ms",		"elapsed_ms",		NULL },
};

static const struct format_col statement_close_fields[] = {
	{ "period",	"period",	NULL },
	{ "status",	"status",	NULL },
	{ "statements",	"statements",	NULL },
	{ "checksum",	"checksum",	NULL },
};

static int
statement_period_post(struct cli_call *call, const char *path,
    const struct format_col *cols, size_t ncols)
{
	const char	*period = cli_opt(call, "period");
	json_t		*out;
	struct cli_http	 http;
	int		 rc;

	if (period == NULL) {
		fprintf(stderr, "opsnctl: --period is required (2026-10, "
		    "2026-Q4 or 2026)\n");
		return (cli_usage(call));
	}
	/* A national run takes a while: no 30 s limit, only a stall. */
	memset(&http, 0, sizeof(http));
	http.h_long = 1;
	rc = cli_request_http("POST", path, json_pack("{s:s}", "period",
	    period), &http, &out);
	cli_http_clear(&http);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(out, cols, ncols));
}

int
statement_generate(struct cli_call *call)
{
	return (statement_period_post(call, "/v1/statements/generate",
	    statement_gen_fields, nitems(statement_gen_fields)));
}

int
statement_close(struct cli_call *call)
{
	return (statement_period_post(call, "/v1/statements/close",
	    statement_close_fields, nitems(statement_close_fields)));
}

int
statement_list(struct cli_call *call)
{
	const char	*kv[] = { "period", cli_opt(call, "period"), "tenant",
	    cli_opt(call, "tenant"), "status", cli_opt(call, "status"), NULL };
	char		*path;
	int		 rc;

	path = cli_path_query("/v1/statements", kv);
	rc = cli_show_list(path, statement_cols, nitems(statement_cols));
	free(path);
	return (rc);
}

int
statement_periods(struct cli_call *call)
{
	(void)call;
	return (cli_show_list("/v1/billing-periods", statement_period_cols,
	    nitems(statement_period_cols)));
}

int
statement_show(struct cli_call *call)
{
	json_t	*s, *lines, *l, *m, *t;
	char	*e, *path, buf[160];
	size_t	 i;
	int	 rc;

	e = cli_escape(call->ca_argv[0]);
	xasprintf(&path, "/v1/statements/%s", e);
	rc = cli_request("GET", path, NULL, &s);
	free(e);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON) {
		format_json(stdout, s);
		json_decref(s);
		return (CLI_EXIT_OK);
	}
	m = json_object_get(s, "member");
	e = format_clean(json_string_value(json_object_get(m, "name")) ?
	    json_string_value(json_object_get(m, "name")) : "-");
	printf("statement %" JSON_INTEGER_FORMAT ": %s, %s (%s to %s, %s)\n",
	    json_integer_value(json_object_get(s, "id")),
	    json_string_value(json_object_get(s, "period")),
	    json_string_value(json_object_get(s, "status")),
	    json_string_value(json_object_get(s, "from")),
	    json_string_value(json_object_get(s, "to")),
	    json_string_value(json_object_get(s, "tz")));
	printf("member: %s, INSEE %s, SIREN %s, population %"
	    JSON_INTEGER_FORMAT "\n", e,
	    json_string_value(json_object_get(m, "insee")) ?
	    json_string_value(json_object_get(m, "insee")) : "-",
	    json_string_value(json_object_get(m, "siren")) ?
	    json_string_value(json_object_get(m, "siren")) : "-",
	    json_integer_value(json_object_get(m, "population")));
	free(e);
	lines = json_object_get(s, "lines");
	json_array_foreach(lines, i, l) {
		t = json_object_get(l, "tariff");
		if (json_is_object(t)) {
			snprintf(buf, sizeof(buf), "%s v%" JSON_INTEGER_FORMAT,
			    json_string_value(json_object_get(t, "name")),
			    json_integer_value(json_object_get(t, "version")));
			json_object_set_new(l, "tariff_label",
			    json_string(buf));
		}
	}
	format_table(stdout, statement_line_cols, nitems(statement_line_cols),
	    lines);
	printf("total: %s EUR\nchecksum: %s\n",
	    json_string_value(json_object_get(s, "total")),
	    json_string_value(json_object_get(s, "checksum")));
	json_decref(s);
	return (CLI_EXIT_OK);
}

/* Drop the BOM and header line of a CSV page after the first one. */
static const char *
statement_csv_body(const char *s, size_t *len)
{
	const char	*nl = memchr(s, '\n', *len);

	if (nl == NULL) {
		*len = 0;
		return (s);
	}
	*len -= (size_t)(nl + 1 - s);
	return (nl + 1);
}

/* The period as one spreadsheet (summary and lines sheets). */
static int
statement_export_ods(struct cli_call *call)
{
	const char	*kv[] = { "period", cli_opt(call, "period"), "format",
	    "ods", "tenant", cli_opt(call, "tenant"), NULL };
	struct cli_http	 http;
	char		*path;
	int		 rc;

	memset(&http, 0, sizeof(http));
	http.h_long = 1;
	http.h_keep[0] = "X-Opsn-Checksum";
	http.h_keep[1] = "X-Opsn-Statements";
	path = cli_path_query("/v1/statements", kv);
	rc = cli_save(path, STATEMENT_ODS, &http, cli_opt(call, "file"), 1);
	free(path);
	if (rc == 0 && !cli_conf.cc_quiet)
		fprintf(stderr, "%s: %s statements, checksum %s\n",
		    cli_opt(call, "period"), http.h_got[1] ? http.h_got[1] :
		    "?", http.h_got[0] ? http.h_got[0] : "?");
	cli_http_clear(&http);
	return (rc == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR);
}

/* "12.50" from cents. */
static void
statement_eur(json_t *cents, char *buf, size_t len)
{
	long long	 c = (long long)json_integer_value(cents);

	snprintf(buf, len, "%s%lld.%02lld", c < 0 ? "-" : "",
	    (c < 0 ? -c : c) / 100, (c < 0 ? -c : c) % 100);
}

/*
 * opsnctl statement pes --period P [--file F]: what the titres are (and
 * the first time, their numbering), then the file itself.
 */
int
statement_pes(struct cli_call *call)
{
	const char	*period = cli_opt(call, "period");
	json_t		*sum, *b, *w;
	char		*e, *path, *clean, eur[48];
	size_t		 i;
	int		 rc;

	if (period == NULL) {
		fprintf(stderr, "opsnctl: statement pes: --period is "
		    "required\n");
		return (cli_usage(call));
	}
	e = cli_escape(period);
	xasprintf(&path, "/v1/billing-periods/%s/pes", e);
	free(e);
	if (cli_request("GET", path, NULL, &sum) == -1) {
		free(path);
		return (CLI_EXIT_ERROR);
	}
	if (cli_conf.cc_output == CLI_OUTPUT_JSON && cli_opt(call, "file") ==
	    NULL) {
		format_json(stdout, sum);
		json_decref(sum);
		free(path);
		return (CLI_EXIT_OK);
	}
	rc = cli_save(path, "application/xml", NULL, cli_opt(call, "file"), 0);
	free(path);
	if (rc == 0 && !cli_conf.cc_quiet) {
		clean = format_clean(json_string_value(json_object_get(sum,
		    "file")) ? json_string_value(json_object_get(sum, "file")) :
		    "?");
		fprintf(stderr, "%s: %s, exercise %" JSON_INTEGER_FORMAT "%s\n",
		    period, clean, json_integer_value(json_object_get(sum,
		    "exercise")), json_is_true(json_object_get(sum, "new")) ?
		    " (numbered now)" : " (as sent before)");
		free(clean);
		json_array_foreach(json_object_get(sum, "bordereaux"), i, b) {
			statement_eur(json_object_get(b, "amount_cents"), eur,
			    sizeof(eur));
			fprintf(stderr, "  bordereau %s no %" JSON_INTEGER_FORMAT
			    ": %" JSON_INTEGER_FORMAT " titres, %s EUR\n",
			    json_string_value(json_object_get(b, "type")),
			    json_integer_value(json_object_get(b, "number")),
			    json_integer_value(json_object_get(b, "titres")),
			    eur);
		}
		json_array_foreach(json_object_get(sum, "warnings"), i, w) {
			clean = format_clean(json_string_value(json_object_get(
			    w, "message")) ? json_string_value(json_object_get(
			    w, "message")) : "?");
			fprintf(stderr, "  warning: statement %"
			    JSON_INTEGER_FORMAT ": %s\n", json_integer_value(
			    json_object_get(w, "statement")), clean);
			free(clean);
		}
	}
	json_decref(sum);
	return (rc == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR);
}

int
statement_export(struct cli_call *call)
{
	const char	*period = cli_opt(call, "period");
	const char	*format = cli_opt(call, "format");
	const char	*output = cli_opt(call, "file");
	const char	*summary = cli_opt(call, "summary");
	const char	*kv[] = { "period", period, "format", format, "summary",
	    summary != NULL ? "1" : NULL, "sep", cli_opt(call, "sep"),
	    "decimal", cli_opt(call, "decimal"), "tenant",
	    cli_opt(call, "tenant"), "limit", STATEMENT_PAGE, NULL };
	struct cli_http	 http;
	FILE		*f = stdout;
	json_t		*page, *ids, *items, *v;
	const char	*next, *text;
	char		*base, *url, *cursor = NULL, *ec, *checksum = NULL;
	char		*tmp = NULL;
	size_t		 len, i, npages = 0;
	long long	 count = 0, total = 0;
	int		 csv, rc = CLI_EXIT_ERROR;

	if (period == NULL || format == NULL) {
		fprintf(stderr, "opsnctl: statement export: --period and "
		    "--format csv|json are required\n");
		return (cli_usage(call));
	}
	if (strcmp(format, "ods") == 0)
		return (statement_export_ods(call));
	if (strcmp(format, "csv") != 0 && strcmp(format, "json") != 0) {
		fprintf(stderr, "opsnctl: --format must be csv, json or ods\n");
		return (cli_usage(call));
	}
	csv = strcmp(format, "csv") == 0;
	if (output != NULL) {
		/* Written beside, renamed when whole. */
		xasprintf(&tmp, "%s.part", output);
		if ((f = fopen(tmp, "we")) == NULL) {
			fprintf(stderr, "opsnctl: %s: %s\n", tmp,
			    strerror(errno));
			free(tmp);
			return (CLI_EXIT_ERROR);
		}
	}
	base = cli_path_query("/v1/statements", kv);
	for (;;) {
		if (cursor != NULL) {
			ec = cli_escape(cursor);
			xasprintf(&url, "%s&cursor=%s", base, ec);
			free(ec);
		} else
			url = xstrdup(base);
		memset(&http, 0, sizeof(http));
		http.h_long = 1;
		rc = cli_request_http("GET", url, NULL, &http, &page);
		cli_http_clear(&http);
		free(url);
		if (rc == -1) {
			rc = CLI_EXIT_ERROR;
			goto out;
		}
		rc = CLI_EXIT_ERROR;
		if (!json_is_object(page)) {
			fprintf(stderr, "opsnctl: the export reply is not an "
			    "object\n");
			json_decref(page);
			goto out;
		}
		if (checksum == NULL)
			checksum = xstrdup(json_string_value(json_object_get(
			    page, "checksum")) ? json_string_value(
			    json_object_get(page, "checksum")) : "?");
		ids = json_object_get(page, "statement_ids");
		count += (long long)json_array_size(ids);
		total += (long long)json_integer_value(json_object_get(page,
		    "total_cents"));
		if (csv) {
			text = json_string_value(json_object_get(page,
			    "content"));
			len = json_string_length(json_object_get(page,
			    "content"));
			if (text == NULL) {
				fprintf(stderr, "opsnctl: the export reply has "
				    "no content\n");
				json_decref(page);
				goto out;
			}
			if (npages > 0)
				text = statement_csv_body(text, &len);
			fwrite(text, 1, len, f);
		} else {
			/* One document: the head once, statements streamed. */
			items = json_object_get(page, summary != NULL ? "rows" :
			    "statements");
			if (npages == 0)
				fprintf(f, "{\"period\":\"%s\",\"summary\":%s,"
				    "\"checksum\":\"%s\",\"%s\":[", period,
				    summary ? "true" : "false", checksum,
				    summary ? "rows" : "statements");
			json_array_foreach(items, i, v) {
				if (npages > 0 || i > 0)
					fputc(',', f);
				json_dumpf(v, f, JSON_COMPACT);
			}
		}
		npages++;
		next = json_string_value(json_object_get(page, "next_cursor"));
		free(cursor);
		cursor = next != NULL ? xstrdup(next) : NULL;
		json_decref(page);
		if (cursor == NULL)
			break;
	}
	if (!csv)
		fprintf(f, "],\"count\":%lld,\"total_cents\":%lld}\n", count,
		    total);
	if (fflush(f) == EOF || ferror(f)) {
		fprintf(stderr, "opsnctl: writing the export: %s\n",
		    strerror(errno));
		goto out;
	}
	if (output != NULL) {
		if (fclose(f) == EOF || rename(tmp, output) == -1) {
			fprintf(stderr, "opsnctl: %s: %s\n", output,
			    strerror(errno));
			f = NULL;
			goto out;
		}
		f = NULL;
	}
	if (!cli_conf.cc_quiet)
		fprintf(stderr, "%s: %lld statements, total %s%lld.%02lld "
		    "EUR, checksum %s\n", period, count, total < 0 ? "-" : "",
		    (total < 0 ? -total : total) / 100,
		    (total < 0 ? -total : total) % 100, checksum);
	rc = CLI_EXIT_OK;
out:
	if (f != NULL && f != stdout)
		fclose(f);
	if (rc != CLI_EXIT_OK && tmp != NULL)
		unlink(tmp);
	free(tmp);
	free(base);
	free(cursor);
	free(checksum);
	return (rc);
}
