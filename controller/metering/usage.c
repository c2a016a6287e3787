/*
 * Metering's routes: GET /v1/usage (JSON or CSV for a spreadsheet) and
 * GET /metrics (Prometheus text). Units, decimal marks, CSV cells and the
 * operator's calendar are pure functions, tested on their own.
 *
 * A usage query may cover a year of every member's hours: it runs on the
 * thread pool with a read connection of its own, which also builds the
 * whole reply text; the loop thread only checks the parameters and sends.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "members/members.h"
#include "metering.h"

#define USAGE_MAX_RANGE		(400 * 86400LL)	/* a year and some */
/*
 * Usage queries on the thread pool at once; more get 503. The pool is
 * small (4 threads) and shared with metering's rollups and billing: a
 * query that may read many rows (every member, more than two months, per
 * resource or day) is one of USAGE_MAX_HEAVY; one member's months read a
 * few totals each and queue for the pool.
 */
#define USAGE_MAX_JOBS		64
#define USAGE_MAX_HEAVY		2


static void	usage_get(struct api_req *);

const struct api_route metering_routes[METERING_NROUTES] = {
	{ "GET", "/v1/usage", "usage.read",
	  API_MEMBER, "query:tenant", usage_get,
	  "Usage per tenant, resource and metric (tenant, from, to, group=metric"
	  "|resource|day|month, format=json|csv|ods, sep, decimal)" },
};

/* ---- units ------------------------------------------------------------ */

static const struct meter_unit metering_units[] = {
	{ "vcpu_seconds", "vCPU-second", "vCPU-hour", 3600, 4 },
	{ "memory_mib_seconds", "MiB-second", "GiB-hour", 1024 * 3600, 4 },
	{ "disk_mib_seconds", "MiB-second", "GiB-hour", 1024 * 3600, 4 },
	{ "disk_used_mib_seconds", "MiB-second", "GiB-hour", 1024 * 3600, 4 },
	{ "cpu_ns", "nanosecond", "CPU-second", 1000000000, 3 },
	{ "net_rx_bytes", "byte", "byte", 1, 0 },
	{ "net_tx_bytes", "byte", "byte", 1, 0 },
	{ "mailbox_seconds", "mailbox-second", "mailbox-day", 86400, 4 },
	{ "mailbox_mib_seconds", "MiB-second", "GiB-hour", 1024 * 3600, 4 },
	{ "site_seconds", "site-second", "site-day", 86400, 4 },
	{ "site_mib_seconds", "MiB-second", "GiB-hour", 1024 * 3600, 4 },
};

/* The display unit of a metric, or NULL. */
const struct meter_unit *
metering_unit(const char *metric)
{
	size_t	 i;

	for (i = 0; i < nitems(metering_units); i++)
		if (strcmp(metering_units[i].mu_metric, metric) == 0)
			return (&metering_units[i]);
	return (NULL);
}

/* q / div with dec decimals, half up, integers only. */
void
metering_decimal(int64_t q, int64_t div, int dec, char mark, char *buf,
    size_t len)
{
	__int128	 scaled, p10 = 1;
	int64_t		 ip, fp;
	int		 neg = q < 0, i;

	for (i = 0; i < dec; i++)
		p10 *= 10;
	scaled = (__int128)(neg ? -(__int128)q : q) * p10;
	scaled = (scaled + div / 2) / div;
	ip = (int64_t)(scaled / p10);
	fp = (int64_t)(scaled % p10);
	if (dec == 0)
		snprintf(buf, len, "%s%lld", neg ? "-" : "", (long long)ip);
	else
		snprintf(buf, len, "%s%lld%c%0*lld", neg ? "-" : "",
		    (long long)ip, mark, dec, (long long)fp);
}

/* ---- CSV ------------------------------------------------------------- */

static void
usage_buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		while (*len + n + 1 > *cap)
			*cap = *cap ? *cap * 2 : 4096;
		*buf = xrealloc(*buf, *cap);
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
}

/*
 * One cell: quoted when it holds the separator, a quote or a line break;
 * a text cell starting like a formula (= + - @) gets a leading apostrophe
 * so a spreadsheet shows it instead of running it.
 */
