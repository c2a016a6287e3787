/*
 * The billing subsystem's routes: tariffs, statements (generate, close,
 * show, list, export) and adjustments. Reading needs statements.read (or
 * tariffs.read); every change needs statements.write (or tariffs.write),
 * goes through one transaction with its audit record, and is refused
 * whole when any part of it is wrong.
 *
 * Generating a period reads its usage on the thread pool (about a second
 * per 10^7 usage rows; see docs/billing.md for the figures), then writes
 * the statements on the loop thread in one write transaction; the reply
 * is deferred until then. While a period is being generated, generating
 * a period that shares a day with it, and closing any period, are refused
 * (409 busy): the usage read ahead stays what the writing expects. Exports
 * are read and built on the thread pool too.
 */
#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "members/members.h"
#include "billing.h"
#include "titre.h"

#define ADJUST_REASON_MAX	500
#define ADJUST_MAX_CENTS	((int64_t)100000000000)	/* 1e9 EUR */
/* Exports on the thread pool at once; more get 503 (the pool is small). */
#define EXPORT_MAX_JOBS		2

/* A generation whose usage is being read on the thread pool. */
struct gen_job {
	uv_work_t		 g_work;
	LIST_ENTRY(gen_job)	 g_entry;
	struct api_defer	*g_defer;
	struct period		 g_p;
	char			*g_path;	/* the database */
	struct billing_usage	*g_usage;
	/* Set by the worker. */
	int			 g_rv;
	char			*g_cause;
};

/* An export being read and built on the thread pool. */
struct export_job {
	uv_work_t		 x_work;
	struct api_defer	*x_defer;
	char			*x_path;
	struct period		 x_p;
	int			 x_fmt;
	int			 x_envelope;	/* CSV inside a JSON document */
	struct export_opts	 x_o;
	/* Set by the worker: the reply text, or why there is none. */
	int			 x_rv;
	char			*x_out;
	size_t			 x_len;
	struct export_info	 x_info;
	char			*x_cause;
};

static LIST_HEAD(, gen_job) gen_jobs = LIST_HEAD_INITIALIZER(gen_jobs);
static int	 export_jobs;

static void	billing_route_generate(struct api_req *);
static void	billing_route_close(struct api_req *);
static void	billing_route_statements(struct api_req *);
static void	billing_route_statement(struct api_req *);
static void	billing_route_periods(struct api_req *);
static void	billing_route_adjust(struct api_req *);
static void	billing_route_adjustments(struct api_req *);

static const struct api_route billing_routes[] = {
	{ "GET", "/v1/tariffs", "tariffs.read",
	  API_PLATFORM, NULL, tariff_route_list,
	  "List tariff versions (limit, cursor)" },
	{ "POST", "/v1/tariffs", "tariffs.write",
	  API_PLATFORM, NULL, tariff_route_add,
	  "Add a tariff version (deliberation, effective dates, rates)" },
	{ "GET", "/v1/tariffs/{name}", "tariffs.read",
	  API_PLATFORM, NULL, tariff_route_show,
	  "Show a tariff and its versions (version)" },
	{ "POST", "/v1/tariffs/{name}/default", "tariffs.write",
	  API_PLATFORM, NULL,
	  tariff_route_default, "Make a tariff the default one" },
	{ "POST", "/v1/tariffs/{name}/end", "tariffs.write",
	  API_PLATFORM, NULL, tariff_route_end,
	  "Give an open-ended version its last day" },
	{ "GET", "/v1/tenants/{tenant}/tariff", "tariffs.read",
	  API_MEMBER, "path:tenant",
	  tariff_route_binding, "The tariff a member is billed with" },
	{ "POST", "/v1/tenants/{tenant}/tariff", "tariffs.write",
	  API_PLATFORM, NULL,
	  tariff_route_bind, "Bind a member to a tariff (null: the default)" },
	{ "POST", "/v1/statements/generate", "statements.write",
	  API_PLATFORM, NULL,
	  billing_route_generate,
	  "Write draft statements of a period for every active member" },
	{ "POST", "/v1/statements/close", "statements.write",
	  API_PLATFORM, NULL,
	  billing_route_close, "Close a period: its statements never change" },
	{ "GET", "/v1/statements", "statements.read",
	  API_MEMBER, "query:tenant", billing_route_statements,
	  "List statements, or export a period (format=csv|json|ods, "
	  "summary)" },
	{ "GET", "/v1/statements/{id}", "statements.read",
	  API_MEMBER, "sql:SELECT tenant_id FROM statements WHERE id = :id",
	  billing_route_statement, "Show a statement with its lines" },
	{ "GET", "/v1/billing-periods", "statements.read",
	  API_PLATFORM, NULL,
	  billing_route_periods, "Billing periods: status, totals, checksums" },
	{ "GET", "/v1/billing-periods/{period}/pes", "statements.titres",
	  API_PLATFORM, NULL, titre_route_pes,
	  "A closed period's titres de recettes as a PES V2 file, numbered "
	  "on the first call and the same file afterwards" },
	{ "POST", "/v1/adjustments", "statements.write",
	  API_PLATFORM, NULL, billing_route_adjust,
	  "Add an adjustment for a member's next open statement" },
	{ "GET", "/v1/adjustments", "statements.read",
	  API_MEMBER, "query:tenant",
	  billing_route_adjustments, "List adjustments (tenant, pending)" },
};

