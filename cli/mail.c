/*
 * opsnctl mail: domains (with the DNS records to publish), mailboxes and
 * aliases. A password is read from standard input (--password-stdin) and
 * sent once over HTTPS: it is never an argument (ps(1) would show it),
 * never printed, and wiped from memory after the request. Changes to a
 * mailbox carry the ETag just read (If-Match).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define MAIL_PASSWORD_MAX	1024
#define MAIL_CSV_MAX		((size_t)16 << 20)

/* suspend, activate, delete, restore: the route and what to say. */
static const struct mail_box_verb {
	const char	*mv_verb;
	const char	*mv_method;
	const char	*mv_suffix;
} mail_box_verbs[] = {
	{ "suspend",	"POST",		"/suspend" },
	{ "activate",	"POST",		"/activate" },
	{ "delete",	"DELETE",	"" },
	{ "restore",	"POST",		"/restore" },
};

static char	*mail_fmt_dkim(json_t *);
static char	*mail_fmt_quota(json_t *);
static char	*mail_fmt_when(json_t *);

static const struct format_col mail_domain_cols[] = {
	{ "NAME",	"name_unicode",	NULL },
	{ "TENANT",	"tenant",	NULL },
	{ "BACKEND",	"backend",	NULL },
	{ "QUOTA",	"quota_bytes",	mail_fmt_quota },
	{ "ALLOCATED",	"allocated_bytes", format_size },
	{ "MAILBOXES",	"mailboxes",	NULL },
	{ "ALIASES",	"aliases",	NULL },
	{ "LIVE",	"live",		mail_fmt_live },
};

static const struct format_col mail_domain_fields[] = {
	{ "name",		"name",			NULL },
	{ "name-unicode",	"name_unicode",		NULL },
	{ "tenant",		"tenant",		NULL },
	{ "backend",		"backend",		NULL },
	{ "quota",		"quota_bytes",		mail_fmt_quota },
	{ "allocated",		"allocated_bytes",	format_size_exact },
	{ "mailboxes",		"mailboxes",		NULL },
	{ "mailboxes-deleted",	"mailboxes_deleted",	NULL },
	{ "aliases",		"aliases",		NULL },
	{ "dkim-selector",	"dkim",			mail_fmt_dkim },
	{ "suspended",		"suspended",		NULL },
	{ "live",		"live",			mail_fmt_live },
	{ "created-at",		"created_at",		format_time },
};

static const struct format_col mail_box_cols[] = {
	{ "ADDRESS",	"address",	NULL },
	{ "NAME",	"name",		NULL },
	{ "QUOTA",	"quota_bytes",	format_size },
	{ "USED",	"used_bytes",	format_size },
	{ "STATUS",	"status",	NULL },
	{ "LIVE",	"live",		mail_fmt_live },
};

static const struct format_col mail_box_fields[] = {
	{ "address",		"address",		NULL },
	{ "name",		"name",			NULL },
	{ "id",			"id",			NULL },
	{ "domain",		"domain",		NULL },
	{ "tenant",		"tenant",		NULL },
	{ "backend",		"backend",		NULL },
	{ "quota",		"quota_bytes",		format_size_exact },
	{ "used",		"used_bytes",		format_size },
	{ "status",		"status",		NULL },
	{ "member-suspended",	"member_suspended",	NULL },
	{ "deleted-at",		"deleted_at",		mail_fmt_when },
	{ "purge-after",	"purge_after",		mail_fmt_when },
	{ "live",		"live",			mail_fmt_live },
	{ "version",		"version",		NULL },
	{ "created-at",		"created_at",		format_time },
	{ "updated-at",		"updated_at",		format_time },
};

static const struct format_col mail_alias_cols[] = {
	{ "ADDRESS",	"address",	NULL },
	{ "TARGETS",	"targets",	NULL },
	{ "LIVE",	"live",		mail_fmt_live },
};

static const struct format_col mail_alias_fields[] = {
	{ "address",	"address",	NULL },
	{ "targets",	"targets",	NULL },
	{ "catch-all",	"catch_all",	NULL },
	{ "live",	"live",		mail_fmt_live },
	{ "created-at",	"created_at",	format_time },
};

/* The CSV columns of an import; "address" may be "local". */
static const struct {
	const char	*mc_name;
	const char	*mc_field;	/* in a record */
} mail_csv_cols[] = {
	{ "address",		"address" },
	{ "local",		"local" },
	{ "name",		"name" },
	{ "quota",		"quota_bytes" },
	{ "password",		"password" },
	{ "password_hash",	"password_hash" },
};

