/*
 * opsnctl tenant: add, list, show and change the members (communes, EPCIs,
 * syndicats, ...), suspend, withdraw or reactivate them. A tenant is named
 * by its id, INSEE code or SIREN. Every change carries the ETag just read
 * (If-Match), so that two operators never silently overwrite each other.
 * Imports are in import.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define TENANT_POP_MAX		100000000
#define TENANT_COUNT_MAX	((int64_t)1 << 50)	/* the API's limit */

static const char *const tenant_kinds[] = {
	"commune", "epci", "syndicat", "department", "other"
};

/* suspend, withdraw, activate: the route, and the verb for messages. */
static const struct tenant_action {
	const char	*ta_verb;	/* command word */
	const char	*ta_suffix;	/* after /v1/tenants/{id} */
} tenant_actions[] = {
	{ "suspend",	"/suspend" },
	{ "withdraw",	"/withdraw" },
	{ "activate",	"/activate" },
};

/* The quotas a tenant has, with how its use is shown. */
static const struct tenant_quota {
	const char	*tq_opt;	/* "quota-memory" */
	const char	*tq_field;	/* "quota_memory_mib" in a change */
	const char	*tq_key;	/* "memory_mib" in quotas and usage */
	format_fn	 tq_fmt;
} tenant_quotas[] = {
	{ "quota-vcpus",  "quota_vcpus",      "vcpus",      NULL },
	{ "quota-memory", "quota_memory_mib", "memory_mib", format_mib },
	{ "quota-disk",   "quota_disk_bytes", "disk_bytes", format_size },
	{ "quota-vms",    "quota_vms",        "vms",        NULL },
};

/* What a titre de recettes needs of the member as its debtor. */
static const struct {
	const char	*opt;
	const char	*field;
} tenant_debtor[] = {
	{ "siret", "siret" }, { "address", "address" },
	{ "postcode", "postcode" }, { "town", "town" },
	{ "category", "accounting_category" },
};

static char	*tenant_fmt_parent_ref(json_t *);
static char	*tenant_fmt_parent(json_t *);

static const struct format_col tenant_cols[] = {
	{ "ID",		"id",		NULL },
	{ "KIND",	"kind",		NULL },
	{ "NAME",	"name",		NULL },
	{ "INSEE",	"insee",	NULL },
	{ "SIREN",	"siren",	NULL },
	{ "POPULATION",	"population",	NULL },
	{ "PARENT",	"parent",	tenant_fmt_parent_ref },
	{ "STATUS",	"status",	NULL },
};

/* "use.*" keys are computed from "usage" and "quotas" to print. */
static const struct format_col tenant_fields[] = {
	{ "id",		"id",		NULL },
	{ "kind",	"kind",		NULL },
	{ "name",	"name",		NULL },
	{ "insee",	"insee",	NULL },
	{ "siren",	"siren",	NULL },
	{ "population",	"population",	NULL },
	{ "parent",	"parent",	tenant_fmt_parent },
	{ "status",	"status",	NULL },
	{ "email",	"email",	NULL },
	{ "joined-on",	"joined_on",	NULL },
	{ "left-on",	"left_on",	NULL },
	{ "siret",	"siret",	NULL },
	{ "address",	"address",	NULL },
	{ "postcode",	"postcode",	NULL },
	{ "town",	"town",		NULL },
	{ "category",	"accounting_category", NULL },
	{ "vcpus",	"use.vcpus",	NULL },
	{ "memory",	"use.memory_mib", NULL },
	{ "disk",	"use.disk_bytes", NULL },
	{ "vms",	"use.vms",	NULL },
	{ "version",	"version",	NULL },
	{ "created-at",	"created_at",	format_time },
	{ "updated-at",	"updated_at",	format_time },
};

static char	*tenant_path(const char *, const char *);
static char	*tenant_label(json_t *);
static char	*tenant_use(json_t *, const struct tenant_quota *);
static int	 tenant_print(json_t *);
static int	 tenant_read(const char *, json_t **, char **);
static int	 tenant_write(json_t *, const char *, const char *, json_t *,
		    const char *, json_t **);
static int	 tenant_count(const char *, const char *, int64_t, int64_t,
		    json_t **);
static int	 tenant_quota_value(const struct tenant_quota *, const char *,
		    json_t **);