/* Billing periods follow the operator's calendar (core/calendar.c). */
static int
billing_init(struct ctl *c, char **cause)
{
	log_info("billing: periods in time zone %s", calendar_tz());
	return (0);
}

static int64_t
billing_scope(struct api_req *r)
{
	const struct api_principal *p = api_principal(r);

	return (p != NULL ? p->ap_tenant : 0);
}

/* The "period" field of a body; -1 after replying 400. */
static int
billing_body_period(struct api_req *r, json_t *body, struct period *p)
{
	static const char *const known[] = { "period", NULL };
	json_t	*v;
	char	*cause = NULL;

	if (params_known_fields(r, body, known) == -1)
		return (-1);
	v = json_object_get(body, "period");
	if (!json_is_string(v)) {
		api_reply_error(r, 400, "missing_field", "period is required "
		    "(2026-10, 2026-Q4 or 2026)");
		return (-1);
	}
	if (period_parse(json_string_value(v), p, &cause) == -1) {
		api_reply_error(r, 400, "bad_field", "%s", cause);
		free(cause);
		return (-1);
	}
	return (0);
}

static const char *
billing_code(int status)
{
	switch (status) {
	case BILLING_EINVAL:
		return ("bad_request");
	case BILLING_ECONFLICT:
		return ("conflict");
	default:
		return ("internal");
	}
}

/* The database file, for a read connection (caller frees). */
static char *
billing_db_path(void)
{
	const char	*path = sqlite3_db_filename(ctl->db, "main");

	return (xstrdup(path != NULL ? path : ""));
}

static void
gen_job_free(struct gen_job *j)
{
	billing_usage_free(j->g_usage);
	free(j->g_path);
	free(j->g_cause);
	free(j);
}

/* On the thread pool: read the usage the generation needs. */
static void
gen_work_cb(uv_work_t *w)
{
	struct gen_job	*j = w->data;
	sqlite3		*db;

	j->g_rv = -1;
	if (store_reader(j->g_path, &db, &j->g_cause) == -1)
		return;
	j->g_rv = billing_usage_read(j->g_usage, db, &j->g_cause);
	store_reader_done(db);
}

/*
 * Back on the loop thread: write the statements in one transaction and
 * answer. The write goes on if the client has gone: it was asked for, and
 * the audit record names who asked (the deferral's stand-in request).
 */
static void
gen_after_cb(uv_work_t *w, int wstatus)
{
	struct gen_job	*j = w->data;
	struct api_defer *d = j->g_defer;
	struct api_req	*r = api_defer_req(d);
	struct billing_gen_result res;
	struct period	*p = &j->g_p;
	json_t		*o;
	int64_t		 count;
	uint64_t	 t0 = util_mono_ms();
	char		*cause = NULL, obj[64], total[48], sum[72];
	int		 status;

	LIST_REMOVE(j, g_entry);
	if (wstatus == UV_ECANCELED) {
		api_defer_reply_error(d, 503, "busy", "generating %s was "
		    "cancelled: the controller is stopping", p->p_label);
		goto out;
	}
	if (j->g_rv == -1) {
		log_warnx("billing: generating %s (request %s): %s",
		    p->p_label, api_request_id(r), j->g_cause);
		api_defer_reply_error(d, 500, "internal", "reading the usage "
		    "of %s failed (request %s)", p->p_label,
		    api_request_id(r));
		goto out;
	}
	/* Its own transaction: see store_begin_alone(). */
	if (store_begin_alone(ctl->db) == -1) {
		api_defer_reply_error(d, 503, "busy", "the database is busy");
		goto out;
	}
	if (billing_generate_usage(ctl->db, p, j->g_usage, &res,
	    &status, &cause) == -1) {
		store_rollback(ctl->db);
		if (status == BILLING_EINTERNAL)
			log_warnx("billing: generating %s: %s", p->p_label,
			    cause);
		api_defer_reply_error(d, status, billing_code(status), "%s",
		    cause);
		goto out;
	}
	money_fmt_cents(res.g_total, '.', total, sizeof(total));
	billing_period_checksum(ctl->db, p->p_label, 0, &count, sum);
	snprintf(obj, sizeof(obj), "statements/%s", p->p_label);
	if (audit_record(r, "statement.generate", obj, json_pack("{s:I,s:I,"
	    "s:s,s:I,s:s}", "statements", (json_int_t)res.g_statements,
	    "revision", (json_int_t)res.g_revision, "total", total, "lines",
	    (json_int_t)res.g_lines, "checksum", sum)) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_defer_reply_error(d, 500, "internal", "storing the "
		    "statements failed");
		goto out;
	}
	log_info("billing: %s generated %s: %lld statements, %lld lines, "
	    "total %s EUR in %lld ms (usage read in %lld ms on the thread "
	    "pool, written in %llu ms)", api_principal(r)->ap_name,
	    p->p_label, (long long)res.g_statements, (long long)res.g_lines,
	    total, (long long)res.g_total_ms, (long long)res.g_usage_ms,
	    (unsigned long long)(util_mono_ms() - t0));
	o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:I,s:s,"
	    "s:s,s:I,s:I}", "period", p->p_label, "status", "draft", "tz",
	    calendar_tz(), "revision", (json_int_t)res.g_revision,
	    "statements", (json_int_t)res.g_statements, "lines",
	    (json_int_t)res.g_lines, "late_usage_lines",
	    (json_int_t)res.g_late_lines, "adjustments",
	    (json_int_t)res.g_adjustments, "removed",
	    (json_int_t)res.g_removed, "total", total, "total_cents",
	    (json_int_t)res.g_total.c, "checksum", sum, "usage_table",
	    billing_have_usage(ctl->db) ? "usage_hourly" : "absent",
	    "elapsed_ms", (json_int_t)res.g_total_ms, "usage_ms",
	    (json_int_t)res.g_usage_ms);
	api_defer_reply_json(d, 200, o);