void
metering_csv_cell(char **buf, size_t *len, size_t *cap, const char *cell,
    char sep, int text)
{
	int	 quote = strchr(cell, sep) != NULL || strpbrk(cell,
		    "\"\r\n") != NULL;
	const char *p;

	if (quote)
		usage_buf_add(buf, len, cap, "\"", 1);
	if (text && strchr("=+-@\t\r", cell[0]) != NULL && cell[0] != '\0')
		usage_buf_add(buf, len, cap, "'", 1);
	for (p = cell; *p != '\0'; p++) {
		if (*p == '"')
			usage_buf_add(buf, len, cap, "\"", 1);
		usage_buf_add(buf, len, cap, p, 1);
	}
	if (quote)
		usage_buf_add(buf, len, cap, "\"", 1);
}

/* ---- GET /v1/usage ---------------------------------------------------- */

enum usage_group { G_METRIC, G_RESOURCE, G_DAY, G_MONTH };

static const char *const usage_groups[] = { "metric", "resource", "day",
	"month", NULL };

static int
usage_word(const char *v, const char *const *words)
{
	int	 i;

	for (i = 0; words[i] != NULL; i++)
		if (strcmp(v, words[i]) == 0)
			return (i);
	return (-1);
}

/* from/to: a date is local midnight in the operator's zone. */
static int
usage_time(const char *s, int64_t *out)
{
	int	 y, m, d;
	char	 tail;

	if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) == 3 &&
	    strlen(s) == 10) {
		if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31)
			return (-1);
		*out = calendar_midnight(y, m, d);
		return (0);
	}
	return (params_parse_time(s, out));
}

static void
usage_fmt_period(int64_t t, int month, char *buf, size_t len)
{
	struct tm	 tm;

	calendar_local(t, &tm);
	if (month)
		strftime(buf, len, "%Y-%m", &tm);
	else
		strftime(buf, len, "%Y-%m-%d", &tm);
}

struct usage_q {
	enum usage_group g;
	int		 csv;
	int		 ods;		/* an OpenDocument spreadsheet */
	char		 sep, mark;
	int64_t		 tenant;	/* >0 one tenant, 0 all, -1 platform */
	int64_t		 from, to;
	const char	*tz;		/* static */
};

/* One GET /v1/usage on the thread pool. */
struct usage_job {
	uv_work_t	 j_work;
	struct api_defer *j_defer;
	struct usage_q	 j_q;
	char		*j_path;	/* the database */
	/* Set by the worker: the reply text, or why there is none. */
	char		*j_out;
	size_t		 j_len;
	char		*j_cause;
	uint64_t	 j_ms;
	int		 j_heavy;
};

static int	 usage_jobs;	/* on the thread pool */
static int	 usage_heavy;	/* of which heavy */

/* The start of the month after the one that starts at m. */
static int64_t
usage_next_month(int64_t m)
{
	return (calendar_month(m + 32 * 86400));
}

/*
 * One source of rows for metering_usage_sql(): table t with its time
 * column (hour, day or month) in [?lo, ?hi), the period and resource
 * columns the grouping wants, and the tenant filter an index can serve.
 */
static void
usage_source(char **sql, enum meter_by by, int64_t tenant, const char *t,
    const char *time, int lo, int hi)
{
	const char	*period, *res, *who, *sep = **sql ? " UNION ALL " : "";
	char		*s;
	int		 monthly = strcmp(t, "usage_monthly") == 0;

	if (by == METER_BY_DAY)
		period = strcmp(time, "day") == 0 ? "day" : "opsn_day(hour)";
	else if (by == METER_BY_MONTH)
		period = strcmp(time, "hour") == 0 ? "opsn_month(hour)" :
		    "month";
	else
		period = "0";
	res = by == METER_BY_RESOURCE ? "resource" : "''";
	if (tenant > 0)
		who = " AND tenant_id = ?3";
	else if (tenant == -1)
		who = monthly ? " AND tenant_id = 0" : " AND tenant_id IS NULL";
	else
		who = "";
	xasprintf(&s, "%s%sSELECT %s AS tid, %s AS period, kind, %s AS res, "
	    "metric, quantity AS q FROM %s WHERE %s >= ?%d AND %s < ?%d%s",
	    *sql, sep, monthly ? "tenant_id" : "coalesce(tenant_id, 0)", period,
	    res, t, time, lo, time, hi, who);
	free(*sql);
	*sql = s;
}

