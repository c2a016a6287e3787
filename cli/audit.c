/*
 * opsnctl audit: read the controller's audit trail (one record per change,
 * who, what, when), have it check the trail's hash chain against its
 * signed checkpoints, or export the trail and check it offline.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "opsn/pki.h"
#include "opsn/trail.h"
#include "opsn/util.h"

#include "cli.h"

#define AUDIT_SUMMARY_MIN	20	/* columns left to a summary, at least */
#define AUDIT_GAP		2	/* as format_table puts between columns */

static char	*audit_fmt_summary(json_t *);

/* SUMMARY last: on a terminal it is cut to the width that remains. */
static const struct format_col audit_cols[] = {
	{ "ID",		"id",		NULL },
	{ "AT",		"at",		NULL },
	{ "TOKEN",	"token",	NULL },
	{ "ROLE",	"role",		NULL },
	{ "ACTION",	"action",	NULL },
	{ "OBJECT",	"object",	NULL },
	{ "SUMMARY",	"summary",	audit_fmt_summary },
};

static char	*audit_since(const char *);
static void	 audit_fit(json_t *, size_t);

/* The summary as compact JSON; a string is one already cut to fit. */
static char *
audit_fmt_summary(json_t *v)
{
	char	*s, *out;

	if (v == NULL || json_is_string(v))
		return (format_value(v));
	if ((s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS |
	    JSON_ENCODE_ANY)) == NULL)
		return (xstrdup("?"));
	out = format_clean(s);
	free(s);
	return (out);
}

/*
 * --since as the API takes it: a date or time as is, or a duration ("7d")
 * as the unix time that long ago; caller frees.
 */
static char *
audit_since(const char *since)
{
	char	*cause = NULL, *s;
	int64_t	 secs;
	size_t	 len = strlen(since);

	if (len > 1 && strchr("smhd", since[len - 1]) != NULL &&
	    util_parse_duration(since, &secs, &cause) == 0) {
		xasprintf(&s, "%" PRId64, util_now() - secs);
		return (s);
	}
	free(cause);
	return (xstrdup(since));
}

/*
 * Replace each item's summary by its text cut to what a terminal of cols
 * columns leaves after the other columns, so that a row stays one line.
 */
static void
audit_fit(json_t *items, size_t cols)
{
	json_t	*item;
	size_t	 i, c, w, used = 0, budget, n;
	char	*s, *p;

	for (c = 0; c + 1 < nitems(audit_cols); c++) {
		w = format_width(audit_cols[c].fc_header);
		json_array_foreach(items, i, item) {
			s = format_value(json_object_get(item,
			    audit_cols[c].fc_key));
			if (format_width(s) > w)
				w = format_width(s);
			free(s);
		}
		used += w + AUDIT_GAP;
	}
	budget = cols > used + AUDIT_SUMMARY_MIN ? cols - used :
	    AUDIT_SUMMARY_MIN;
	json_array_foreach(items, i, item) {
		s = audit_fmt_summary(json_object_get(item, "summary"));
		if (format_width(s) > budget) {
			/* Cut after budget - 3 code points, then "...". */
			for (p = s, n = 0; *p != '\0'; p++) {
				if (((unsigned char)*p & 0xc0) != 0x80 &&
				    n++ == budget - 3)
					break;
			}
			strcpy(p, "...");
		}
		json_object_set_new(item, "summary", json_string(s));
		free(s);
	}
}

int
audit_list(struct cli_call *call)
{
	const char	*since = cli_opt(call, "since");
	const char	*q[] = { "since", NULL, "object", cli_opt(call,
			    "object"), NULL };
	json_t		*list, *items;
	char		*path, *s = NULL;
	size_t		 cols;
	int		 rc;

	if (since != NULL)
		q[1] = s = audit_since(since);
	path = cli_path_query("/v1/audit", q);
	rc = cli_list(path, &list);
	free(path);
	free(s);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	items = json_object_get(list, "items");
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, list);
	else {
		if ((cols = cli_columns(STDOUT_FILENO)) > 0)
			audit_fit(items, cols);
		format_table(stdout, audit_cols, nitems(audit_cols), items);
	}
	json_decref(list);
	return (CLI_EXIT_OK);
}