out:
	free(cause);
	gen_job_free(j);
}

/* The generation running for a period sharing a day with p, or NULL. */
static struct gen_job *
gen_job_overlapping(const struct period *p)
{
	struct gen_job	*j;

	LIST_FOREACH(j, &gen_jobs, g_entry)
		if (j->g_p.p_first < p->p_end && p->p_first < j->g_p.p_end)
			return (j);
	return (NULL);
}

/*
 * POST /v1/statements/generate {"period": "2026-10"}: checked here, usage
 * read on the thread pool, statements written in gen_after_cb().
 */
static void
billing_route_generate(struct api_req *r)
{
	struct gen_job	*j;
	struct period	 p;
	json_t		*body;
	char		*cause = NULL;
	int		 status, rv;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (billing_body_period(r, body, &p) == -1)
		goto out;
	if ((j = gen_job_overlapping(&p)) != NULL) {
		api_reply_error(r, 409, "busy", "statements of %s are being "
		    "generated (request %s); try again once that is done",
		    j->g_p.p_label, api_request_id(api_defer_req(j->g_defer)));
		goto out;
	}
	j = xcalloc(1, sizeof(*j));
	j->g_p = p;
	if ((j->g_usage = billing_usage_plan(ctl->db, &p,
	    &status, &cause)) == NULL) {
		if (status == BILLING_EINTERNAL)
			log_warnx("billing: generating %s: %s", p.p_label,
			    cause);
		api_reply_error(r, status, billing_code(status), "%s", cause);
		gen_job_free(j);
		goto out;
	}
	j->g_path = billing_db_path();
	j->g_work.data = j;
	j->g_defer = api_defer(r);
	if ((rv = uv_queue_work(ctl->loop, &j->g_work, gen_work_cb,
	    gen_after_cb)) != 0) {
		api_defer_reply_error(j->g_defer, 503, "busy", "generating %s "
		    "could not start: %s", p.p_label, uv_strerror(rv));
		gen_job_free(j);
		goto out;
	}
	LIST_INSERT_HEAD(&gen_jobs, j, g_entry);
out:
	free(cause);
	json_decref(body);
}

/* POST /v1/statements/close {"period": "2026-10"} */
static void
billing_route_close(struct api_req *r)
{
	struct period	 p;
	json_t		*body;
	int64_t		 count;
	char		*cause = NULL, obj[64], sum[72];
	int		 status;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (billing_body_period(r, body, &p) == -1)
		goto out;
	/*
	 * A close changes what late usage is compared with, which a running
	 * generation has read ahead: any period waits until it is written.
	 */
	if (!LIST_EMPTY(&gen_jobs)) {
		api_reply_error(r, 409, "busy", "statements of %s are being "
		    "generated; close %s once that is done",
		    LIST_FIRST(&gen_jobs)->g_p.p_label, p.p_label);
		goto out;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	if (billing_close(ctl->db, &p, &count, sum, &status, &cause) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, status, billing_code(status), "%s", cause);
		goto out;
	}
	snprintf(obj, sizeof(obj), "statements/%s", p.p_label);
	if (audit_record(r, "statement.close", obj, json_pack("{s:I,s:s}",
	    "statements", (json_int_t)count, "checksum", sum)) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "closing failed");
		goto out;
	}
	log_notice("billing: %s closed %s (%lld statements, %s)",
	    api_principal(r)->ap_name, p.p_label, (long long)count, sum);
	api_reply_json(r, 200, json_pack("{s:s,s:s,s:I,s:s}", "period",
	    p.p_label, "status", "closed", "statements", (json_int_t)count,
	    "checksum", sum));