/*
 * The usage rows of [from, to) (see metering.h). Whole months come from
 * the monthly totals (a few rows per member); the days before the first
 * and after the last from VMs' hours (usage_hourly) and mailboxes' and
 * sites' days (usage_daily: a day counts where it starts). Per resource
 * or day, every row comes from the hours and days.
 */
char *
metering_usage_sql(enum meter_by by, int64_t tenant, int64_t from,
    int64_t to, int64_t *m1p, int64_t *m2p)
{
	char	*sql = xstrdup("");
	int64_t	 m1, m2;

	m1 = calendar_month(from) == from ? from :
	    usage_next_month(calendar_month(from));
	m2 = calendar_month(to);
	if (m1 >= m2 || by == METER_BY_DAY || by == METER_BY_RESOURCE)
		m1 = m2 = to;
	if (m1 < m2)
		usage_source(&sql, by, tenant, "usage_monthly", "month", 4, 5);
	usage_source(&sql, by, tenant, "usage_hourly", "hour", 1, 4);
	usage_source(&sql, by, tenant, "usage_daily", "day", 1, 4);
	if (m1 < m2) {
		usage_source(&sql, by, tenant, "usage_hourly", "hour", 5, 2);
		usage_source(&sql, by, tenant, "usage_daily", "day", 5, 2);
	}
	*m1p = m1;
	*m2p = m2;
	return (sql);
}

/* The usage query of GET /v1/usage, grouped and named. */
static sqlite3_stmt *
usage_prepare(sqlite3 *db, const struct usage_q *q)
{
	static const enum meter_by by[] = { METER_BY_TOTAL, METER_BY_RESOURCE,
	    METER_BY_DAY, METER_BY_MONTH };
	char		*src, *sql;
	sqlite3_stmt	*st;
	int64_t		 m1, m2;

	src = metering_usage_sql(by[q->g], q->tenant, q->from, q->to, &m1,
	    &m2);
	xasprintf(&sql, "SELECT nullif(s.tid, 0), t.name, t.insee, t.siren, "
	    "s.period, s.kind, s.res, s.metric, sum(s.q) FROM (%s) s LEFT JOIN "
	    "tenants t ON t.id = s.tid GROUP BY s.tid, s.period, s.kind, "
	    "s.res, s.metric HAVING sum(s.q) != 0 ORDER BY s.tid, s.period, "
	    "s.kind, s.res, s.metric", src);
	st = store_stmt(db, sql);
	free(src);
	free(sql);
	sqlite3_bind_int64(st, 1, q->from);
	sqlite3_bind_int64(st, 2, q->to);
	sqlite3_bind_int64(st, 3, q->tenant);
	sqlite3_bind_int64(st, 4, m1);
	sqlite3_bind_int64(st, 5, m2);
	return (st);
}

static const char *
usage_col_text(sqlite3_stmt *st, int i)
{
	const unsigned char	*s = sqlite3_column_text(st, i);

	return (s != NULL ? (const char *)s : "");
}

/*
 * The JSON reply text into *out; -1 if reading failed. Any thread.
 * Written straight from the rows: a day of every VM by resource is some
 * hundreds of kilobytes, which a document tree would hold several times
 * over.
 */