/* Print a check's outcome; a broken trail is the command's failure. */
static int
audit_report(json_t *reply)
{
	const char	*why;
	char		*clean;
	int		 ok;

	if (!json_is_boolean(json_object_get(reply, "ok"))) {
		fprintf(stderr, "opsnctl: the reply does not say whether the "
		    "trail is intact\n");
		return (CLI_EXIT_ERROR);
	}
	ok = json_is_true(json_object_get(reply, "ok"));
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, reply);
	else if (ok)
		printf("audit trail intact: %" JSON_INTEGER_FORMAT " records, "
		    "%" JSON_INTEGER_FORMAT " signed checkpoints (records 1 to "
		    "%" JSON_INTEGER_FORMAT " anchored)\n",
		    json_integer_value(json_object_get(reply, "records")),
		    json_integer_value(json_object_get(reply, "checkpoints")),
		    json_integer_value(json_object_get(reply, "anchored")));
	else {
		why = json_string_value(json_object_get(reply, "reason"));
		clean = format_clean(why != NULL ? why : "no reason given");
		printf("audit trail BROKEN at record %" JSON_INTEGER_FORMAT
		    ": %s\n", json_integer_value(json_object_get(reply,
		    "first_bad")), clean);
		free(clean);
	}
	return (ok ? CLI_EXIT_OK : CLI_EXIT_ERROR);
}

/* A string member of an export's object, "" if absent. */
static const char *
audit_str(json_t *o, const char *key)
{
	const char	*s = json_string_value(json_object_get(o, key));

	return (s != NULL ? s : "");
}

/*
 * Check an export offline: the signer's certificate against the CA the
 * operator trusts (--ca or OPSN_CA), every checkpoint's signature, then
 * the chain against them. Into a reply shaped as the controller's.
 */
static json_t *
audit_check_file(const char *path, const char *ca_path, char **cause)
{
	struct trail_check	*c = NULL;
	struct trail_result	 res;
	struct trail_record	 r;
	json_t			*doc = NULL, *reply = NULL, *v;
	json_error_t		 jerr;
	X509			*ca = NULL, *signer = NULL;
	EVP_PKEY		*key = NULL;
	const char		*pem;
	size_t			 i;

	memset(&res, 0, sizeof(res));
	if ((ca = pki_cert_load(ca_path, cause)) == NULL)
		goto out;
	if ((doc = json_load_file(path, 0, &jerr)) == NULL) {
		xasprintf(cause, "%s:%d: %s", path, jerr.line, jerr.text);
		goto out;
	}
	if (strcmp(audit_str(doc, "format"), TRAIL_FORMAT) != 0) {
		xasprintf(cause, "%s is not an audit export (%s)", path,
		    TRAIL_FORMAT);
		goto out;
	}
	pem = audit_str(doc, "signer");
	if ((signer = pki_cert_from_pem(pem, strlen(pem), cause)) == NULL ||
	    pki_check_signer(signer, ca, cause) == -1)
		goto out;
	key = X509_get_pubkey(signer);
	c = trail_check_new(key);
	json_array_foreach(json_object_get(doc, "checkpoints"), i, v)
		trail_check_checkpoint(c, json_integer_value(json_object_get(v,
		    "count")), audit_str(v, "hash"), json_integer_value(
		    json_object_get(v, "at")), audit_str(v, "sig"));
	json_array_foreach(json_object_get(doc, "records"), i, v) {
		r.tr_id = json_integer_value(json_object_get(v, "id"));
		r.tr_at = json_integer_value(json_object_get(v, "at"));
		r.tr_token = audit_str(v, "token");
		r.tr_role = audit_str(v, "role");
		r.tr_action = audit_str(v, "action");
		r.tr_object = audit_str(v, "object");
		r.tr_summary = audit_str(v, "summary");
		r.tr_request_id = audit_str(v, "request_id");
		r.tr_prev = audit_str(v, "prev_hash");
		r.tr_hash = audit_str(v, "hash");
		if (trail_check_record(c, &r) == -1)
			break;
	}
	trail_check_end(c, &res);
	reply = json_pack("{s:b,s:I,s:I,s:I}", "ok", res.tr_why == NULL,
	    "records", (json_int_t)res.tr_records, "checkpoints",
	    (json_int_t)res.tr_checkpoints, "anchored",
	    (json_int_t)res.tr_anchored);
	if (res.tr_why != NULL) {
		json_object_set_new(reply, "first_bad",
		    json_integer(res.tr_first_bad));
		json_object_set_new(reply, "reason", json_string(res.tr_why));
	}
out:
	free(res.tr_why);
	trail_check_free(c);
	EVP_PKEY_free(key);
	X509_free(signer);
	X509_free(ca);
	json_decref(doc);
	return (reply);
}