out:
	free(cause);
	json_decref(body);
}

/* A boolean query parameter: 1, 0, or -1 after replying 400. */
static int
billing_query_bool(struct api_req *r, const char *name)
{
	const char	*v = api_query(r, name);

	if (v == NULL || strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
		return (0);
	if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || *v == '\0')
		return (1);
	api_reply_error(r, 400, "bad_parameter", "%s must be 1 or 0", name);
	return (-1);
}

/* The tenant query parameter, within the caller's scope; -1 replied. */
static int
billing_query_tenant(struct api_req *r, int64_t *id)
{
	const char	*t = api_query(r, "tenant");
	int64_t		 scope = billing_scope(r);

	*id = scope;
	if (t == NULL)
		return (0);
	*id = tenants_resolve(t);
	if (*id == -1 || (scope != 0 && *id != scope)) {
		api_reply_error(r, 404, "not_found", "no tenant '%.64s' (use "
		    "its id, INSEE code or SIREN)", t);
		return (-1);
	}
	return (0);
}

/*
 * Does the caller want the CSV inside a JSON envelope? Only when it
 * accepts JSON and not CSV (opsnctl does so; curl and spreadsheets get
 * the file itself).
 */
static int
billing_wants_envelope(struct api_req *r)
{
	const char	*a = api_header(r, "accept");

	return (a != NULL && strstr(a, "application/json") != NULL &&
	    strstr(a, "text/csv") == NULL && strstr(a, "*/*") == NULL);
}

static void
export_job_free(struct export_job *x)
{
	json_decref(x->x_info.ei_ids);
	free(x->x_out);
	free(x->x_cause);
	free(x->x_path);
	free(x);
}

/* On the thread pool: read the statements (one snapshot), build the text. */
static void
export_work_cb(uv_work_t *w)
{
	struct export_job	*x = w->data;
	struct export_info	*info = &x->x_info;
	sqlite3			*db;
	json_t			*env;
	char			 buf[48];

	x->x_rv = -1;
	if (store_reader(x->x_path, &db, &x->x_cause) == -1)
		return;
	if (store_exec(db, "BEGIN", &x->x_cause) == -1) {
		store_reader_done(db);
		return;
	}
	x->x_rv = billing_export(db, x->x_p.p_label, x->x_fmt, &x->x_o,
	    &x->x_out, &x->x_len, info, &x->x_cause);
	store_exec(db, "COMMIT", NULL);
	store_reader_done(db);
	if (x->x_rv == -1 || !x->x_envelope || info->ei_period_count == 0)
		return;
	money_fmt_cents(info->ei_total, '.', buf, sizeof(buf));
	env = json_pack("{s:s,s:s,s:b,s:s,s:I,s:I,s:o,s:s,s:I,s:s%}",
	    "period", x->x_p.p_label, "format", "csv", "summary",
	    x->x_o.eo_summary, "checksum", info->ei_checksum, "count",
	    (json_int_t)info->ei_count, "period_count",
	    (json_int_t)info->ei_period_count, "statement_ids", info->ei_ids,
	    "total", buf, "total_cents", (json_int_t)info->ei_total.c,
	    "content", x->x_out, x->x_len);
	info->ei_ids = NULL;	/* the envelope has it */
	if (env == NULL)
		fatalx("billing: json_pack export envelope");
	if (info->ei_next != 0) {
		snprintf(buf, sizeof(buf), "%lld", (long long)info->ei_next);
		json_object_set_new(env, "next_cursor", json_string(buf));
	} else
		json_object_set_new(env, "next_cursor", json_null());
	free(x->x_out);
	if ((x->x_out = json_dumps(env, JSON_COMPACT)) == NULL)
		fatalx("billing: json_dumps export envelope");
	x->x_len = strlen(x->x_out);
	json_decref(env);
}