/* A parent in a table: its SIREN, how the tenants are named. */
static char *
tenant_fmt_parent_ref(json_t *v)
{
	json_t	*ref;

	if (!json_is_object(v))
		return (format_value(v));
	ref = json_object_get(v, "siren");
	if (!json_is_string(ref))
		ref = json_object_get(v, "id");
	return (format_value(ref));
}

/* "CA Le Muretain Agglo (243100633)". */
static char *
tenant_fmt_parent(json_t *v)
{
	char	*name, *ref, *s;

	if (!json_is_object(v))
		return (format_value(v));
	name = format_value(json_object_get(v, "name"));
	ref = tenant_fmt_parent_ref(v);
	xasprintf(&s, "%s (%s)", name, ref);
	free(name);
	free(ref);
	return (s);
}

/* "/v1/tenants/REF" plus suffix, with REF escaped; caller frees. */
static char *
tenant_path(const char *ref, const char *suffix)
{
	char	*e, *path;

	e = cli_escape(ref);
	xasprintf(&path, "/v1/tenants/%s%s", e, suffix);
	free(e);
	return (path);
}

/* "31001 (Agassac)": the tenant as an operator names it; caller frees. */
static char *
tenant_label(json_t *t)
{
	json_t	*ref;
	char	*r, *name, *s;

	ref = json_object_get(t, "insee");
	if (!json_is_string(ref))
		ref = json_object_get(t, "siren");
	if (!json_is_string(ref))
		ref = json_object_get(t, "id");
	r = format_value(ref);
	name = format_value(json_object_get(t, "name"));
	xasprintf(&s, "%s (%s)", r, name);
	free(r);
	free(name);
	return (s);
}

/* "2 of 8 used", "512M used, no limit". */
static char *
tenant_use(json_t *t, const struct tenant_quota *q)
{
	json_t	*use, *limit;
	char	*u, *l, *s;

	use = json_object_get(json_object_get(t, "usage"), q->tq_key);
	limit = json_object_get(json_object_get(t, "quotas"), q->tq_key);
	u = q->tq_fmt != NULL && use != NULL ? q->tq_fmt(use) :
	    format_value(use);
	if (limit == NULL || json_is_null(limit)) {
		xasprintf(&s, "%s used, no limit", u);
		free(u);
		return (s);
	}
	l = q->tq_fmt != NULL ? q->tq_fmt(limit) : format_value(limit);
	xasprintf(&s, "%s of %s used", u, l);
	free(u);
	free(l);
	return (s);
}

/* Print t (consumed) as "field: value" lines, or as JSON. */
static int
tenant_print(json_t *t)
{
	json_t	*flat;
	char	*key, *use;
	size_t	 i;

	if (cli_conf.cc_output == CLI_OUTPUT_JSON || !json_is_object(t))
		return (cli_show_object(t, tenant_fields,
		    nitems(tenant_fields)));
	flat = json_deep_copy(t);
	for (i = 0; i < nitems(tenant_quotas); i++) {
		xasprintf(&key, "use.%s", tenant_quotas[i].tq_key);
		use = tenant_use(t, &tenant_quotas[i]);
		json_object_set_new(flat, key, json_string(use));
		free(use);
		free(key);
	}
	json_decref(t);
	return (cli_show_object(flat, tenant_fields, nitems(tenant_fields)));
}

/*
 * GET the tenant ref names, and its ETag (caller frees) that a change must
 * send back; -1 after printing why.
 */
static int
tenant_read(const char *ref, json_t **t, char **etag)
{
	struct cli_http	 http;
	char		*path, *clean;
	int		 rc;

	*etag = NULL;
	memset(&http, 0, sizeof(http));
	http.h_keep[0] = "ETag";
	path = tenant_path(ref, "");
	rc = cli_request_http("GET", path, NULL, &http, t);
	free(path);
	if (rc == 0 && (http.h_got[0] == NULL || !json_is_object(*t))) {
		clean = format_clean(ref);
		fprintf(stderr, "opsnctl: tenant %s: the controller sent no "
		    "ETag to change it with\n", clean);
		free(clean);
		json_decref(*t);
		*t = NULL;
		rc = -1;
	}
	if (rc == 0) {
		*etag = http.h_got[0];
		http.h_got[0] = NULL;
	}
	cli_http_clear(&http);
	return (rc);
}

/*
 * method on the tenant t (as read with etag) plus suffix, with body
 * (consumed); *out gets the tenant as changed. The path names the id that
 * was read, so the change goes to that very tenant. -1 after printing why;
 * a 412 means it changed since, and nothing was done.
 */