int
audit_verify(struct cli_call *call)
{
	const char	*file = cli_opt(call, "file");
	json_t		*reply;
	char		*cause = NULL;
	int		 rc;

	if (file != NULL) {
		if (cli_conf.cc_ca == NULL) {
			fprintf(stderr, "opsnctl: checking %s needs the "
			    "controller's CA certificate: --ca FILE or "
			    "OPSN_CA\n", file);
			return (CLI_EXIT_ERROR);
		}
		if ((reply = audit_check_file(file, cli_conf.cc_ca,
		    &cause)) == NULL) {
			fprintf(stderr, "opsnctl: %s\n", cause);
			free(cause);
			return (CLI_EXIT_ERROR);
		}
	} else {
		if (call->ca_conf_error != NULL) {
			fprintf(stderr, "opsnctl: %s\n", call->ca_conf_error);
			return (CLI_EXIT_ERROR);
		}
		if (cli_request("GET", "/v1/audit/verify", NULL, &reply) == -1)
			return (CLI_EXIT_ERROR);
	}
	rc = audit_report(reply);
	json_decref(reply);
	return (rc);
}

/* The export, as the controller gave it, to stdout or a file. */
int
audit_export(struct cli_call *call)
{
	const char	*file = cli_opt(call, "file");
	struct cli_http	 http;
	json_t		*doc;
	char		*text, *cause = NULL;
	int		 rc = CLI_EXIT_ERROR;

	memset(&http, 0, sizeof(http));
	http.h_long = 1;
	http.h_label = "exporting the audit trail";
	if (cli_request_http("GET", "/v1/audit/export", NULL, &http,
	    &doc) == -1) {
		cli_http_clear(&http);
		return (CLI_EXIT_ERROR);
	}
	cli_http_clear(&http);
	if ((text = json_dumps(doc, JSON_COMPACT)) == NULL) {
		fprintf(stderr, "opsnctl: the export does not encode\n");
		goto out;
	}
	if (file == NULL) {
		fputs(text, stdout);
		fputc('\n', stdout);
		rc = CLI_EXIT_OK;
	} else if (util_write_file(file, text, strlen(text), 0644,
	    &cause) == -1) {
		fprintf(stderr, "opsnctl: %s\n", cause);
		free(cause);
	} else {
		if (!cli_conf.cc_quiet)
			fprintf(stderr, "opsnctl: %zu records and %zu signed "
			    "checkpoints in %s\n", json_array_size(
			    json_object_get(doc, "records")), json_array_size(
			    json_object_get(doc, "checkpoints")), file);
		rc = CLI_EXIT_OK;
	}
	free(text);
out:
	json_decref(doc);
	return (rc);
}

/* Sign the trail's head now. */
int
audit_checkpoint(struct cli_call *call)
{
	json_t	*cp;
	int	 rc = CLI_EXIT_OK;

	if (cli_request("POST", "/v1/audit/checkpoints", NULL, &cp) == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, cp);
	else
		printf("checkpoint %" JSON_INTEGER_FORMAT " signs %"
		    JSON_INTEGER_FORMAT " records (head %s)\n",
		    json_integer_value(json_object_get(cp, "id")),
		    json_integer_value(json_object_get(cp, "count")),
		    audit_str(cp, "hash"));
	json_decref(cp);
	return (rc);
}