/* Back on the loop thread: send the export the worker built. */
static void
export_after_cb(uv_work_t *w, int wstatus)
{
	struct export_job	*x = w->data;
	struct export_info	*info = &x->x_info;
	struct api_defer	*d = x->x_defer;
	char			 buf[96];

	export_jobs--;
	if (wstatus == UV_ECANCELED) {
		api_defer_reply_error(d, 503, "busy", "the export was "
		    "cancelled: the controller is stopping");
		goto out;
	}
	if (x->x_rv == -1) {
		log_warnx("billing: export %s (request %s): %s",
		    x->x_p.p_label, api_request_id(api_defer_req(d)),
		    x->x_cause);
		api_defer_reply_error(d, 500, "internal", "the export failed");
		goto out;
	}
	if (info->ei_period_count == 0) {
		api_defer_reply_error(d, 404, "not_found", "period %s has no "
		    "statements (generate them first)", x->x_p.p_label);
		goto out;
	}
	api_defer_set_header(d, "X-Opsn-Checksum", info->ei_checksum);
	snprintf(buf, sizeof(buf), "%lld", (long long)info->ei_count);
	api_defer_set_header(d, "X-Opsn-Statements", buf);
	snprintf(buf, sizeof(buf), "%lld", (long long)info->ei_period_count);
	api_defer_set_header(d, "X-Opsn-Period-Statements", buf);
	if (info->ei_next != 0) {
		snprintf(buf, sizeof(buf), "%lld", (long long)info->ei_next);
		api_defer_set_header(d, "X-Opsn-Next-Cursor", buf);
	}
	if (x->x_fmt == EXPORT_JSON || x->x_envelope)
		api_defer_reply_raw(d, 200, "application/json", x->x_out,
		    x->x_len);
	else if (x->x_fmt == EXPORT_ODS) {
		snprintf(buf, sizeof(buf), "attachment; filename=\"opsn-%s-"
		    "statements.ods\"", x->x_p.p_label);
		api_defer_set_header(d, "Content-Disposition", buf);
		api_defer_reply_raw(d, 200, ODS_MIMETYPE, x->x_out, x->x_len);
	} else {
		snprintf(buf, sizeof(buf), "attachment; filename=\"opsn-%s-"
		    "%s.csv\"", x->x_p.p_label, x->x_o.eo_summary ? "summary" :
		    "lines");
		api_defer_set_header(d, "Content-Disposition", buf);
		api_defer_reply_raw(d, 200, "text/csv; charset=utf-8",
		    x->x_out, x->x_len);
	}
	x->x_out = NULL;	/* the reply has it */
out:
	export_job_free(x);
}

/* GET /v1/statements?period=&format=csv|json&summary=&sep=&decimal= */
static void
billing_export_route(struct api_req *r, const char *period, int64_t tenant)
{
	struct export_opts o;
	struct export_job *x;
	const char	*format = api_query(r, "format");
	const char	*sep = api_query(r, "sep");
	const char	*dec = api_query(r, "decimal");
	int64_t		 after;
	struct period	 p;
	char		*cause = NULL;
	int		 fmt, limit, summary, rv;

	memset(&o, 0, sizeof(o));
	o.eo_sep = ';';
	o.eo_point = ',';
	o.eo_tenant = tenant;
	if (strcmp(format, "csv") == 0)
		fmt = EXPORT_CSV;
	else if (strcmp(format, "json") == 0)
		fmt = EXPORT_JSON;
	else if (strcmp(format, "ods") == 0)
		fmt = EXPORT_ODS;
	else {
		api_reply_error(r, 400, "bad_parameter", "format must be csv, "
		    "json or ods");
		return;
	}
	if (period_parse(period, &p, &cause) == -1) {
		api_reply_error(r, 400, "bad_parameter", "%s", cause);
		free(cause);
		return;
	}
	if ((summary = billing_query_bool(r, "summary")) == -1)
		return;
	o.eo_summary = summary;
	if (sep != NULL) {
		if (strcmp(sep, ";") == 0 || strcmp(sep, "semicolon") == 0)
			o.eo_sep = ';';
		else if (strcmp(sep, ",") == 0 || strcmp(sep, "comma") == 0)
			o.eo_sep = ',';
		else if (strcmp(sep, "tab") == 0 || strcmp(sep, "\t") == 0)
			o.eo_sep = '\t';
		else {
			api_reply_error(r, 400, "bad_parameter", "sep must be "
			    "';', ',' or tab");
			return;
		}
	}
	if (dec != NULL) {
		if (strcmp(dec, "comma") == 0 || strcmp(dec, ",") == 0)
			o.eo_point = ',';
		else if (strcmp(dec, "point") == 0 || strcmp(dec, ".") == 0)
			o.eo_point = '.';
		else {
			api_reply_error(r, 400, "bad_parameter", "decimal must "
			    "be comma or point");
			return;
		}
	}
	if (o.eo_sep == o.eo_point && fmt == EXPORT_CSV)
		log_debug("billing: export with the same separator and decimal "
		    "mark: numbers get quoted");
	if (api_query(r, "limit") != NULL || api_query(r, "cursor") != NULL) {
		if (params_page_id(r, &limit, &after) == -1)
			return;
		o.eo_limit = limit;
		o.eo_after = after;
	}
	if (export_jobs >= EXPORT_MAX_JOBS) {
		api_set_header(r, "Retry-After", "2");
		api_reply_error(r, 503, "busy", "%d exports are running; try "
		    "again shortly", export_jobs);
		return;
	}
	x = xcalloc(1, sizeof(*x));
	x->x_p = p;
	x->x_fmt = fmt;
	x->x_o = o;
	x->x_envelope = fmt == EXPORT_CSV && billing_wants_envelope(r);
	x->x_path = billing_db_path();
	x->x_work.data = x;
	x->x_defer = api_defer(r);
	if ((rv = uv_queue_work(ctl->loop, &x->x_work, export_work_cb,
	    export_after_cb)) != 0) {
		api_defer_reply_error(x->x_defer, 503, "busy", "the export "
		    "could not start: %s", uv_strerror(rv));
		export_job_free(x);
		return;
	}
	export_jobs++;
}