/* "yes", "pending (generation 5, applied 3)", "error: ...". */
char *
mail_fmt_live(json_t *v)
{
	const char	*state = json_string_value(json_object_get(v, "state"));
	const char	*msg = json_string_value(json_object_get(v, "message"));
	char		*s, *clean;

	if (state == NULL)
		return (format_value(v));
	if (strcmp(state, "applied") == 0)
		return (xstrdup("yes"));
	if (strcmp(state, "error") == 0) {
		clean = format_clean(msg != NULL && *msg ? msg : "no message");
		xasprintf(&s, "error: %s", clean);
		free(clean);
		return (s);
	}
	xasprintf(&s, "pending (generation %" JSON_INTEGER_FORMAT ", backend "
	    "at %" JSON_INTEGER_FORMAT ")", json_integer_value(json_object_get(
	    v, "generation")), json_integer_value(json_object_get(v,
	    "applied_generation")));
	return (s);
}

static char *
mail_fmt_dkim(json_t *v)
{
	return (format_value(json_object_get(v, "selector")));
}

/* A time that is not set yet is "-", not "never". */
static char *
mail_fmt_when(json_t *v)
{
	return (json_is_null(v) ? xstrdup("-") : format_time(v));
}

static char *
mail_fmt_quota(json_t *v)
{
	if (json_is_null(v))
		return (xstrdup("none"));
	return (format_size(v));
}

/* "/v1/mail/KIND/REF" plus suffix, REF escaped; caller frees. */
static char *
mail_path(const char *kind, const char *ref, const char *suffix)
{
	char	*e, *path;

	e = cli_escape(ref);
	xasprintf(&path, "/v1/mail/%s/%s%s", kind, e, suffix);
	free(e);
	return (path);
}

/* A size option into body[field]; -1 after printing why. */
static int
mail_size_opt(const char *opt, const char *v, json_t *body,
    const char *field)
{
	uint64_t	 n;
	char		*cause;

	if (format_parse_size(v, &n, &cause) == -1) {
		fprintf(stderr, "opsnctl: --%s: %s\n", opt, cause);
		free(cause);
		return (-1);
	}
	if (n == 0) {
		fprintf(stderr, "opsnctl: --%s: a quota is more than 0\n", opt);
		return (-1);
	}
	json_object_set_new(body, field, json_integer((json_int_t)n));
	return (0);
}

/*
 * The credential options: --password-stdin or --password-hash, one of
 * them. The password is put in body and *secret (wiped by the caller).
 */
static int
mail_credential_opts(struct cli_call *call, json_t *body, char **secret)
{
	const char	*hash = cli_opt(call, "password-hash");
	int		 stdin_pw = cli_opt(call, "password-stdin") != NULL;

	*secret = NULL;
	if ((hash != NULL) == stdin_pw) {
		fprintf(stderr, "opsnctl: give --password-stdin or "
		    "--password-hash, one of them\n");
		return (-1);
	}
	if (hash != NULL) {
		json_object_set_new(body, "password_hash", json_string(hash));
		return (0);
	}
	if ((*secret = cli_read_password(MAIL_PASSWORD_MAX)) == NULL)
		return (-1);
	json_object_set_new(body, "password", json_string(*secret));
	return (0);
}