static int
tenant_write(json_t *t, const char *etag, const char *method, json_t *body,
    const char *suffix, json_t **out)
{
	struct cli_http	 http;
	char		*path, *hdr, *label;
	int		 rc;

	memset(&http, 0, sizeof(http));
	xasprintf(&hdr, "If-Match: %s", etag);
	http.h_send[0] = hdr;
	xasprintf(&path, "/v1/tenants/%" JSON_INTEGER_FORMAT "%s",
	    json_integer_value(json_object_get(t, "id")), suffix);
	rc = cli_request_http(method, path, body, &http, out);
	if (rc == -1 && http.h_status == 412) {
		label = tenant_label(t);
		fprintf(stderr, "opsnctl: tenant %s changed while this command "
		    "ran; nothing was done: check it and run the command "
		    "again\n", label);
		free(label);
	}
	cli_http_clear(&http);
	free(path);
	free(hdr);
	return (rc);
}

/* body[field] = the number s, for option opt; -1 after printing why. */
static int
tenant_count(const char *opt, const char *s, int64_t min, int64_t max,
    json_t **out)
{
	int64_t	 n;
	char	*cause;

	if (format_parse_count(s, min, max, &n, &cause) == -1) {
		fprintf(stderr, "opsnctl: --%s: %s\n", opt, cause);
		free(cause);
		return (-1);
	}
	*out = json_integer((json_int_t)n);
	return (0);
}

/* A quota's value for a change: "none" is no limit (null). */
static int
tenant_quota_value(const struct tenant_quota *q, const char *s, json_t **out)
{
	uint64_t	 n;
	char		*cause = NULL;

	if (strcmp(s, "none") == 0) {
		*out = json_null();
		return (0);
	}
	if (strcmp(q->tq_key, "memory_mib") == 0) {
		if (format_parse_mib(s, &n, &cause) == -1)
			goto bad;
		*out = json_integer((json_int_t)n);
		return (0);
	}
	if (strcmp(q->tq_key, "disk_bytes") == 0) {
		if (format_parse_size(s, &n, &cause) == -1)
			goto bad;
		*out = json_integer((json_int_t)n);
		return (0);
	}
	return (tenant_count(q->tq_opt, s, 0, TENANT_COUNT_MAX, out));
bad:
	fprintf(stderr, "opsnctl: --%s: %s, or none for no limit\n",
	    q->tq_opt, cause);
	free(cause);
	return (-1);
}

/* The debtor's options into body; "none" clears a field (null). */
static void
tenant_debtor_fields(struct cli_call *call, json_t *body)
{
	const char	*v;
	size_t		 i;

	for (i = 0; i < nitems(tenant_debtor); i++) {
		if ((v = cli_opt(call, tenant_debtor[i].opt)) == NULL)
			continue;
		json_object_set_new(body, tenant_debtor[i].field,
		    strcmp(v, "none") == 0 ? json_null() : json_string(v));
	}
}

int
tenant_add(struct cli_call *call)
{
	/* Options whose value goes as is, and their field. */
	static const struct {
		const char	*opt;
		const char	*field;
	} texts[] = {
		{ "name", "name" }, { "insee", "insee" }, { "siren", "siren" },
		{ "parent", "parent" }, { "email", "email" },
		{ "joined", "joined_on" },
	};
	const char	*kind = cli_opt(call, "kind"), *v;
	json_t		*body, *n, *t;
	size_t		 i;

	if (kind == NULL || cli_opt(call, "name") == NULL) {
		fprintf(stderr, "opsnctl: tenant add: --kind and --name are "
		    "required\n");
		return (cli_usage(call));
	}
	for (i = 0; i < nitems(tenant_kinds); i++) {
		if (strcmp(kind, tenant_kinds[i]) == 0)
			break;
	}
	if (i == nitems(tenant_kinds)) {
		fprintf(stderr, "opsnctl: --kind: '%s' is not commune, epci, "
		    "syndicat, department or other\n", kind);
		return (cli_usage(call));
	}
	body = json_pack("{s:s}", "kind", kind);
	for (i = 0; i < nitems(texts); i++) {
		if ((v = cli_opt(call, texts[i].opt)) != NULL)
			json_object_set_new(body, texts[i].field,
			    json_string(v));
	}
	tenant_debtor_fields(call, body);
	if ((v = cli_opt(call, "population")) != NULL) {
		if (tenant_count("population", v, 0, TENANT_POP_MAX,
		    &n) == -1) {
			json_decref(body);
			return (cli_usage(call));
		}
		json_object_set_new(body, "population", n);
	}
	if (cli_request("POST", "/v1/tenants", body, &t) == -1)
		return (CLI_EXIT_ERROR);
	return (tenant_print(t));
}