/* GET /v1/statements: a list of statements, or an export with format. */
static void
billing_route_statements(struct api_req *r)
{
	const char	*period = api_query(r, "period");
	const char	*status = api_query(r, "status");
	int64_t		 after;
	sqlite3_stmt	*st;
	struct cents	 total;
	int64_t		 tenant;
	char		*next = NULL, buf[48];
	int		 limit, n = 0;
	json_t		*items;

	if (billing_query_tenant(r, &tenant) == -1)
		return;
	if (api_query(r, "format") != NULL) {
		if (period == NULL) {
			api_reply_error(r, 400, "bad_parameter", "an export "
			    "needs a period");
			return;
		}
		billing_export_route(r, period, tenant);
		return;
	}
	if (status != NULL && strcmp(status, "draft") != 0 &&
	    strcmp(status, "closed") != 0) {
		api_reply_error(r, 400, "bad_parameter", "status must be draft "
		    "or closed");
		return;
	}
	if (params_page_id(r, &limit, &after) == -1)
		return;
	items = json_array();
	st = store_prepare(ctl->db, "SELECT s.id, s.period, s.status, "
	    "s.tenant_id, s.insee, s.siren, s.member_name, s.total_cents, "
	    "s.checksum, (SELECT count(*) FROM statement_lines l WHERE "
	    "l.statement_id = s.id) FROM statements s WHERE s.id > ?1 AND "
	    "(?2 IS NULL OR s.period = ?2) AND (?3 = 0 OR s.tenant_id = ?3) "
	    "AND (?4 IS NULL OR s.status = ?4) ORDER BY s.id LIMIT ?5");
	sqlite3_bind_int64(st, 1, after);
	if (period != NULL)
		sqlite3_bind_text(st, 2, period, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, tenant);
	if (status != NULL)
		sqlite3_bind_text(st, 4, status, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			xasprintf(&next, "%lld", (long long)
			    sqlite3_column_int64(st, 0) - 1);
			break;
		}
		total.c = sqlite3_column_int64(st, 7);
		money_fmt_cents(total, '.', buf, sizeof(buf));
		json_array_append_new(items, json_pack("{s:I,s:s,s:s,s:I,s:s?,"
		    "s:s?,s:s,s:s,s:I,s:s,s:I}", "id", (json_int_t)
		    sqlite3_column_int64(st, 0), "period",
		    sqlite3_column_text(st, 1), "status",
		    sqlite3_column_text(st, 2), "tenant", (json_int_t)
		    sqlite3_column_int64(st, 3), "insee",
		    sqlite3_column_text(st, 4), "siren",
		    sqlite3_column_text(st, 5), "member",
		    sqlite3_column_text(st, 6), "total", buf, "total_cents",
		    (json_int_t)total.c, "checksum",
		    sqlite3_column_text(st, 8), "lines", (json_int_t)
		    sqlite3_column_int64(st, 9)));
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, next);
}

/* GET /v1/statements/{id} */
static void
billing_route_statement(struct api_req *r)
{
	const char	*ref = api_param(r, "id");
	char		*end;
	long long	 id = strtoll(ref, &end, 10);
	int64_t		 scope = billing_scope(r);
	json_t		*doc;

	doc = *ref != '\0' && *end == '\0' && id > 0 ?
	    billing_statement_json(ctl->db, id) : NULL;
	if (doc != NULL && scope != 0 && json_integer_value(json_object_get(
	    json_object_get(doc, "member"), "id")) != scope) {
		json_decref(doc);
		doc = NULL;
	}
	if (doc == NULL) {
		api_reply_error(r, 404, "not_found", "no statement '%.32s'",
		    ref);
		return;
	}
	api_reply_json(r, 200, doc);
}