static void
mail_wipe(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/*
 * The request's copy of the password lives in the JSON body, which
 * cli_request frees: wipe the string inside it first.
 */
static int
mail_request_secret(const char *method, const char *path, json_t *body,
    struct cli_http *http, json_t **out)
{
	json_t	*pw = json_object_get(body, "password");
	char	*text;
	int	 rc;

	json_incref(body);
	rc = cli_request_http(method, path, body, http, out);
	if (pw != NULL && json_is_string(pw)) {
		text = (char *)json_string_value(pw);
		explicit_bzero(text, strlen(text));
	}
	json_decref(body);
	return (rc);
}

int
mail_domain_add(struct cli_call *call)
{
	const char	*tenant = cli_opt(call, "tenant"), *v;
	json_t		*body, *d;

	if (tenant == NULL) {
		fprintf(stderr, "opsnctl: mail domain add: --tenant is "
		    "required\n");
		return (cli_usage(call));
	}
	body = json_pack("{s:s,s:s}", "name", call->ca_argv[0], "tenant",
	    tenant);
	if ((v = cli_opt(call, "quota")) != NULL &&
	    mail_size_opt("quota", v, body, "quota_bytes") == -1) {
		json_decref(body);
		return (cli_usage(call));
	}
	if ((v = cli_opt(call, "backend")) != NULL)
		json_object_set_new(body, "backend", json_string(v));
	if (cli_request("POST", "/v1/mail/domains", body, &d) == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output != CLI_OUTPUT_JSON && !cli_conf.cc_quiet)
		fprintf(stderr, "opsnctl: publish its DNS records: opsnctl "
		    "mail domain dns %s\n", json_string_value(json_object_get(
		    d, "name")));
	return (cli_show_object(d, mail_domain_fields,
	    nitems(mail_domain_fields)));
}

int
mail_domain_list(struct cli_call *call)
{
	const char	*q[] = {
		"tenant", cli_opt(call, "tenant"),
		"backend", cli_opt(call, "backend"),
		NULL
	};
	char		*path;
	int		 rc;

	path = cli_path_query("/v1/mail/domains", q);
	rc = cli_show_list(path, mail_domain_cols, nitems(mail_domain_cols));
	free(path);
	return (rc);
}

int
mail_domain_show(struct cli_call *call)
{
	json_t	*d;
	char	*path;
	int	 rc;

	path = mail_path("domains", call->ca_argv[0], "");
	rc = cli_request("GET", path, NULL, &d);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(d, mail_domain_fields,
	    nitems(mail_domain_fields)));
}

/* The records as zone-file lines, ready to paste. */
int
mail_domain_dns(struct cli_call *call)
{
	json_t		*d;
	const char	*zone;
	char		*path;
	int		 rc;

	path = mail_path("domains", call->ca_argv[0], "/dns");
	rc = cli_request("GET", path, NULL, &d);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, d);
	else if ((zone = json_string_value(json_object_get(d, "zone"))) !=
	    NULL) {
		if (!cli_conf.cc_quiet)
			printf("; records to publish in the zone of %s\n",
			    json_string_value(json_object_get(d, "domain")));
		fputs(zone, stdout);
		if (json_is_string(json_object_get(d, "warning")))
			fprintf(stderr, "opsnctl: warning: %s\n",
			    json_string_value(json_object_get(d, "warning")));
	}
	json_decref(d);
	return (CLI_EXIT_OK);
}

/*
 * mail domain dkim-rotate NAME [--force]: a new key and the record to
 * publish; it signs once `mail domain check` sees the record (or at once
 * with --force).
 */
int
mail_domain_dkim_rotate(struct cli_call *call)
{
	json_t		*d, *next;
	const char	*zone;
	char		*path;
	int		 rc;

	path = mail_path("domains", call->ca_argv[0], "/dkim/rotate");
	rc = cli_request("POST", path, cli_opt(call, "force") != NULL ?
	    json_pack("{s:b}", "force", 1) : json_object(), &d);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON) {
		format_json(stdout, d);
		json_decref(d);
		return (CLI_EXIT_OK);
	}
	next = json_object_get(d, "next");
	zone = json_string_value(json_object_get(next, "zone"));
	if (!cli_conf.cc_quiet)
		printf("; %s DKIM key for %s, selector %s: publish\n",
		    json_is_true(json_object_get(d, "new")) ? "a new" : "the "
		    "waiting", json_string_value(json_object_get(d, "domain")),
		    json_string_value(json_object_get(next, "selector")));
	fputs(zone != NULL ? zone : "", stdout);
	if (!cli_conf.cc_quiet)
		printf("; signing: %s\n", json_string_value(json_object_get(d,
		    "signing")));
	json_decref(d);
	return (CLI_EXIT_OK);
}

int
mail_domain_delete(struct cli_call *call)
{
	json_t	*d;
	char	*path, *name;
	int	 rc;

	path = mail_path("domains", call->ca_argv[0], "");
	rc = cli_request("DELETE", path, NULL, &d);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, d);
	else if (!cli_conf.cc_quiet) {
		name = format_value(json_object_get(d, "name"));
		printf("mail domain %s: deleted (%" JSON_INTEGER_FORMAT
		    " alias(es) with it)\n", name, json_integer_value(
		    json_object_get(d, "aliases_deleted")));
		free(name);
	}
	json_decref(d);
	return (CLI_EXIT_OK);
}