static int
usage_build_json(const struct usage_q *q, sqlite3_stmt *st, char **out,
    size_t *len)
{
	struct jsonw		 w = { 0 };
	const struct meter_unit	*u;
	char			 num[64], per[16], buf[32];
	int64_t			 qty;
	int			 rc;

	jsonw_obj(&w);
	util_time_fmt(q->from, buf, sizeof(buf));
	jsonw_key(&w, "from");
	jsonw_str(&w, buf);
	util_time_fmt(q->to, buf, sizeof(buf));
	jsonw_key(&w, "to");
	jsonw_str(&w, buf);
	jsonw_key(&w, "group");
	jsonw_str(&w, usage_groups[q->g]);
	jsonw_key(&w, "timezone");
	jsonw_str(&w, q->tz);
	jsonw_key(&w, "items");
	jsonw_arr(&w);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		jsonw_obj(&w);
		jsonw_key(&w, "tenant");
		if (sqlite3_column_type(st, 0) == SQLITE_NULL)
			jsonw_null(&w);
		else
			jsonw_int(&w, sqlite3_column_int64(st, 0));
		jsonw_key(&w, "tenant_name");
		jsonw_col_text(&w, st, 1);
		if (q->g == G_DAY || q->g == G_MONTH) {
			usage_fmt_period(sqlite3_column_int64(st, 4),
			    q->g == G_MONTH, per, sizeof(per));
			jsonw_key(&w, "period");
			jsonw_str(&w, per);
		}
		jsonw_key(&w, "kind");
		jsonw_str(&w, usage_col_text(st, 5));
		if (q->g == G_RESOURCE) {
			jsonw_key(&w, "resource");
			jsonw_str(&w, usage_col_text(st, 6));
		}
		jsonw_key(&w, "metric");
		jsonw_str(&w, usage_col_text(st, 7));
		qty = sqlite3_column_int64(st, 8);
		jsonw_key(&w, "quantity");
		jsonw_int(&w, qty);
		if ((u = metering_unit(usage_col_text(st, 7))) != NULL) {
			jsonw_key(&w, "unit");
			jsonw_str(&w, u->mu_base);
			metering_decimal(qty, u->mu_divisor, u->mu_decimals,
			    '.', num, sizeof(num));
			jsonw_key(&w, "display_quantity");
			jsonw_str(&w, num);
			jsonw_key(&w, "display_unit");
			jsonw_str(&w, u->mu_display);
		}
		jsonw_obj_end(&w);
	}
	if (rc != SQLITE_DONE) {
		jsonw_free(&w);
		return (-1);
	}
	jsonw_arr_end(&w);
	jsonw_obj_end(&w);
	*out = jsonw_take(&w, len);
	return (0);
}

#define USAGE_MAX_COLS	10

/* The columns of a CSV or spreadsheet reply, into hdr; how many. */
static size_t
usage_header(const struct usage_q *q, const char **hdr)
{
	size_t	 nh = 0;

	hdr[nh++] = "tenant_id";
	hdr[nh++] = "insee";
	hdr[nh++] = "siren";
	hdr[nh++] = "tenant_name";
	if (q->g == G_DAY || q->g == G_MONTH)
		hdr[nh++] = "period";
	hdr[nh++] = "kind";
	if (q->g == G_RESOURCE)
		hdr[nh++] = "resource";
	hdr[nh++] = "metric";
	hdr[nh++] = "quantity";
	hdr[nh++] = "unit";
	return (nh);
}

/* The CSV reply text into *out; -1 if reading failed. Any thread. */
static int
usage_build_csv(const struct usage_q *q, sqlite3_stmt *st, char **out,
    size_t *outlen)
{
	const struct meter_unit	*u;
	char			*b = NULL, num[64], per[16], sep[2];
	size_t			 len = 0, cap = 0, i;
	const char		*hdr[USAGE_MAX_COLS];
	size_t			 nh;
	int64_t			 qty;
	int			 rc;

	sep[0] = q->sep;
	sep[1] = '\0';
	/* The BOM tells LibreOffice and Excel the file is UTF-8. */
	usage_buf_add(&b, &len, &cap, "\xef\xbb\xbf", 3);
	nh = usage_header(q, hdr);
	for (i = 0; i < nh; i++) {
		if (i > 0)
			usage_buf_add(&b, &len, &cap, sep, 1);
		usage_buf_add(&b, &len, &cap, hdr[i], strlen(hdr[i]));
	}
	usage_buf_add(&b, &len, &cap, "\r\n", 2);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		metering_csv_cell(&b, &len, &cap, sqlite3_column_type(st, 0) ==
		    SQLITE_NULL ? "platform" : usage_col_text(st, 0), q->sep,
		    0);
		for (i = 2; i <= 4; i++) {
			usage_buf_add(&b, &len, &cap, sep, 1);
			/* Text: an INSEE code keeps its leading zero. */
			metering_csv_cell(&b, &len, &cap,
			    usage_col_text(st, i == 4 ? 1 : (int)i), q->sep, 1);
		}
		if (q->g == G_DAY || q->g == G_MONTH) {
			usage_fmt_period(sqlite3_column_int64(st, 4),
			    q->g == G_MONTH, per, sizeof(per));
			usage_buf_add(&b, &len, &cap, sep, 1);
			metering_csv_cell(&b, &len, &cap, per, q->sep, 0);
		}
		usage_buf_add(&b, &len, &cap, sep, 1);
		metering_csv_cell(&b, &len, &cap, usage_col_text(st, 5), q->sep,
		    1);
		if (q->g == G_RESOURCE) {
			usage_buf_add(&b, &len, &cap, sep, 1);
			metering_csv_cell(&b, &len, &cap, usage_col_text(st, 6),
			    q->sep, 1);
		}
		usage_buf_add(&b, &len, &cap, sep, 1);
		metering_csv_cell(&b, &len, &cap, usage_col_text(st, 7), q->sep,
		    1);
		qty = sqlite3_column_int64(st, 8);
		u = metering_unit(usage_col_text(st, 7));
		if (u != NULL)
			metering_decimal(qty, u->mu_divisor, u->mu_decimals,
			    q->mark, num, sizeof(num));
		else
			snprintf(num, sizeof(num), "%lld", (long long)qty);
		usage_buf_add(&b, &len, &cap, sep, 1);
		metering_csv_cell(&b, &len, &cap, num, q->sep, 0);
		usage_buf_add(&b, &len, &cap, sep, 1);
		metering_csv_cell(&b, &len, &cap, u ? u->mu_display : "",
		    q->sep, 1);
		usage_buf_add(&b, &len, &cap, "\r\n", 2);
	}
	if (rc != SQLITE_DONE) {
		free(b);
		return (-1);
	}
	*out = b;
	*outlen = len;
	return (0);
}