/* GET /v1/billing-periods */
static void
billing_route_periods(struct api_req *r)
{
	sqlite3_stmt	*st;
	struct cents	 total;
	char		 buf[48], gen[32], closed[32], first[16], last[16];
	json_t		*items;

	items = json_array();
	st = store_prepare(ctl->db, "SELECT p.period, p.status, p.revision, "
	    "p.tz, p.generated_at, p.closed_at, p.first_day, p.end_day, "
	    "(SELECT count(*) FROM statements s WHERE s.period = p.period AND "
	    "(?1 = 0 OR s.tenant_id = ?1)), (SELECT coalesce(sum(total_cents), "
	    "0) FROM statements s WHERE s.period = p.period AND (?1 = 0 OR "
	    "s.tenant_id = ?1)), p.checksum FROM billing_periods p ORDER BY "
	    "p.first_day, p.end_day");
	sqlite3_bind_int64(st, 1, billing_scope(r));
	while (store_step(st) == SQLITE_ROW) {
		total.c = sqlite3_column_int64(st, 9);
		money_fmt_cents(total, '.', buf, sizeof(buf));
		util_time_fmt(sqlite3_column_int64(st, 4), gen, sizeof(gen));
		if (sqlite3_column_type(st, 5) != SQLITE_NULL)
			util_time_fmt(sqlite3_column_int64(st, 5), closed,
			    sizeof(closed));
		period_fmt_day(sqlite3_column_int64(st, 6), first,
		    sizeof(first));
		period_fmt_day(sqlite3_column_int64(st, 7) - 1, last,
		    sizeof(last));
		json_array_append_new(items, json_pack("{s:s,s:s,s:I,s:s,s:s,"
		    "s:s,s:s,s:o,s:I,s:s,s:I,s:o}", "period",
		    sqlite3_column_text(st, 0), "status",
		    sqlite3_column_text(st, 1), "revision", (json_int_t)
		    sqlite3_column_int64(st, 2), "tz",
		    sqlite3_column_text(st, 3), "from", first, "to", last,
		    "generated_at", gen, "closed_at",
		    sqlite3_column_type(st, 5) != SQLITE_NULL ?
		    json_string(closed) : json_null(), "statements",
		    (json_int_t)sqlite3_column_int64(st, 8), "total", buf,
		    "total_cents", (json_int_t)total.c, "checksum",
		    sqlite3_column_type(st, 10) != SQLITE_NULL ?
		    json_string((const char *)sqlite3_column_text(st, 10)) :
		    json_null()));
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, NULL);
}

#define ADJ_COLS "a.id, a.tenant_id, t.insee, t.siren, t.name, " \
	"a.amount_cents, a.reason, a.corrects_period, a.statement_id, " \
	"s.period, s.status, a.created_at, a.created_by"
#define ADJ_FROM " FROM adjustments a JOIN tenants t ON t.id = a.tenant_id " \
	"LEFT JOIN statements s ON s.id = a.statement_id "

static json_t *
billing_adj_json(sqlite3_stmt *st)
{
	struct cents	 c;
	char		 buf[48], at[32];

	c.c = sqlite3_column_int64(st, 5);
	money_fmt_cents(c, '.', buf, sizeof(buf));
	util_time_fmt(sqlite3_column_int64(st, 11), at, sizeof(at));
	return (json_pack("{s:I,s:{s:I,s:s?,s:s?,s:s},s:s,s:I,s:s,s:s?,s:o,"
	    "s:s?,s:s,s:s,s:s}", "id", (json_int_t)sqlite3_column_int64(st, 0),
	    "tenant", "id", (json_int_t)sqlite3_column_int64(st, 1), "insee",
	    sqlite3_column_text(st, 2), "siren", sqlite3_column_text(st, 3),
	    "name", sqlite3_column_text(st, 4), "amount", buf, "amount_cents",
	    (json_int_t)c.c, "reason", sqlite3_column_text(st, 6),
	    "corrects_period", sqlite3_column_text(st, 7), "statement",
	    sqlite3_column_type(st, 8) == SQLITE_NULL ? json_null() :
	    json_integer(sqlite3_column_int64(st, 8)), "statement_period",
	    sqlite3_column_text(st, 9), "state",
	    sqlite3_column_type(st, 8) == SQLITE_NULL ? "pending" :
	    strcmp((const char *)sqlite3_column_text(st, 10), "closed") == 0 ?
	    "billed" : "on_draft", "created_at", at, "created_by",
	    sqlite3_column_text(st, 12)));
}