int
mail_box_add(struct cli_call *call)
{
	const char	*v;
	json_t		*body, *b;
	char		*secret = NULL;
	int		 rc;

	if (cli_opt(call, "quota") == NULL) {
		fprintf(stderr, "opsnctl: mail box add: --quota is required\n");
		return (cli_usage(call));
	}
	body = json_pack("{s:s}", "address", call->ca_argv[0]);
	if ((v = cli_opt(call, "name")) != NULL)
		json_object_set_new(body, "name", json_string(v));
	if (mail_size_opt("quota", cli_opt(call, "quota"), body,
	    "quota_bytes") == -1 || mail_credential_opts(call, body,
	    &secret) == -1) {
		json_decref(body);
		return (cli_usage(call));
	}
	rc = mail_request_secret("POST", "/v1/mail/mailboxes", body, NULL, &b);
	mail_wipe(secret);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(b, mail_box_fields, nitems(mail_box_fields)));
}

int
mail_box_list(struct cli_call *call)
{
	const char	*q[] = {
		"domain", cli_opt(call, "domain"),
		"tenant", cli_opt(call, "tenant"),
		"status", cli_opt(call, "status"),
		NULL
	};
	char		*path;
	int		 rc;

	path = cli_path_query("/v1/mail/mailboxes", q);
	rc = cli_show_list(path, mail_box_cols, nitems(mail_box_cols));
	free(path);
	return (rc);
}

int
mail_box_show(struct cli_call *call)
{
	json_t	*b;
	char	*path;
	int	 rc;

	path = mail_path("mailboxes", call->ca_argv[0], "");
	rc = cli_request("GET", path, NULL, &b);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(b, mail_box_fields, nitems(mail_box_fields)));
}

/*
 * Change the mailbox ref names: read it (for its ETag and id), then
 * method on its id plus suffix with body (consumed), If-Match. *out gets
 * the mailbox as changed. -1 after printing why.
 */
static int
mail_box_write(const char *ref, const char *method, const char *suffix,
    json_t *body, json_t **out)
{
	struct cli_http	 http;
	json_t		*b = NULL;
	char		*path, *hdr = NULL, *addr;
	int		 rc;

	memset(&http, 0, sizeof(http));
	http.h_keep[0] = "ETag";
	path = mail_path("mailboxes", ref, "");
	rc = cli_request_http("GET", path, NULL, &http, &b);
	free(path);
	if (rc == -1 || http.h_got[0] == NULL || !json_is_object(b)) {
		if (rc == 0)
			fprintf(stderr, "opsnctl: mailbox %s: the controller "
			    "sent no ETag to change it with\n", ref);
		cli_http_clear(&http);
		json_decref(b);
		json_decref(body);
		return (-1);
	}
	xasprintf(&hdr, "If-Match: %s", http.h_got[0]);
	cli_http_clear(&http);
	memset(&http, 0, sizeof(http));
	http.h_send[0] = hdr;
	path = mail_path("mailboxes", json_string_value(json_object_get(b,
	    "id")), suffix);
	rc = mail_request_secret(method, path, body, &http, out);
	if (rc == -1 && http.h_status == 412) {
		addr = format_value(json_object_get(b, "address"));
		fprintf(stderr, "opsnctl: mailbox %s changed while this command "
		    "ran; nothing was done: check it and run the command "
		    "again\n", addr);
		free(addr);
	}
	cli_http_clear(&http);
	free(path);
	free(hdr);
	json_decref(b);
	return (rc);
}

int
mail_box_set(struct cli_call *call)
{
	const char	*v;
	json_t		*body, *b;

	body = json_object();
	if ((v = cli_opt(call, "name")) != NULL)
		json_object_set_new(body, "name", json_string(v));
	if ((v = cli_opt(call, "quota")) != NULL &&
	    mail_size_opt("quota", v, body, "quota_bytes") == -1) {
		json_decref(body);
		return (cli_usage(call));
	}
	if (json_object_size(body) == 0) {
		fprintf(stderr, "opsnctl: mail box set: nothing to change\n");
		json_decref(body);
		return (cli_usage(call));
	}
	if (mail_box_write(call->ca_argv[0], "PATCH", "", body, &b) == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(b, mail_box_fields, nitems(mail_box_fields)));
}

/* Print "mailbox ADDRESS: WHAT" (or the JSON) and free b. */
static int
mail_box_said(json_t *b, const char *what)
{
	char	*addr, *status;

	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, b);
	else if (!cli_conf.cc_quiet) {
		addr = format_value(json_object_get(b, "address"));
		status = what != NULL ? xstrdup(what) :
		    format_value(json_object_get(b, "status"));
		printf("mailbox %s: %s", addr, status);
		if (json_is_true(json_object_get(b, "member_suspended")))
			printf(" (its member is suspended)");
		if (json_is_string(json_object_get(b, "purge_after")))
			printf(", mail kept until %s",
			    json_string_value(json_object_get(b,
			    "purge_after")));
		printf("\n");
		free(addr);
		free(status);
	}
	json_decref(b);
	return (CLI_EXIT_OK);
}