/*
 * The spreadsheet reply into *out: the CSV's columns, codes as text and
 * quantities as numbers in display units (days as dates). Any thread.
 */
static int
usage_build_ods(const struct usage_q *q, sqlite3_stmt *st, char **out,
    size_t *outlen, char **cause)
{
	const struct meter_unit	*u;
	struct ods		*ods = ods_new();
	const char		*hdr[USAGE_MAX_COLS];
	char			 num[64], per[16];
	int64_t			 qty;
	int			 rc, i;

	ods_sheet(ods, "usage");
	ods_header(ods, hdr, usage_header(q, hdr));
	while ((rc = store_step(st)) == SQLITE_ROW) {
		ods_row(ods);
		ods_text(ods, sqlite3_column_type(st, 0) == SQLITE_NULL ?
		    "platform" : usage_col_text(st, 0));
		for (i = 2; i <= 4; i++)
			ods_text(ods, usage_col_text(st, i == 4 ? 1 : i));
		if (q->g == G_DAY || q->g == G_MONTH) {
			usage_fmt_period(sqlite3_column_int64(st, 4),
			    q->g == G_MONTH, per, sizeof(per));
			if (q->g == G_DAY)
				ods_date(ods, per);
			else
				ods_text(ods, per);
		}
		ods_text(ods, usage_col_text(st, 5));
		if (q->g == G_RESOURCE)
			ods_text(ods, usage_col_text(st, 6));
		ods_text(ods, usage_col_text(st, 7));
		qty = sqlite3_column_int64(st, 8);
		if ((u = metering_unit(usage_col_text(st, 7))) != NULL) {
			metering_decimal(qty, u->mu_divisor, u->mu_decimals,
			    '.', num, sizeof(num));
			ods_number(ods, num);
		} else
			ods_int(ods, qty);
		ods_text(ods, u ? u->mu_display : "");
	}
	if (rc != SQLITE_DONE) {
		ods_free(ods);
		return (-1);
	}
	rc = ods_finish(ods, out, outlen, cause);
	ods_free(ods);
	return (rc);
}

/* On the thread pool: query and build the reply text. */
static void
usage_work_cb(uv_work_t *w)
{
	struct usage_job	*j = w->data;
	sqlite3			*db;
	sqlite3_stmt		*st;
	uint64_t		 t0 = util_mono_ms();
	int			 rv;

	if (store_reader(j->j_path, &db, &j->j_cause) == -1)
		return;
	st = usage_prepare(db, &j->j_q);
	if (j->j_q.ods)
		rv = usage_build_ods(&j->j_q, st, &j->j_out, &j->j_len,
		    &j->j_cause);
	else
		rv = j->j_q.csv ? usage_build_csv(&j->j_q, st, &j->j_out,
		    &j->j_len) : usage_build_json(&j->j_q, st, &j->j_out,
		    &j->j_len);
	if (rv == -1 && j->j_cause == NULL)
		xasprintf(&j->j_cause, "reading usage: %s",
		    sqlite3_errmsg(db));
	store_done(st);
	store_reader_done(db);
	j->j_ms = util_mono_ms() - t0;
}