/* POST /v1/adjustments {"tenant", "amount": "-12.50", "reason", "period"} */
static void
billing_route_adjust(struct api_req *r)
{
	static const char *const known[] = { "tenant", "amount", "reason",
	    "period", NULL };
	struct period	 p;
	struct cents	 amount;
	json_t		*body, *v, *o = NULL;
	sqlite3_stmt	*st;
	int64_t		 tenant, id;
	const char	*reason, *corrects = NULL;
	char		*cause = NULL, obj[64];

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	v = json_object_get(body, "tenant");
	if (!json_is_string(v)) {
		api_reply_error(r, 400, "missing_field", "tenant is required "
		    "(its id, INSEE code or SIREN)");
		goto out;
	}
	if ((tenant = tenants_resolve(json_string_value(v))) == -1 ||
	    (billing_scope(r) != 0 && billing_scope(r) != tenant)) {
		api_reply_error(r, 400, "bad_field", "no tenant '%.64s'",
		    json_string_value(v));
		goto out;
	}
	v = json_object_get(body, "amount");
	if (!json_is_string(v)) {
		api_reply_error(r, 400, "bad_field", "amount must be a string "
		    "in euros such as \"-12.50\" (a JSON number is refused: "
		    "money is exact)");
		goto out;
	}
	if (money_parse_cents(json_string_value(v), &amount, &cause) == -1) {
		api_reply_error(r, 400, "bad_field", "amount: %s", cause);
		goto out;
	}
	if (amount.c == 0 || amount.c > ADJUST_MAX_CENTS ||
	    amount.c < -ADJUST_MAX_CENTS) {
		api_reply_error(r, 400, "bad_field", "amount must not be zero "
		    "and at most 1000000000.00 either way");
		goto out;
	}
	v = json_object_get(body, "reason");
	if (!json_is_string(v) || !tenants_text_ok(json_string_value(v),
	    ADJUST_REASON_MAX)) {
		api_reply_error(r, 400, "bad_field", "reason is required: 1 to "
		    "%d characters without control characters",
		    ADJUST_REASON_MAX);
		goto out;
	}
	reason = json_string_value(v);
	if ((v = json_object_get(body, "period")) != NULL && !json_is_null(v)) {
		if (!json_is_string(v) || period_parse(json_string_value(v),
		    &p, &cause) == -1) {
			api_reply_error(r, 400, "bad_field", "period: %s",
			    cause ? cause : "must be a string");
			goto out;
		}
		corrects = p.p_label;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_prepare(ctl->db, "INSERT INTO adjustments (tenant_id, "
	    "amount_cents, reason, corrects_period, created_at, created_by) "
	    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id");
	sqlite3_bind_int64(st, 1, tenant);
	sqlite3_bind_int64(st, 2, amount.c);
	sqlite3_bind_text(st, 3, reason, -1, SQLITE_STATIC);
	if (corrects != NULL)
		sqlite3_bind_text(st, 4, corrects, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, util_now());
	sqlite3_bind_text(st, 6, api_principal(r)->ap_name, -1,
	    SQLITE_STATIC);
	if (store_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		goto fail;
	}
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (billing_attach_pending(ctl->db, tenant, &cause) == -1)
		goto fail;
	snprintf(obj, sizeof(obj), "tenant/%lld", (long long)tenant);
	if (audit_record(r, "adjustment.add", obj, json_pack("{s:I,s:O,s:s,"
	    "s:s?}", "adjustment", (json_int_t)id, "amount",
	    json_object_get(body, "amount"), "reason", reason,
	    "corrects_period", corrects)) == -1 ||
	    store_commit(ctl->db) == -1)
		goto fail;
	st = store_prepare(ctl->db, "SELECT " ADJ_COLS ADJ_FROM "WHERE a.id = "
	    "?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW)
		o = billing_adj_json(st);
	sqlite3_finalize(st);
	api_reply_json(r, 201, o);
	goto out;
fail:
	if (cause != NULL)
		log_warnx("billing: adjustment: %s", cause);
	store_rollback(ctl->db);
	api_reply_error(r, 500, "internal", "storing the adjustment failed");
out:
	free(cause);
	json_decref(body);
}

/* GET /v1/adjustments?tenant=&pending=1&limit=&cursor= */
static void
billing_route_adjustments(struct api_req *r)
{
	sqlite3_stmt	*st;
	int64_t		 after;
	int64_t		 tenant;
	int		 limit, n = 0, pending;
	char		*next = NULL;
	json_t		*items;

	if (billing_query_tenant(r, &tenant) == -1 ||
	    (pending = billing_query_bool(r, "pending")) == -1 ||
	    params_page_id(r, &limit, &after) == -1)
		return;
	items = json_array();
	st = store_prepare(ctl->db, "SELECT " ADJ_COLS ADJ_FROM "WHERE a.id > "
	    "?1 AND (?2 = 0 OR a.tenant_id = ?2) AND (?3 = 0 OR "
	    "a.statement_id IS NULL) ORDER BY a.id LIMIT ?4");
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, tenant);
	sqlite3_bind_int(st, 3, pending);
	sqlite3_bind_int(st, 4, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			xasprintf(&next, "%lld", (long long)
			    sqlite3_column_int64(st, 0) - 1);
			break;
		}
		json_array_append_new(items, billing_adj_json(st));
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, next);
}

const struct ctl_module billing_module = {
	.m_name = "billing",
	.m_init = billing_init,
	.m_routes = billing_routes,
	.m_nroutes = nitems(billing_routes),
};