int
tenant_list(struct cli_call *call)
{
	const char	*q[] = {
		"kind", cli_opt(call, "kind"),
		"status", cli_opt(call, "status"),
		"parent", cli_opt(call, "parent"),
		NULL
	};
	char		*path;
	int		 rc;

	path = cli_path_query("/v1/tenants", q);
	rc = cli_show_list(path, tenant_cols, nitems(tenant_cols));
	free(path);
	return (rc);
}

int
tenant_show(struct cli_call *call)
{
	json_t	*t;
	char	*path;
	int	 rc;

	path = tenant_path(call->ca_argv[0], "");
	rc = cli_request("GET", path, NULL, &t);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (tenant_print(t));
}

int
tenant_set(struct cli_call *call)
{
	static const struct {
		const char	*opt;
		const char	*field;
	} texts[] = {
		{ "name", "name" }, { "insee", "insee" }, { "siren", "siren" },
		{ "parent", "parent" }, { "email", "email" },
	};
	json_t		*body, *v, *t = NULL, *done;
	const char	*s;
	char		*etag = NULL;
	size_t		 i;
	int		 rc = CLI_EXIT_ERROR;

	if (cli_opt(call, "parent") != NULL &&
	    cli_opt(call, "no-parent") != NULL) {
		fprintf(stderr, "opsnctl: give --parent or --no-parent, not "
		    "both\n");
		return (cli_usage(call));
	}
	body = json_object();
	for (i = 0; i < nitems(texts); i++) {
		if ((s = cli_opt(call, texts[i].opt)) != NULL)
			json_object_set_new(body, texts[i].field,
			    json_string(s));
	}
	tenant_debtor_fields(call, body);
	if (cli_opt(call, "no-parent") != NULL)
		json_object_set_new(body, "parent", json_null());
	if ((s = cli_opt(call, "population")) != NULL) {
		if (tenant_count("population", s, 0, TENANT_POP_MAX,
		    &v) == -1)
			goto usage;
		json_object_set_new(body, "population", v);
	}
	for (i = 0; i < nitems(tenant_quotas); i++) {
		if ((s = cli_opt(call, tenant_quotas[i].tq_opt)) == NULL)
			continue;
		if (tenant_quota_value(&tenant_quotas[i], s, &v) == -1)
			goto usage;
		json_object_set_new(body, tenant_quotas[i].tq_field, v);
	}
	if (json_object_size(body) == 0) {
		fprintf(stderr, "opsnctl: tenant set: nothing to change\n");
		goto usage;
	}

	if (tenant_read(call->ca_argv[0], &t, &etag) == -1) {
		json_decref(body);
		goto out;
	}
	if (tenant_write(t, etag, "PATCH", body, "", &done) == -1)
		goto out;
	rc = tenant_print(done);
out:
	json_decref(t);
	free(etag);
	return (rc);
usage:
	json_decref(body);
	return (cli_usage(call));
}

int
tenant_action(struct cli_call *call)
{
	const struct tenant_action	*a = NULL;
	json_t				*t, *done;
	char				*etag, *label, *status;
	size_t				 i;
	int				 rc;

	for (i = 0; i < nitems(tenant_actions); i++) {
		if (strcmp(call->ca_cmd->c_path[1],
		    tenant_actions[i].ta_verb) == 0)
			a = &tenant_actions[i];
	}
	if (a == NULL)
		return (cli_usage(call));
	if (tenant_read(call->ca_argv[0], &t, &etag) == -1)
		return (CLI_EXIT_ERROR);
	rc = tenant_write(t, etag, "POST", json_object(), a->ta_suffix, &done);
	json_decref(t);
	free(etag);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, done);
	else if (!cli_conf.cc_quiet) {
		label = tenant_label(done);
		status = format_value(json_object_get(done, "status"));
		printf("tenant %s: %s\n", label, status);
		free(label);
		free(status);
	}
	json_decref(done);
	return (CLI_EXIT_OK);
}