/* Back on the loop thread: send what the worker built. */
static void
usage_after_cb(uv_work_t *w, int status)
{
	struct usage_job	*j = w->data;

	usage_jobs--;
	usage_heavy -= j->j_heavy;
	if (status == UV_ECANCELED)
		api_defer_reply_error(j->j_defer, 503, "busy", "the usage "
		    "query was cancelled: the controller is stopping");
	else if (j->j_out == NULL) {
		log_warnx("metering: usage (request %s): %s",
		    api_request_id(api_defer_req(j->j_defer)), j->j_cause);
		api_defer_reply_error(j->j_defer, 500, "internal", "reading "
		    "usage failed (request %s)",
		    api_request_id(api_defer_req(j->j_defer)));
	} else {
		log_debug("metering: usage (request %s): %zu bytes in %llu ms",
		    api_request_id(api_defer_req(j->j_defer)), j->j_len,
		    (unsigned long long)j->j_ms);
		if (j->j_q.ods) {
			api_defer_set_header(j->j_defer, "Content-Disposition",
			    "attachment; filename=\"usage.ods\"");
			api_defer_reply_raw(j->j_defer, 200, ODS_MIMETYPE,
			    j->j_out, j->j_len);
		} else if (j->j_q.csv) {
			api_defer_set_header(j->j_defer, "Content-Disposition",
			    "attachment; filename=\"usage.csv\"");
			api_defer_reply_raw(j->j_defer, 200,
			    "text/csv; charset=utf-8", j->j_out, j->j_len);
		} else
			api_defer_reply_raw(j->j_defer, 200,
			    "application/json", j->j_out, j->j_len);
		j->j_out = NULL;
	}
	free(j->j_out);
	free(j->j_cause);
	free(j->j_path);
	free(j);
}

static void
usage_get(struct api_req *r)
{
	const struct api_principal *p = api_principal(r);
	struct usage_q	 q;
	struct usage_job *j;
	const char	*v, *path;
	int		 i, rv, heavy;

	memset(&q, 0, sizeof(q));
	q.tz = calendar_tz();
	q.sep = ';';
	q.mark = ',';
	if ((v = api_query(r, "group")) != NULL &&
	    (i = usage_word(v, usage_groups)) == -1) {
		api_reply_error(r, 400, "bad_parameter", "group must be metric, "
		    "resource, day or month");
		return;
	} else if (v != NULL)
		q.g = (enum usage_group)i;
	if ((v = api_query(r, "format")) != NULL) {
		if (strcmp(v, "csv") == 0)
			q.csv = 1;
		else if (strcmp(v, "ods") == 0)
			q.ods = 1;
		else if (strcmp(v, "json") != 0) {
			api_reply_error(r, 400, "bad_parameter", "format must "
			    "be json, csv or ods");
			return;
		}
	}
	if ((v = api_query(r, "sep")) != NULL) {
		static const char *const seps[] = { "semicolon", "comma", "tab",
		    NULL };
		static const char chars[] = { ';', ',', '\t' };

		if ((i = usage_word(v, seps)) == -1) {
			api_reply_error(r, 400, "bad_parameter", "sep must be "
			    "semicolon, comma or tab");
			return;
		}
		q.sep = chars[i];
	}
	if ((v = api_query(r, "decimal")) != NULL) {
		if (strcmp(v, "comma") == 0)
			q.mark = ',';
		else if (strcmp(v, "point") == 0)
			q.mark = '.';
		else {
			api_reply_error(r, 400, "bad_parameter", "decimal must "
			    "be comma or point");
			return;
		}
	}
	if (q.sep == q.mark) {
		api_reply_error(r, 400, "bad_parameter", "the separator and the "
		    "decimal mark cannot both be a comma");
		return;
	}
	if ((v = api_query(r, "from")) == NULL || usage_time(v,
	    &q.from) == -1 || (v = api_query(r, "to")) == NULL ||
	    usage_time(v, &q.to) == -1) {
		api_reply_error(r, 400, "bad_parameter", "from and to are "
		    "required: YYYY-MM-DD (local midnight, %s), "
		    "YYYY-MM-DDTHH:MM:SSZ or unix seconds", q.tz);
		return;
	}
	if (q.to <= q.from || q.to - q.from > USAGE_MAX_RANGE) {
		api_reply_error(r, 400, "bad_parameter", "to must be after from, "
		    "at most %lld days later", USAGE_MAX_RANGE / 86400);
		return;
	}
	if ((v = api_query(r, "tenant")) != NULL && *v != '\0') {
		if (strcmp(v, "platform") == 0)
			q.tenant = -1;
		else if ((q.tenant = tenants_resolve(v)) <= 0) {
			api_reply_error(r, 404, "not_found", "no tenant '%.64s'",
			    v);
			return;
		}
	}
	/* A token scoped to a tenant sees that tenant only. */
	if (p != NULL && p->ap_tenant != 0) {
		if (q.tenant != 0 && q.tenant != p->ap_tenant) {
			api_reply_error(r, 403, "forbidden", "token %s may only "
			    "read its own tenant's usage", p->ap_name);
			return;
		}
		q.tenant = p->ap_tenant;
	}
	heavy = q.tenant == 0 || q.g == G_RESOURCE || q.g == G_DAY ||
	    q.to - q.from > 62 * 86400;
	if (usage_jobs >= USAGE_MAX_JOBS || (heavy &&
	    usage_heavy >= USAGE_MAX_HEAVY)) {
		api_set_header(r, "Retry-After", "2");
		api_reply_error(r, 503, "busy", "%d usage queries are running; "
		    "try again shortly", usage_jobs);
		return;
	}
	path = sqlite3_db_filename(ctl->db, "main");
	j = xcalloc(1, sizeof(*j));
	j->j_heavy = heavy;
	j->j_q = q;
	j->j_path = xstrdup(path != NULL ? path : "");
	j->j_work.data = j;
	j->j_defer = api_defer(r);
	if ((rv = uv_queue_work(ctl->loop, &j->j_work, usage_work_cb,
	    usage_after_cb)) != 0) {
		api_defer_reply_error(j->j_defer, 503, "busy", "the usage "
		    "query could not start: %s", uv_strerror(rv));
		free(j->j_path);
		free(j);
		return;
	}
	usage_jobs++;
	usage_heavy += heavy;
}