int
mail_box_passwd(struct cli_call *call)
{
	json_t	*body = json_object(), *b;
	char	*secret = NULL;
	int	 rc;

	if (mail_credential_opts(call, body, &secret) == -1) {
		json_decref(body);
		return (cli_usage(call));
	}
	rc = mail_box_write(call->ca_argv[0], "POST", "/password", body, &b);
	mail_wipe(secret);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (mail_box_said(b, "password changed"));
}

int
mail_box_action(struct cli_call *call)
{
	const struct mail_box_verb	*v = NULL;
	json_t				*b;
	size_t				 i;

	for (i = 0; i < nitems(mail_box_verbs); i++)
		if (strcmp(call->ca_cmd->c_path[2],
		    mail_box_verbs[i].mv_verb) == 0)
			v = &mail_box_verbs[i];
	if (v == NULL)
		return (cli_usage(call));
	if (mail_box_write(call->ca_argv[0], v->mv_method, v->mv_suffix,
	    v->mv_method[0] == 'P' ? json_object() : NULL, &b) == -1)
		return (CLI_EXIT_ERROR);
	return (mail_box_said(b, NULL));
}

/* Trim blanks around a CSV cell, in place. */
static char *
mail_trim(char *s)
{
	size_t	 n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return (s);
}

int
mail_csv_records(const char *name, const char *text, size_t len,
    json_t **records, char **cause)
{
	struct csv	 csv;
	int		 col[nitems(mail_csv_cols)];
	json_t		*recs = NULL, *rec;
	uint64_t	 quota;
	char		*why = NULL, *cell, where[48];
	size_t		 i, j, k;
	int		 ret = -1;

	*records = NULL;
	if (csv_parse(name, text, len, &csv, cause) == -1)
		return (-1);
	if (csv.cv_nrows < 2) {
		xasprintf(cause, "%s: no mailbox (a header line "
		    "address;name;quota;password, then one line per mailbox)",
		    name);
		goto out;
	}
	for (k = 0; k < nitems(mail_csv_cols); k++)
		col[k] = -1;
	for (j = 0; j < csv.cv_rows[0].cr_n; j++) {
		cell = mail_trim(csv.cv_rows[0].cr_fields[j]);
		for (k = 0; k < nitems(mail_csv_cols); k++)
			if (strcasecmp(cell, mail_csv_cols[k].mc_name) == 0)
				break;
		if (k == nitems(mail_csv_cols)) {
			xasprintf(cause, "%s:%zu: unknown column '%.40s' (use "
			    "address or local, name, quota, password or "
			    "password_hash)", name, csv.cv_rows[0].cr_line, cell);
			goto out;
		}
		col[k] = (int)j;
	}
	if ((col[0] == -1) == (col[1] == -1) || col[3] == -1 ||
	    (col[4] == -1 && col[5] == -1)) {
		xasprintf(cause, "%s:%zu: the header needs address (or local), "
		    "quota, and password or password_hash", name,
		    csv.cv_rows[0].cr_line);
		goto out;
	}
	recs = json_array();
	for (i = 1; i < csv.cv_nrows; i++) {
		const struct csv_row *row = &csv.cv_rows[i];

		snprintf(where, sizeof(where), "line %zu", row->cr_line);
		rec = json_pack("{s:s}", "where", where);
		json_array_append_new(recs, rec);
		for (k = 0; k < nitems(mail_csv_cols); k++) {
			if (col[k] == -1)
				continue;
			cell = (size_t)col[k] < row->cr_n ?
			    row->cr_fields[col[k]] : "";
			/* Blanks around a password may be part of it. */
			if (k != 4)
				cell = mail_trim(cell);
			if (*cell == '\0')
				continue;
			if (k == 3) {
				if (format_parse_size(cell, &quota,
				    &why) == -1) {
					xasprintf(cause, "%s:%zu: quota: %s",
					    name, row->cr_line, why);
					free(why);
					goto out;
				}
				json_object_set_new(rec, "quota_bytes",
				    json_integer((json_int_t)quota));
				continue;
			}
			/* An address without '@' is a local part. */
			json_object_set_new(rec, k == 0 && strchr(cell, '@') ==
			    NULL ? "local" : mail_csv_cols[k].mc_field,
			    json_string(cell));
		}
	}
	*records = recs;
	recs = NULL;
	ret = 0;
out:
	json_decref(recs);
	/* The rows hold the passwords. */
	for (i = 0; i < csv.cv_nrows; i++)
		for (j = 0; j < csv.cv_rows[i].cr_n; j++)
			explicit_bzero(csv.cv_rows[i].cr_fields[j],
			    strlen(csv.cv_rows[i].cr_fields[j]));
	csv_free(&csv);
	return (ret);
}