/* ---- GET /metrics ------------------------------------------------------ */

/* Metering's families for GET /metrics (the monitor module serves it). */
void
metering_prom(struct prom *pr)
{
	sqlite3_stmt	*st;
	int64_t		 pending = 0;
	size_t		 i;
	static const struct {
		const char	*name, *help;
		const uint64_t	*v;
	} counters[] = {
		{ "opsn_meter_samples_ingested_total",
		  "Samples committed (new) since start.",
		  &meter_stats.ms_ingested },
		{ "opsn_meter_samples_duplicate_total",
		  "Resent samples ignored.", &meter_stats.ms_duplicates },
		{ "opsn_meter_samples_rejected_total",
		  "Samples with an impossible time or counter.",
		  &meter_stats.ms_rejected },
		{ "opsn_meter_batches_total", "Sample batches received.",
		  &meter_stats.ms_batches },
		{ "opsn_meter_bad_batches_total",
		  "Sample batches that did not decode.",
		  &meter_stats.ms_bad_batches },
		{ "opsn_meter_commits_total",
		  "Transactions that committed sample batches.",
		  &meter_stats.ms_commits },
		{ "opsn_meter_commit_failures_total",
		  "Transactions of sample batches that failed (nothing was "
		  "acknowledged).", &meter_stats.ms_commit_failures },
	};

	for (i = 0; i < nitems(counters); i++)
		prom_single(pr, counters[i].name, "counter", counters[i].help,
		    (double)*counters[i].v);
	st = store_prepare(ctl->db, "SELECT (SELECT coalesce(max(id), 0) FROM "
	    "samples) - rolled_id FROM meter_state");
	if (store_step(st) == SQLITE_ROW)
		pending = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	prom_single(pr, "opsn_meter_rollup_pending_samples", "gauge",
	    "Samples not rolled up yet.", (double)pending);
	prom_single(pr, "opsn_meter_last_rollup_timestamp_seconds", "gauge",
	    "When hourly usage was last brought up to date (unix seconds; 0 "
	    "before the first round).", (double)meter_stats.ms_last_round);
	metering_node_metrics(pr);
}