int
mail_box_import(struct cli_call *call)
{
	const char	*domain = cli_opt(call, "domain");
	const char	*file = cli_opt(call, "csv");
	struct cli_http	 http;
	json_t		*records, *body, *rep, *v;
	char		*text = NULL, *cause = NULL;
	size_t		 len, i;
	int		 rc;

	if (domain == NULL || file == NULL) {
		fprintf(stderr, "opsnctl: mail box import: --domain and --csv "
		    "are required\n");
		return (cli_usage(call));
	}
	if (util_read_file(file, MAIL_CSV_MAX, &text, &len, &cause) == -1) {
		fprintf(stderr, "opsnctl: %s\n", cause);
		free(cause);
		return (CLI_EXIT_ERROR);
	}
	rc = mail_csv_records(file, text, len, &records, &cause);
	explicit_bzero(text, len);
	free(text);
	if (rc == -1) {
		fprintf(stderr, "opsnctl: %s (nothing was imported)\n", cause);
		free(cause);
		return (CLI_EXIT_ERROR);
	}
	body = json_pack("{s:s,s:o}", "domain", domain, "records", records);
	json_incref(body);
	/* Hashing 10,000 passwords takes the controller half a minute. */
	memset(&http, 0, sizeof(http));
	http.h_long = 1;
	http.h_label = "importing mailboxes";
	rc = cli_request_http("POST", "/v1/mail/mailboxes/import", body, &http,
	    &rep);
	cli_http_clear(&http);
	/* Wipe the passwords the request carried. */
	json_array_foreach(records, i, v) {
		json_t *pw = json_object_get(v, "password");

		if (json_is_string(pw))
			explicit_bzero((char *)json_string_value(pw),
			    json_string_length(pw));
	}
	json_decref(body);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, rep);
	else if (!cli_conf.cc_quiet) {
		json_t *created = json_object_get(rep, "created");
		json_t *existing = json_object_get(rep, "existing");

		printf("%" JSON_INTEGER_FORMAT " records: %zu created, %zu "
		    "already existed (left unchanged)\n", json_integer_value(
		    json_object_get(rep, "total")), json_array_size(created),
		    json_array_size(existing));
		json_array_foreach(created, i, v)
			printf("created  %s\n", json_string_value(v));
		json_array_foreach(existing, i, v)
			printf("existing %s\n", json_string_value(v));
	}
	json_decref(rep);
	return (CLI_EXIT_OK);
}

int
mail_alias_add(struct cli_call *call)
{
	json_t	*body, *targets, *a;
	int	 i;

	targets = json_array();
	for (i = 1; i < call->ca_argc; i++)
		json_array_append_new(targets, json_string(call->ca_argv[i]));
	body = json_pack("{s:s,s:o}", "address", call->ca_argv[0], "targets",
	    targets);
	if (cli_request("POST", "/v1/mail/aliases", body, &a) == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(a, mail_alias_fields,
	    nitems(mail_alias_fields)));
}

int
mail_alias_list(struct cli_call *call)
{
	const char	*q[] = { "domain", cli_opt(call, "domain"), NULL };
	char		*path;
	int		 rc;

	path = cli_path_query("/v1/mail/aliases", q);
	rc = cli_show_list(path, mail_alias_cols, nitems(mail_alias_cols));
	free(path);
	return (rc);
}

int
mail_alias_delete(struct cli_call *call)
{
	json_t	*a;
	char	*path, *addr;
	int	 rc;

	path = mail_path("aliases", call->ca_argv[0], "");
	rc = cli_request("DELETE", path, NULL, &a);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, a);
	else if (!cli_conf.cc_quiet) {
		addr = format_value(json_object_get(a, "address"));
		printf("alias %s: deleted\n", addr);
		free(addr);
	}
	json_decref(a);
	return (CLI_EXIT_OK);
}
