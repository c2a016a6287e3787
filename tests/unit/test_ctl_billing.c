/*
 * Billing in the controller, against a real store (every migration): the
 * exact decimal money, the Paris calendar, a golden October with a tariff
 * change on the 16th worked out by hand, rounding over 10,000 random
 * lines, closed statements that never change, late usage and adjustments
 * on the next statement, the CSV finance opens, and a check that no
 * billing source names a binary-fraction number type.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <uv.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "billing/billing.h"

static struct ctl	 tc;
static char		 dir[64];

/* ---- fixtures ---- */

static int
setup_db(void **state)
{
	char	 path[128], *cause = NULL;

	(void)state;
	memset(&tc, 0, sizeof(tc));
	ctl = &tc;
	strlcpy(dir, "/tmp/opsn-billing-XXXXXX", sizeof(dir));
	if (mkdtemp(dir) == NULL)
		return (-1);
	snprintf(path, sizeof(path), "%s/opsn.db", dir);
	if (store_open(path, &tc.db, &cause) == -1) {
		fprintf(stderr, "%s\n", cause);
		return (-1);
	}
	/* Metering's table, if this build has no metering. */
	if (store_exec(tc.db, "CREATE TABLE IF NOT EXISTS usage_hourly ("
	    "tenant_id INTEGER, hour INTEGER NOT NULL, kind TEXT NOT NULL, "
	    "resource TEXT NOT NULL, metric TEXT NOT NULL, quantity INTEGER "
	    "NOT NULL, PRIMARY KEY (hour, kind, resource, metric)) WITHOUT "
	    "ROWID", &cause) == -1) {
		fprintf(stderr, "%s\n", cause);
		return (-1);
	}
	store_exec(tc.db, "PRAGMA synchronous = OFF", NULL);
	return (0);
}

static int
teardown_db(void **state)
{
	char	 cmd[128];

	(void)state;
	store_close(tc.db);
	tc.db = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return (-1);
	return (0);
}

static int64_t
utc(int y, int mo, int d, int h)
{
	struct tm	 tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	return ((int64_t)timegm(&tm));
}

static int64_t
add_tenant(const char *name, const char *insee, int64_t pop,
    const char *joined, const char *left)
{
	sqlite3_stmt	*st;
	int64_t		 id;

	st = store_prepare(tc.db, "INSERT INTO tenants (kind, name, insee, "
	    "population, joined_on, left_on, status, created_at, updated_at) "
	    "VALUES ('commune', ?, ?, ?, ?, ?, ?, 0, 0) RETURNING id");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, insee, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, pop);
	sqlite3_bind_text(st, 4, joined, -1, SQLITE_STATIC);
	if (left != NULL)
		sqlite3_bind_text(st, 5, left, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, left ? "withdrawn" : "active", -1,
	    SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (id);
}

/* What POST /v1/tariffs stores, minus the HTTP. */
static int64_t
add_tariff(const char *text, int make_default)
{
	struct tariff	 t;
	json_t		*doc, *norm;
	sqlite3_stmt	*st;
	char		*cause = NULL, *s, from[11];
	int64_t		 id;

	doc = json_loads(text, 0, NULL);
	assert_non_null(doc);
	norm = tariff_normalize(doc, &t, &cause);
	if (norm == NULL)
		fail_msg("tariff: %s", cause);
	s = json_dumps(norm, JSON_COMPACT | JSON_SORT_KEYS);
	period_fmt_day(t.t_from, from, sizeof(from));
	st = store_prepare(tc.db, "INSERT INTO tariffs (name, version, "
	    "deliberation_number, deliberation_date, effective_from, "
	    "effective_to, doc, created_at) VALUES (?1, (SELECT count(*) + 1 "
	    "FROM tariffs WHERE name = ?1), ?2, ?3, ?4, ?5, ?6, 0) "
	    "RETURNING id");
	sqlite3_bind_text(st, 1, t.t_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, t.t_delib_no, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, t.t_delib_date, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, from, -1, SQLITE_STATIC);
	if (json_is_string(json_object_get(norm, "effective_to")))
		sqlite3_bind_text(st, 5, json_string_value(json_object_get(norm,
		    "effective_to")), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, s, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (make_default) {
		st = store_prepare(tc.db, "INSERT OR REPLACE INTO "
		    "billing_default (one, name) VALUES (1, ?)");
		sqlite3_bind_text(st, 1, t.t_name, -1, SQLITE_STATIC);
		assert_int_equal(sqlite3_step(st), SQLITE_DONE);
		sqlite3_finalize(st);
	}
	free(s);
	json_decref(norm);
	json_decref(doc);
	return (id);
}

static void
bind_tariff(int64_t tenant, const char *name)
{
	sqlite3_stmt	*st;

	st = store_prepare(tc.db, "INSERT INTO tenant_tariffs (tenant_id, "
	    "tariff, bound_at) VALUES (?, ?, 0)");
	sqlite3_bind_int64(st, 1, tenant);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

/* Set the quantity of one usage row (as metering rewrites an hour). */
static void
usage(int64_t tenant, int64_t hour, const char *kind, const char *res,
    const char *metric, int64_t q)
{
	sqlite3_stmt	*st;

	st = store_prepare(tc.db, "INSERT INTO usage_hourly (tenant_id, hour, "
	    "kind, resource, metric, quantity) VALUES (?, ?, ?, ?, ?, ?) ON "
	    "CONFLICT (hour, kind, resource, metric) DO UPDATE SET quantity "
	    "= excluded.quantity");
	if (tenant > 0)
		sqlite3_bind_int64(st, 1, tenant);
	sqlite3_bind_int64(st, 2, hour);
	sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, res, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, metric, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, q);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

static int
generate(const char *label, struct billing_gen_result *res, char **cause)
{
	struct period	 p;
	int		 status, rv;

	assert_int_equal(period_parse(label, &p, cause), 0);
	assert_int_equal(store_begin(tc.db), 0);
	rv = billing_generate(tc.db, &p, res, &status, cause);
	if (rv == -1) {
		store_rollback(tc.db);
		return (status);
	}
	assert_int_equal(store_commit(tc.db), 0);
	return (0);
}

static void
must_generate(const char *label, struct billing_gen_result *res)
{
	char	*cause = NULL;

	if (generate(label, res, &cause) != 0)
		fail_msg("generate %s: %s", label, cause);
}

static void
must_close(const char *label, char sum[72])
{
	struct period	 p;
	int64_t		 n;
	int		 status;
	char		*cause = NULL;

	assert_int_equal(period_parse(label, &p, &cause), 0);
	assert_int_equal(store_begin(tc.db), 0);
	if (billing_close(tc.db, &p, &n, sum, &status, &cause) == -1)
		fail_msg("close %s: %s", label, cause);
	assert_int_equal(store_commit(tc.db), 0);
}

static int64_t
statement_of(int64_t tenant, const char *period)
{
	sqlite3_stmt	*st;
	int64_t		 id = 0;

	st = store_prepare(tc.db, "SELECT id FROM statements WHERE tenant_id "
	    "= ? AND period = ?");
	sqlite3_bind_int64(st, 1, tenant);
	sqlite3_bind_text(st, 2, period, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (id);
}

static int64_t
scalar(const char *sql, int64_t arg)
{
	sqlite3_stmt	*st;
	int64_t		 v = -1;

	st = store_prepare(tc.db, sql);
	if (sqlite3_bind_parameter_count(st) > 0)
		sqlite3_bind_int64(st, 1, arg);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (v);
}

/* ---- money ---- */

static void
money_parses_decimal_strings_exactly(void **state)
{
	struct money	 m;
	struct cents	 c;
	char		*cause = NULL;
	size_t		 i;
	static const char *const bad[] = { "", "1e3", ".5", "1.", "+1", "1 ",
	    " 1", "0.0000001", "1,2,3", "--1", "0x10", "1.5.", "nan",
	    "12345678901234567890", NULL };

	assert_int_equal(money_parse("0.0150", 0, &m, &cause), 0);
	assert_int_equal(m.micro, 15000);
	assert_int_equal(money_parse("0,0150", 0, &m, &cause), 0);
	assert_int_equal(m.micro, 15000);
	assert_int_equal(money_parse("12", 0, &m, &cause), 0);
	assert_int_equal(m.micro, 12000000);
	assert_int_equal(money_parse("0.000001", 0, &m, &cause), 0);
	assert_int_equal(m.micro, 1);
	/* 0.1 + 0.2 is exactly 0.3 here. */
	assert_int_equal(money_parse("0.1", 0, &m, &cause), 0);
	c.c = 0;
	assert_int_equal(money_parse("0.2", 0, &m, &cause), 0);
	assert_int_equal(m.micro + 100000, 300000);
	assert_int_equal(money_parse("-1", 0, &m, &cause), -1);
	free(cause);
	cause = NULL;
	assert_int_equal(money_parse_cents("-12.50", &c, &cause), 0);
	assert_int_equal(c.c, -1250);
	assert_int_equal(money_parse_cents("-12.505", &c, &cause), -1);
	free(cause);
	for (i = 0; bad[i] != NULL; i++) {
		cause = NULL;
		if (money_parse(bad[i], 1, &m, &cause) != -1)
			fail_msg("'%s' was accepted", bad[i]);
		free(cause);
	}
}

static void
money_formats_with_the_chosen_decimal_mark(void **state)
{
	struct money	 m = { 15000 };
	struct cents	 c = { -1250 };
	char		 buf[64];

	money_fmt_price(m, '.', buf, sizeof(buf));
	assert_string_equal(buf, "0.015");
	money_fmt_price(m, ',', buf, sizeof(buf));
	assert_string_equal(buf, "0,015");
	m.micro = 5000000;
	money_fmt_price(m, '.', buf, sizeof(buf));
	assert_string_equal(buf, "5.00");
	money_fmt_cents(c, ',', buf, sizeof(buf));
	assert_string_equal(buf, "-12,50");
	c.c = 5;
	money_fmt_cents(c, '.', buf, sizeof(buf));
	assert_string_equal(buf, "0.05");
	money_fmt_quantity(1296000, 86400, ',', buf, sizeof(buf));
	assert_string_equal(buf, "15");
	money_fmt_quantity(13860000, 86400, '.', buf, sizeof(buf));
	assert_string_equal(buf, "160.4167");
	money_fmt_quantity(1, 3, '.', buf, sizeof(buf));
	assert_string_equal(buf, "0.3333");
}

/* money_line's amount, or INT64_MIN when it refuses. */
static int64_t
line(int64_t q, int64_t div, struct money p)
{
	struct cents	 c;

	return (money_line(q, div, p, &c) == 0 ? c.c : INT64_MIN);
}

static void
line_rounds_once_half_up_to_cents(void **state)
{
	struct money	 p;

	/* 15 site-days at 0.0333 = 0.4995 EUR = 49.95 cents -> 50. */
	p.micro = 33300;
	assert_int_equal(line(1296000, 86400, p), 50);
	/* 0.004999 EUR -> 0 cents; 0.005 -> 1 cent. */
	p.micro = 4999;
	assert_int_equal(line(1, 1, p), 0);
	p.micro = 5000;
	assert_int_equal(line(1, 1, p), 1);
	/* Halves of a negative amount go away from zero. */
	assert_int_equal(money_round_div(-1, 2), -1);
	assert_int_equal(money_round_div(1, 2), 1);
	assert_int_equal(money_round_div(-3, 4), -1);
	assert_int_equal(money_round_div(-1, 4), 0);
	/* Large: 10^13 MiB-seconds at 1 EUR per GiB-hour stays exact. */
	p.micro = 1000000;
	assert_int_equal(line(10000000000000LL, 3686400, p),
	    271267361);
	/* Beyond 10^13 EUR a line is refused, never wrapped to 64 bits. */
	p.micro = MONEY_MAX_MICRO;
	assert_int_equal(line(INT64_MAX, 1, p), INT64_MIN);
	assert_int_equal(line(-INT64_MAX, 1, p), INT64_MIN);
	p.micro = 1000000;
	assert_int_equal(line(MONEY_MAX_CENTS / 100, 1, p), MONEY_MAX_CENTS);
	assert_int_equal(line(MONEY_MAX_CENTS / 100 + 1, 1, p), INT64_MIN);
}

/* A reference for a line: floor, then up if the remainder is half or more. */
static int64_t
ref_cents(int64_t q, int64_t div, int64_t price)
{
	unsigned __int128 n = (unsigned __int128)q * (uint64_t)price;
	unsigned __int128 d = (unsigned __int128)div * 10000;
	unsigned __int128 fl = n / d, rem = n % d;

	return ((int64_t)(rem * 2 >= d ? fl + 1 : fl));
}

static void
ten_thousand_random_lines_round_like_the_reference(void **state)
{
	static const int64_t divs[] = { 3600, 3686400, 1000000000, 1 << 30,
	    86400, 377580, 365, 366 };
	struct money	 p;
	int64_t		 q, total = 0, ref_total = 0, c;
	int		 i;

	srandom(20261016);
	for (i = 0; i < 10000; i++) {
		q = ((int64_t)random() << 20 | random()) % 100000000000LL;
		p.micro = random() % 10000000;
		c = line(q, divs[i % 8], p);
		assert_int_equal(c, ref_cents(q, divs[i % 8], p.micro));
		total += c;
		ref_total += ref_cents(q, divs[i % 8], p.micro);
	}
	assert_int_equal(total, ref_total);
}

/* Billing reads usage rows by metric name alone: no two kinds share one. */
static void
usage_metric_names_are_distinct_across_kinds(void **state)
{
	size_t	 i, j;

	for (i = 0; i < billing_nmetrics; i++)
		for (j = i + 1; j < billing_nmetrics; j++)
			assert_string_not_equal(billing_metrics[i].bm_usage,
			    billing_metrics[j].bm_usage);
	assert_int_equal(tariff_metric_usage("vm", "vcpu_seconds"), 0);
	assert_int_equal(tariff_metric_usage("site", "vcpu_seconds"), -1);
}

/* ---- the calendar ---- */

static void
periods_follow_the_paris_calendar(void **state)
{
	struct period	 p;
	int64_t		 days[2], u[2];
	char		*cause = NULL;

	assert_int_equal(period_parse("2026-10", &p, &cause), 0);
	days[0] = p.p_first;
	days[1] = p.p_end;
	period_utc(days, u, 2);
	/* CEST in October's first hour, CET after the 25th. */
	assert_int_equal(u[0], utc(2026, 9, 30, 22));
	assert_int_equal(u[1], utc(2026, 10, 31, 23));
	/* 23:30 UTC on 31 October is November in Paris. */
	assert_true(utc(2026, 10, 31, 23) + 1800 >= u[1]);
	assert_int_equal((u[1] - u[0]) / 3600, 745);
	assert_int_equal(period_parse("2026-Q4", &p, &cause), 0);
	assert_int_equal(p.p_end - p.p_first, 92);
	assert_int_equal(period_parse("2028", &p, &cause), 0);
	assert_int_equal(p.p_end - p.p_first, 366);
	assert_int_equal(period_parse("2026-13", &p, &cause), -1);
	free(cause);
	cause = NULL;
	assert_int_equal(period_parse("2026-Q5", &p, &cause), -1);
	free(cause);
	cause = NULL;
	/* 15 days of October and 16 days: 15/31 and 16/31 of a month. */
	assert_int_equal(period_month_fraction(period_days(2026, 10, 1),
	    period_days(2026, 10, 16)), 15 * 12180);
	/* A quarter is three months whatever their lengths. */
	assert_int_equal(period_month_fraction(period_days(2026, 1, 1),
	    period_days(2026, 4, 1)), 3 * PERIOD_MONTH_DIV);
}

/* ---- the golden October ---- */

static const char tariff_v1[] = "{\"name\": \"standard\", \"deliberation\": "
    "{\"number\": \"2025-042\", \"date\": \"2025-12-10\"}, "
    "\"effective_from\": \"2026-01-01\", \"effective_to\": \"2026-10-15\", "
    "\"bands\": [{\"name\": \"S\", \"max\": 999}, {\"name\": \"M\", \"max\": "
    "9999}, {\"name\": \"L\"}], \"rates\": {\"vm.vcpu_hours\": \"0.0150\", "
    "\"vm.memory_gib_hours\": {\"S\": \"0.0040\", \"M\": \"0.0050\", \"L\": "
    "\"0.0060\"}, \"mailbox.mailbox_days\": \"0.0100\", "
    "\"site.site_days\": \"0.0333\"}, \"allowances\": "
    "{\"mailbox.mailbox_days\": \"100\"}, \"monthly_fee\": {\"S\": \"5.00\", "
    "\"M\": \"15.00\", \"L\": \"40.00\"}, \"contribution_per_inhabitant\": "
    "\"0.365\"}";

static const char tariff_v2[] = "{\"name\": \"standard\", \"deliberation\": "
    "{\"number\": \"2026-031\", \"date\": \"2026-09-24\"}, "
    "\"effective_from\": \"2026-10-16\", "
    "\"bands\": [{\"name\": \"S\", \"max\": 999}, {\"name\": \"M\", \"max\": "
    "9999}, {\"name\": \"L\"}], \"rates\": {\"vm.vcpu_hours\": \"0.0180\", "
    "\"vm.memory_gib_hours\": {\"S\": \"0.0045\", \"M\": \"0.0055\", \"L\": "
    "\"0.0065\"}, \"mailbox.mailbox_days\": \"0,0120\", "
    "\"site.site_days\": \"0.0333\"}, \"allowances\": "
    "{\"mailbox.mailbox_days\": \"100\"}, \"monthly_fee\": {\"S\": \"6.00\", "
    "\"M\": \"18.00\", \"L\": \"45.00\"}, \"contribution_per_inhabitant\": "
    "\"0.73\"}";

static const char tariff_rural[] = "{\"name\": \"rural\", \"deliberation\": "
    "{\"number\": \"2025-043\", \"date\": \"2025-12-10\"}, "
    "\"effective_from\": \"2026-01-01\", \"contribution_per_inhabitant\": "
    "\"1.00\"}";

struct golden {
	int64_t	 a, b, c, d, e;
	int64_t	 v1, v2, rural;
};

/*
 * October 2026 in Paris: 2026-09-30T22:00Z to 2026-10-31T23:00Z, 745
 * hours (DST ends on the 25th). Version 1 of "standard" runs to the 15th
 * (360 hours, 15/31 of the month), version 2 from the 16th (385 hours,
 * 16/31).
 */
static void
golden_fixture(struct golden *g)
{
	int64_t	 start = utc(2026, 9, 30, 22), mid = utc(2026, 10, 15, 22);
	int64_t	 end = utc(2026, 10, 31, 23), h;
	char	 res[32];
	int	 i;

	g->v1 = add_tariff(tariff_v1, 1);
	g->v2 = add_tariff(tariff_v2, 0);
	g->rural = add_tariff(tariff_rural, 0);
	g->a = add_tenant("Agassac", "31001", 412, "2015-01-01", NULL);
	g->b = add_tenant("Muret", "31395", 3200, "2015-01-01", NULL);
	g->c = add_tenant("Colomiers", "31149", 39000, "2015-01-01", NULL);
	g->d = add_tenant("Ancienne", "31999", 500, "2015-01-01",
	    "2026-09-01");
	g->e = add_tenant("Nouvelle", "31998", 100, "2026-10-20", NULL);
	bind_tariff(g->e, "rural");

	/* A: a 2 vCPU, 4 GiB VM for 100 hours under v1, 50 under v2. */
	for (i = 0; i < 99; i++) {
		usage(g->a, start + i * 3600, "vm", "a-vm", "vcpu_seconds",
		    7200);
		usage(g->a, start + i * 3600, "vm", "a-vm",
		    "memory_mib_seconds", 4096 * 3600);
		usage(g->a, start + i * 3600, "vm", "a-vm", "cpu_ns",
		    1000000000000LL);	/* no rate: not billed */
	}
	/* The last hour of v1 (23:00 on the 15th in Paris). */
	usage(g->a, mid - 3600, "vm", "a-vm", "vcpu_seconds", 7200);
	usage(g->a, mid - 3600, "vm", "a-vm", "memory_mib_seconds",
	    4096 * 3600);
	for (i = 0; i < 50; i++) {
		usage(g->a, mid + i * 3600, "vm", "a-vm", "vcpu_seconds", 7200);
		usage(g->a, mid + i * 3600, "vm", "a-vm",
		    "memory_mib_seconds", 4096 * 3600);
	}
	/* A: 10 mailboxes the whole month, B: one site the whole month. */
	for (h = start; h < end; h += 3600) {
		for (i = 1; i <= 10; i++) {
			snprintf(res, sizeof(res), "a-mbx-%d", i);
			usage(g->a, h, "mailbox", res, "mailbox_seconds", 3600);
			usage(g->a, h, "mailbox", res, "mailbox_mib_seconds",
			    3600 * 100);
		}
		usage(g->b, h, "site", "b-site", "site_seconds", 3600);
		/* C: a small VM under v1, a large one under v2. */
		if (h < mid) {
			usage(g->c, h, "vm", "c-vm1", "vcpu_seconds", 3600);
			usage(g->c, h, "vm", "c-vm1", "memory_mib_seconds",
			    2048 * 3600);
		} else {
			usage(g->c, h, "vm", "c-vm2", "vcpu_seconds",
			    8 * 3600);
			usage(g->c, h, "vm", "c-vm2", "memory_mib_seconds",
			    32768LL * 3600);
		}
		/* The platform's own VM and the member who left: not billed. */
		usage(0, h, "vm", "p-vm", "vcpu_seconds", 3600);
		usage(g->d, h, "site", "d-site", "site_seconds", 3600);
	}
	/* Just outside October in Paris: 21:00Z on 30 September, 23:00Z on 31
	 * October (00:00 on 1 November, local). */
	usage(g->a, start - 3600, "mailbox", "a-mbx-1", "mailbox_seconds",
	    999999999);
	usage(g->b, end, "site", "b-site", "site_seconds", 999999999);
	usage(g->b, end + 1800 - 1800, "site", "b-site2", "site_seconds",
	    999999999);
}

struct want {
	const char	*metric;
	int64_t		 tariff;
	int64_t		 qbase, div, price, cents;
};

static void
check_lines(int64_t stmt, const struct want *w, size_t n, int64_t total)
{
	sqlite3_stmt	*st;
	size_t		 i = 0;

	st = store_prepare(tc.db, "SELECT metric, tariff_id, quantity_base, "
	    "divisor, unit_price_micro, amount_cents FROM statement_lines "
	    "WHERE statement_id = ? ORDER BY seq");
	sqlite3_bind_int64(st, 1, stmt);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (i >= n)
			fail_msg("statement %lld: extra line %s", (long long)stmt,
			    sqlite3_column_text(st, 0));
		if (strcmp((const char *)sqlite3_column_text(st, 0),
		    w[i].metric) != 0 || sqlite3_column_int64(st, 1) !=
		    w[i].tariff || sqlite3_column_int64(st, 2) != w[i].qbase ||
		    sqlite3_column_int64(st, 3) != w[i].div ||
		    sqlite3_column_int64(st, 4) != w[i].price ||
		    sqlite3_column_int64(st, 5) != w[i].cents)
			fail_msg("statement %lld line %zu: got %s t%lld %lld/%lld "
			    "at %lld = %lld cents; want %s t%lld %lld/%lld at "
			    "%lld = %lld", (long long)stmt, i + 1,
			    sqlite3_column_text(st, 0),
			    (long long)sqlite3_column_int64(st, 1),
			    (long long)sqlite3_column_int64(st, 2),
			    (long long)sqlite3_column_int64(st, 3),
			    (long long)sqlite3_column_int64(st, 4),
			    (long long)sqlite3_column_int64(st, 5), w[i].metric,
			    (long long)w[i].tariff, (long long)w[i].qbase,
			    (long long)w[i].div, (long long)w[i].price,
			    (long long)w[i].cents);
		i++;
	}
	sqlite3_finalize(st);
	assert_int_equal(i, n);
	assert_int_equal(scalar("SELECT total_cents FROM statements WHERE id = "
	    "?", stmt), total);
}

#define MF15	(15 * 12180)		/* 15/31 of a month, in 1/377580 */
#define MF16	(16 * 12180)
#define GIBH	(1024 * 3600)

static void
golden_october_with_a_tariff_change_on_the_16th(void **state)
{
	struct billing_gen_result res;
	struct golden	 g;

	golden_fixture(&g);
	must_generate("2026-10", &res);
	/* A, B, C and E (joined on the 20th); D left in September. */
	assert_int_equal(res.g_statements, 4);
	assert_int_equal(statement_of(g.d, "2026-10"), 0);

	/*
	 * Agassac, 412 inhabitants: band S.
	 * v1, 1 to 15 October:
	 *  vCPU: 100 h x 2 = 200 vCPU-h x 0.0150 = 3.00
	 *  memory: 100 h x 4 GiB = 400 GiB-h x 0.0040 = 1.60
	 *  mailboxes: 10 x 360 h = 150 days, 100 free per month x 15/31 =
	 *    48.387 days (4,180,645 s, rounded down) -> 8,779,355 s =
	 *    101.6129 days x 0.0100 = 1.016129 -> 1.02
	 *  fee: 5.00 x 15/31 = 2.419 -> 2.42
	 *  contribution: 412 x 0.365 x 15/365 = 6.18
	 * v2, 16 to 31 October (385 hours: the 25th has 25):
	 *  vCPU: 50 h x 2 = 100 x 0.0180 = 1.80
	 *  memory: 200 GiB-h x 0.0045 = 0.90
	 *  mailboxes: 10 x 385 h = 13,860,000 s, free 100 x 16/31 days =
	 *    4,459,354 s -> 9,400,646 s = 108.8038 days x 0.0120 = 1.305645
	 *    -> 1.31
	 *  fee: 6.00 x 16/31 = 3.097 -> 3.10
	 *  contribution: 412 x 0.73 x 16/365 = 13.184 -> 13.18
	 * total: 14.22 + 20.29 = 34.51
	 */
	const struct want a[] = {
		{ "vm.vcpu_hours", g.v1, 720000, 3600, 15000, 300 },
		{ "vm.memory_gib_hours", g.v1, 400LL * GIBH, GIBH, 4000, 160 },
		{ "mailbox.mailbox_days", g.v1, 8779355, 86400, 10000, 102 },
		{ "fee.monthly", g.v1, MF15, 377580, 5000000, 242 },
		{ "contribution", g.v1, 412 * 15, 365, 365000, 618 },
		{ "vm.vcpu_hours", g.v2, 360000, 3600, 18000, 180 },
		{ "vm.memory_gib_hours", g.v2, 200LL * GIBH, GIBH, 4500, 90 },
		{ "mailbox.mailbox_days", g.v2, 9400646, 86400, 12000, 131 },
		{ "fee.monthly", g.v2, MF16, 377580, 6000000, 310 },
		{ "contribution", g.v2, 412 * 16, 365, 730000, 1318 },
	};
	check_lines(statement_of(g.a, "2026-10"), a, nitems(a), 3451);

	/*
	 * Muret, 3,200 inhabitants: band M; one site all month.
	 *  v1: 15 site-days x 0.0333 = 0.4995 -> 0.50 (half up)
	 *      fee 15.00 x 15/31 = 7.258 -> 7.26; 3200 x 0.365 x 15/365 = 48.00
	 *  v2: 385 h = 16.0417 site-days x 0.0333 = 0.5342 -> 0.53
	 *      fee 18.00 x 16/31 = 9.290 -> 9.29; 3200 x 0.73 x 16/365 = 102.40
	 *  total 55.76 + 112.22 = 167.98 (the hours of 30 Sept. 21:00Z and
	 *  31 Oct. 23:00Z are not October's)
	 */
	const struct want b[] = {
		{ "site.site_days", g.v1, 1296000, 86400, 33300, 50 },
		{ "fee.monthly", g.v1, MF15, 377580, 15000000, 726 },
		{ "contribution", g.v1, 3200 * 15, 365, 365000, 4800 },
		{ "site.site_days", g.v2, 1386000, 86400, 33300, 53 },
		{ "fee.monthly", g.v2, MF16, 377580, 18000000, 929 },
		{ "contribution", g.v2, 3200 * 16, 365, 730000, 10240 },
	};
	check_lines(statement_of(g.b, "2026-10"), b, nitems(b), 16798);

	/*
	 * Colomiers, 39,000 inhabitants: band L.
	 *  v1: 1 vCPU x 360 h = 360 x 0.0150 = 5.40; 2 GiB x 360 h = 720 x
	 *      0.0060 = 4.32; fee 40.00 x 15/31 = 19.355 -> 19.35;
	 *      39000 x 0.365 x 15/365 = 585.00
	 *  v2: 8 vCPU x 385 h = 3080 x 0.0180 = 55.44; 32 GiB x 385 h =
	 *      12320 x 0.0065 = 80.08; fee 45.00 x 16/31 = 23.226 -> 23.23;
	 *      39000 x 0.73 x 16/365 = 1248.00
	 *  total 614.07 + 1406.75 = 2020.82
	 */
	const struct want c[] = {
		{ "vm.vcpu_hours", g.v1, 360 * 3600, 3600, 15000, 540 },
		{ "vm.memory_gib_hours", g.v1, 720LL * GIBH, GIBH, 6000, 432 },
		{ "fee.monthly", g.v1, MF15, 377580, 40000000, 1935 },
		{ "contribution", g.v1, 39000 * 15, 365, 365000, 58500 },
		{ "vm.vcpu_hours", g.v2, 3080 * 3600, 3600, 18000, 5544 },
		{ "vm.memory_gib_hours", g.v2, 12320LL * GIBH, GIBH, 6500,
		  8008 },
		{ "fee.monthly", g.v2, MF16, 377580, 45000000, 2323 },
		{ "contribution", g.v2, 39000 * 16, 365, 730000, 124800 },
	};
	check_lines(statement_of(g.c, "2026-10"), c, nitems(c), 202082);

	/*
	 * Nouvelle joined on the 20th, bound to "rural": 100 inhabitants x
	 * 1.00 x 12/365 = 3.2877 -> 3.29; no split (one version).
	 */
	const struct want e[] = {
		{ "contribution", g.rural, 100 * 12, 365, 1000000, 329 },
	};
	check_lines(statement_of(g.e, "2026-10"), e, nitems(e), 329);

	/* The period's total is the sum of the lines: 2226.60. */
	assert_int_equal(res.g_total.c, 3451 + 16798 + 202082 + 329);
	assert_int_equal(res.g_lines, 25);
}

static void
regenerating_a_draft_replaces_it_and_keeps_its_id(void **state)
{
	struct billing_gen_result res;
	struct golden	 g;
	int64_t		 id;
	char		 before[80];
	sqlite3_stmt	*st;

	golden_fixture(&g);
	must_generate("2026-10", &res);
	id = statement_of(g.b, "2026-10");
	st = store_prepare(tc.db, "SELECT checksum FROM statements WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	strlcpy(before, (const char *)sqlite3_column_text(st, 0),
	    sizeof(before));
	sqlite3_finalize(st);
	/* Same data: same content, same checksum. */
	must_generate("2026-10", &res);
	assert_int_equal(statement_of(g.b, "2026-10"), id);
	assert_int_equal(res.g_revision, 2);
	st = store_prepare(tc.db, "SELECT checksum, revision FROM statements "
	    "WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal(before, sqlite3_column_text(st, 0));
	assert_int_equal(sqlite3_column_int(st, 1), 2);
	sqlite3_finalize(st);
	/* More usage: the draft changes. */
	usage(g.b, utc(2026, 10, 20, 10), "site", "b-site-2", "site_seconds",
	    86400 * 30);
	must_generate("2026-10", &res);
	assert_int_equal(scalar("SELECT total_cents FROM statements WHERE id = "
	    "?", id), 16798 + 100);
	/* One line per version, rounded once: 16.0417 + 30 = 46.0417 site-days
	 * x 0.0333 = 1.5332 -> 1.53, where it was 0.53. */
}

static void
generation_refuses_gaps_and_overlapping_periods(void **state)
{
	struct billing_gen_result res;
	char		*cause = NULL;

	add_tenant("Agassac", "31001", 412, "2015-01-01", NULL);
	/* No tariff at all. */
	assert_int_equal(generate("2026-10", &res, &cause), BILLING_ECONFLICT);
	assert_non_null(strstr(cause, "no default tariff"));
	free(cause);
	cause = NULL;
	/* A tariff from the 16th only: the 1st to the 15th have no price. */
	add_tariff(tariff_v2, 1);
	assert_int_equal(generate("2026-10", &res, &cause), BILLING_ECONFLICT);
	assert_non_null(strstr(cause, "2026-10-01"));
	free(cause);
	cause = NULL;
	must_generate("2026-11", &res);
	/* A quarter holding November would bill its days twice. */
	assert_int_equal(generate("2026-Q4", &res, &cause), BILLING_ECONFLICT);
	assert_non_null(strstr(cause, "overlaps"));
	free(cause);
	assert_int_equal(scalar("SELECT count(*) FROM billing_periods", 0), 1);
}

static void
tariff_documents_are_checked(void **state)
{
	static const char *const bad[] = {
	    /* money as a JSON number */
	    "{\"name\":\"x\",\"deliberation\":{\"number\":\"1\",\"date\":"
	    "\"2026-01-01\"},\"effective_from\":\"2026-01-01\",\"rates\":"
	    "{\"vm.vcpu_hours\":0.015}}",
	    /* unknown metric */
	    "{\"name\":\"x\",\"deliberation\":{\"number\":\"1\",\"date\":"
	    "\"2026-01-01\"},\"effective_from\":\"2026-01-01\",\"rates\":"
	    "{\"vm.gpus\":\"1\"}}",
	    /* a band missing */
	    "{\"name\":\"x\",\"deliberation\":{\"number\":\"1\",\"date\":"
	    "\"2026-01-01\"},\"effective_from\":\"2026-01-01\",\"bands\":"
	    "[{\"name\":\"S\",\"max\":10},{\"name\":\"L\"}],\"rates\":"
	    "{\"vm.vcpu_hours\":{\"S\":\"1\"}}}",
	    /* bands out of order */
	    "{\"name\":\"x\",\"deliberation\":{\"number\":\"1\",\"date\":"
	    "\"2026-01-01\"},\"effective_from\":\"2026-01-01\",\"bands\":"
	    "[{\"name\":\"S\",\"max\":10},{\"name\":\"M\",\"max\":5},"
	    "{\"name\":\"L\"}]}",
	    /* 7 decimals */
	    "{\"name\":\"x\",\"deliberation\":{\"number\":\"1\",\"date\":"
	    "\"2026-01-01\"},\"effective_from\":\"2026-01-01\",\"rates\":"
	    "{\"vm.vcpu_hours\":\"0.0000001\"}}",
	    /* ends before it starts */
	    "{\"name\":\"x\",\"deliberation\":{\"number\":\"1\",\"date\":"
	    "\"2026-01-01\"},\"effective_from\":\"2026-02-01\","
	    "\"effective_to\":\"2026-01-31\"}",
	    /* allowance without a rate */
	    "{\"name\":\"x\",\"deliberation\":{\"number\":\"1\",\"date\":"
	    "\"2026-01-01\"},\"effective_from\":\"2026-01-01\",\"allowances\":"
	    "{\"vm.vcpu_hours\":\"1\"}}",
	    /* no deliberation */
	    "{\"name\":\"x\",\"effective_from\":\"2026-01-01\"}",
	    /* a date that does not exist */
	    "{\"name\":\"x\",\"deliberation\":{\"number\":\"1\",\"date\":"
	    "\"2026-02-30\"},\"effective_from\":\"2026-01-01\"}",
	    NULL };
	struct tariff	 t;
	json_t		*doc, *n;
	char		*cause;
	size_t		 i;

	for (i = 0; bad[i] != NULL; i++) {
		cause = NULL;
		doc = json_loads(bad[i], 0, NULL);
		assert_non_null(doc);
		if ((n = tariff_normalize(doc, &t, &cause)) != NULL)
			fail_msg("tariff %zu was accepted", i);
		assert_non_null(cause);
		free(cause);
		json_decref(doc);
	}
	doc = json_loads(tariff_v1, 0, NULL);
	n = tariff_normalize(doc, &t, &cause);
	assert_non_null(n);
	assert_int_equal(t.t_rate[tariff_metric("vm.memory_gib_hours")][1].micro,
	    5000);
	assert_int_equal(t.t_allow[tariff_metric("mailbox.mailbox_days")][2],
	    100000000);
	assert_int_equal(tariff_band(&t, 999), 0);
	assert_int_equal(tariff_band(&t, 1000), 1);
	assert_int_equal(tariff_band(&t, 5000000), 2);
	json_decref(n);
	json_decref(doc);
}

/* ---- closed statements ---- */

static char *
statement_doc(int64_t id)
{
	json_t	*doc = billing_statement_json(tc.db, id);
	char	*s;

	assert_non_null(doc);
	s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(doc);
	return (s);
}

static void
a_closed_statement_never_changes(void **state)
{
	struct billing_gen_result res;
	struct golden	 g;
	int64_t		 id, n;
	char		 sum[72], sum2[72], *before, *after, *cause = NULL;
	static const char *const writes[] = {
	    "UPDATE statements SET total_cents = 0 WHERE status = 'closed'",
	    "UPDATE statement_lines SET amount_cents = 0",
	    "DELETE FROM statement_lines",
	    "DELETE FROM statements",
	    "INSERT INTO statement_lines (statement_id, seq, type, metric, "
	    "label, unit, quantity_base, divisor, unit_price_micro, "
	    "amount_cents) SELECT id, 99, 'adjustment', 'x', 'x', 'EUR', 1, 1, "
	    "1, 1 FROM statements LIMIT 1",
	    "DELETE FROM statement_segments",
	    "UPDATE billing_periods SET status = 'draft'",
	    "UPDATE tariffs SET doc = '{}'",
	    "DELETE FROM tariffs",
	    NULL };
	size_t		 i;

	golden_fixture(&g);
	must_generate("2026-10", &res);
	id = statement_of(g.a, "2026-10");
	must_close("2026-10", sum);
	before = statement_doc(id);

	/* Regenerating is refused. */
	assert_int_equal(generate("2026-10", &res, &cause), BILLING_ECONFLICT);
	assert_non_null(strstr(cause, "closed"));
	free(cause);
	/* Any write behind the code's back is refused by the store. */
	for (i = 0; writes[i] != NULL; i++)
		if (store_exec(tc.db, writes[i], NULL) == 0)
			fail_msg("'%s' was allowed", writes[i]);
	/* A member's new population or name, a new binding: no effect. */
	store_exec(tc.db, "UPDATE tenants SET population = 1, name = 'X'",
	    NULL);
	bind_tariff(g.a, "rural");
	/* Late usage for October. */
	usage(g.a, utc(2026, 10, 20, 10), "vm", "a-vm", "vcpu_seconds", 999999);
	after = statement_doc(id);
	assert_string_equal(before, after);
	free(after);
	assert_int_equal(billing_period_checksum(tc.db, "2026-10", 0, &n, sum2),
	    0);
	assert_string_equal(sum, sum2);
	assert_int_equal(n, 4);
	free(before);
}

static void
late_usage_goes_on_the_next_statement_once(void **state)
{
	struct billing_gen_result res;
	struct golden	 g;
	sqlite3_stmt	*st;
	int64_t		 nov, dec, mid;
	char		 sum[72];

	golden_fixture(&g);
	mid = utc(2026, 10, 15, 22);
	must_generate("2026-10", &res);
	must_close("2026-10", sum);
	/*
	 * 10 more hours of A's 2 vCPU VM under v2 arrive after the close:
	 * v2 vCPU was 100 vCPU-h (1.80), is now 120 (2.16): +0.36.
	 */
	for (int i = 50; i < 60; i++)
		usage(g.a, mid + i * 3600, "vm", "a-vm", "vcpu_seconds", 7200);
	must_generate("2026-11", &res);
	assert_int_equal(res.g_late_lines, 1);
	nov = statement_of(g.a, "2026-11");
	st = store_prepare(tc.db, "SELECT metric, quantity_base, amount_cents, "
	    "basis_cents, corrects_period, tariff_id FROM statement_lines "
	    "WHERE statement_id = ? AND type = 'late_usage'");
	sqlite3_bind_int64(st, 1, nov);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal(sqlite3_column_text(st, 0), "vm.vcpu_hours");
	assert_int_equal(sqlite3_column_int64(st, 1), 72000);
	assert_int_equal(sqlite3_column_int64(st, 2), 36);
	assert_int_equal(sqlite3_column_int64(st, 3), 216);
	assert_string_equal(sqlite3_column_text(st, 4), "2026-10");
	assert_int_equal(sqlite3_column_int64(st, 5), g.v2);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	/* Regenerating November keeps one correction, not two. */
	must_generate("2026-11", &res);
	assert_int_equal(res.g_late_lines, 1);
	must_close("2026-11", sum);
	/* December: nothing new, so no correction. */
	must_generate("2026-12", &res);
	assert_int_equal(res.g_late_lines, 0);
	/* Still later: 5 more hours; only those are billed (0.18). */
	for (int i = 60; i < 65; i++)
		usage(g.a, mid + i * 3600, "vm", "a-vm", "vcpu_seconds", 7200);
	must_generate("2026-12", &res);
	assert_int_equal(res.g_late_lines, 1);
	dec = statement_of(g.a, "2026-12");
	assert_int_equal(scalar("SELECT amount_cents FROM statement_lines "
	    "WHERE statement_id = ? AND type = 'late_usage'", dec), 18);
}

/*
 * Late usage is found by metering's change marker alone: a member whose
 * totals in a closed month were stamped after its generation is compared
 * again; one whose were not is not read at all (here its hours changed
 * behind metering's back, without a stamp, and stay unseen).
 */
static void
late_usage_is_found_by_the_change_marker(void **state)
{
	struct billing_gen_result res;
	struct golden	 g;
	int64_t		 mid;
	char		 sum[72];

	golden_fixture(&g);
	/* Rollups ran before October was generated. */
	assert_int_equal(store_exec(tc.db, "UPDATE meter_state SET change_seq "
	    "= change_seq + 5", NULL), 0);
	must_generate("2026-10", &res);
	must_close("2026-10", sum);
	/* A rollup brings A ten more hours, stamped with its sequence. */
	assert_int_equal(store_exec(tc.db, "UPDATE meter_state SET change_seq "
	    "= change_seq + 1", NULL), 0);
	mid = utc(2026, 10, 15, 22);
	for (int i = 50; i < 60; i++)
		usage(g.a, mid + i * 3600, "vm", "a-vm", "vcpu_seconds", 7200);
	/* B's site hours double, but nothing stamps its totals. */
	assert_int_equal(store_exec(tc.db, "UPDATE meter_state SET quiet = 1; "
	    "UPDATE usage_hourly SET quantity = 2 * quantity WHERE resource = "
	    "'b-site'; UPDATE meter_state SET quiet = 0", NULL), 0);
	must_generate("2026-11", &res);
	assert_int_equal(res.g_late_lines, 1);
	assert_int_equal(scalar("SELECT count(*) FROM statement_lines WHERE "
	    "statement_id = ? AND type = 'late_usage'", statement_of(g.a,
	    "2026-11")), 1);
	assert_int_equal(scalar("SELECT count(*) FROM statement_lines WHERE "
	    "statement_id = ? AND type = 'late_usage'", statement_of(g.b,
	    "2026-11")), 0);
	/* The period keeps the sequence its statements were computed at. */
	assert_int_equal(scalar("SELECT usage_seq FROM billing_periods WHERE "
	    "period = '2026-11'", 0), scalar("SELECT change_seq FROM "
	    "meter_state", 0));
}

static void
an_adjustment_appears_on_the_next_statement(void **state)
{
	struct billing_gen_result res;
	struct golden	 g;
	sqlite3_stmt	*st;
	int64_t		 oct, nov, before;
	char		 sum[72], *cause = NULL;

	golden_fixture(&g);
	must_generate("2026-10", &res);
	oct = statement_of(g.b, "2026-10");
	must_close("2026-10", sum);
	/* Entered with no open statement: pending. */
	st = store_prepare(tc.db, "INSERT INTO adjustments (tenant_id, "
	    "amount_cents, reason, corrects_period, created_at, created_by) "
	    "VALUES (?, -1250, 'site down two days', '2026-10', 0, 'test')");
	sqlite3_bind_int64(st, 1, g.b);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	assert_int_equal(billing_attach_pending(tc.db, g.b, &cause), 0);
	assert_int_equal(scalar("SELECT count(*) FROM adjustments WHERE "
	    "statement_id IS NULL", 0), 1);
	must_generate("2026-11", &res);
	assert_int_equal(res.g_adjustments, 1);
	nov = statement_of(g.b, "2026-11");
	assert_int_equal(scalar("SELECT statement_id FROM adjustments", 0),
	    nov);
	assert_int_equal(scalar("SELECT amount_cents FROM statement_lines "
	    "WHERE statement_id = ? AND type = 'adjustment'", nov), -1250);
	/* The closed October is untouched. */
	assert_int_equal(scalar("SELECT total_cents FROM statements WHERE id = "
	    "?", oct), 16798);
	/* A second one while November is open lands on it at once. */
	before = scalar("SELECT total_cents FROM statements WHERE id = ?", nov);
	st = store_prepare(tc.db, "INSERT INTO adjustments (tenant_id, "
	    "amount_cents, reason, created_at, created_by) VALUES (?, 500, "
	    "'setup', 0, 'test')");
	sqlite3_bind_int64(st, 1, g.b);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	assert_int_equal(billing_attach_pending(tc.db, g.b, &cause), 1);
	assert_int_equal(scalar("SELECT total_cents FROM statements WHERE id = "
	    "?", nov), before + 500);
	/* Regenerating November keeps both. */
	must_generate("2026-11", &res);
	assert_int_equal(res.g_adjustments, 2);
	assert_int_equal(scalar("SELECT total_cents FROM statements WHERE id = "
	    "?", nov), before + 500);
}

/*
 * A statement's checksum is written straight from its rows: it must be the
 * SHA-256 of jansson's sorted compact dump of its document, whatever its
 * texts hold (quotes, backslashes, control characters, accents, emoji).
 */
static void
jansson_checksum(int64_t id, char out[72])
{
	static const char *const volatile_keys[] = { "status", "revision",
	    "generated_at", "closed_at", "checksum" };
	json_t		*doc = billing_statement_json(tc.db, id);
	unsigned char	 h[32];
	unsigned int	 hl = sizeof(h);
	char		*s;
	size_t		 i;

	assert_non_null(doc);
	for (i = 0; i < sizeof(volatile_keys) / sizeof(*volatile_keys); i++)
		json_object_del(doc, volatile_keys[i]);
	s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	assert_non_null(s);
	EVP_Digest(s, strlen(s), h, &hl, EVP_sha256(), NULL);
	memcpy(out, "sha256:", 7);
	util_hex(h, sizeof(h), out + 7);
	free(s);
	json_decref(doc);
}

static void
a_checksum_is_the_sorted_dump_of_the_document(void **state)
{
	static const char *const reasons[] = { "quote \" and \\ backslash",
	    "line\nbreak\ttab\r\x01\x1f", "Saint-\xc3\x89tienne \xe2\x82\xac "
	    "\xf0\x9f\x98\x80", "=SUM(A1)", "", NULL };
	struct billing_gen_result res;
	struct golden	 g;
	struct cents	 total;
	sqlite3_stmt	*st;
	int64_t		 odd;
	char		 sum[72], want[72], *cause = NULL;
	size_t		 i, n = 0;

	golden_fixture(&g);
	odd = add_tenant("L'\xc3\x8ele \"Verte\"\\\x7f", "31997", 7,
	    "2015-01-01", NULL);
	for (i = 0; reasons[i] != NULL; i++) {
		st = store_prepare(tc.db, "INSERT INTO adjustments (tenant_id, "
		    "amount_cents, reason, created_at, created_by) VALUES (?, "
		    "?, ?, 0, 'test')");
		sqlite3_bind_int64(st, 1, i % 2 ? odd : g.b);
		sqlite3_bind_int64(st, 2, (int64_t)i * 137 - 300);
		sqlite3_bind_text(st, 3, reasons[i], -1, SQLITE_STATIC);
		assert_int_equal(sqlite3_step(st), SQLITE_DONE);
		sqlite3_finalize(st);
	}
	must_generate("2026-10", &res);
	assert_int_equal(res.g_adjustments, (int64_t)i);
	st = store_prepare(tc.db, "SELECT id, checksum, total_cents FROM "
	    "statements");
	while (sqlite3_step(st) == SQLITE_ROW) {
		jansson_checksum(sqlite3_column_int64(st, 0), want);
		assert_string_equal((const char *)sqlite3_column_text(st, 1),
		    want);
		assert_int_equal(billing_statement_sum(tc.db,
		    sqlite3_column_int64(st, 0), &total, sum), 0);
		assert_string_equal(sum, want);
		assert_int_equal(total.c, sqlite3_column_int64(st, 2));
		n++;
	}
	sqlite3_finalize(st);
	assert_true(n >= 5);
	assert_int_equal(billing_statement_sum(tc.db, 999999, &total, sum),
	    -1);
	(void)cause;
}

/* ---- 10,000 random lines through the generator ---- */

static void
random_lines_totals_are_sums_of_rounded_lines(void **state)
{
	struct billing_gen_result res;
	static const char *const usage_metrics[][2] = {
	    { "vm", "vcpu_seconds" }, { "vm", "memory_mib_seconds" },
	    { "vm", "disk_mib_seconds" }, { "vm", "cpu_ns" },
	    { "vm", "net_rx_bytes" }, { "vm", "net_tx_bytes" },
	    { "vm", "disk_used_mib_seconds" }, { "mailbox", "mailbox_seconds" },
	    { "mailbox", "mailbox_mib_seconds" }, { "site", "site_seconds" },
	    { "site", "site_mib_seconds" } };
	char		 tariff[2048], insee[8], res_name[16];
	sqlite3_stmt	*st;
	int64_t		 h = utc(2026, 11, 10, 8), lines = 0, sum = 0;
	int64_t		 ids[1000];
	int		 i, m;
	size_t		 o;

	srandom(31001);
	/* Odd prices with six decimals for each metric. */
	o = (size_t)snprintf(tariff, sizeof(tariff), "{\"name\":\"odd\","
	    "\"deliberation\":{\"number\":\"R\",\"date\":\"2026-01-01\"},"
	    "\"effective_from\":\"2026-01-01\",\"rates\":{");
	for (m = 0; m < BILLING_NMETRICS; m++)
		o += (size_t)snprintf(tariff + o, sizeof(tariff) - o,
		    "%s\"%s\":\"0.%06ld\"", m ? "," : "",
		    billing_metrics[m].bm_key, 1 + random() % 999999);
	snprintf(tariff + o, sizeof(tariff) - o, "}}");
	add_tariff(tariff, 1);
	assert_int_equal(store_begin(tc.db), 0);
	for (i = 0; i < 1000; i++) {
		snprintf(insee, sizeof(insee), "%05d", 10000 + i);
		ids[i] = add_tenant("C", insee, 0, "2015-01-01", NULL);
		for (m = 0; m < BILLING_NMETRICS; m++) {
			snprintf(res_name, sizeof(res_name), "r%d", i);
			usage(ids[i], h, usage_metrics[m][0], res_name,
			    usage_metrics[m][1], 1 + ((int64_t)random() << 16 |
			    (random() & 0xffff)) % 2000000000000LL);
		}
	}
	assert_int_equal(store_commit(tc.db), 0);
	must_generate("2026-11", &res);
	assert_true(res.g_lines >= 10000);
	/* Every statement's total is the sum of its rounded lines. */
	assert_int_equal(scalar("SELECT count(*) FROM statements s WHERE "
	    "total_cents != (SELECT sum(amount_cents) FROM statement_lines l "
	    "WHERE l.statement_id = s.id)", 0), 0);
	/* Every line is the reference rounding of its exact value. */
	st = store_prepare(tc.db, "SELECT quantity_base, divisor, "
	    "unit_price_micro, amount_cents FROM statement_lines");
	while (sqlite3_step(st) == SQLITE_ROW) {
		assert_int_equal(sqlite3_column_int64(st, 3), ref_cents(
		    sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
		    sqlite3_column_int64(st, 2)));
		sum += sqlite3_column_int64(st, 3);
		lines++;
	}
	sqlite3_finalize(st);
	assert_int_equal(lines, res.g_lines);
	assert_int_equal(sum, res.g_total.c);
}

/* ---- exports ---- */

static void
csv_export_opens_in_french_libreoffice(void **state)
{
	struct billing_gen_result res;
	struct export_opts o;
	struct export_info info;
	json_t		*doc;
	int64_t		 n;
	char		*out, *cause = NULL, sum[72];
	size_t		 len;

	add_tariff(tariff_v2, 1);
	add_tenant("=HYPERLINK(\"http://x\")", "31001", 412, "2015-01-01",
	    NULL);
	add_tenant("Saint-Paul; Sainte-Anne", "31002", 412, "2015-01-01",
	    NULL);
	must_generate("2026-11", &res);
	memset(&o, 0, sizeof(o));
	o.eo_sep = ';';
	o.eo_point = ',';
	assert_int_equal(billing_export(tc.db, "2026-11", EXPORT_CSV, &o, &out,
	    &len, &info, &cause), 0);
	assert_int_equal(memcmp(out, "\xef\xbb\xbfstatement;period;", 20), 0);
	/* 6.00 EUR with a decimal comma; no formula; the ';' quoted. */
	assert_non_null(strstr(out, ";6,00;6,00;"));
	assert_non_null(strstr(out, ";\"'=HYPERLINK(\"\"http://x\"\")\";"));
	assert_non_null(strstr(out, ";\"Saint-Paul; Sainte-Anne\";"));
	assert_non_null(strstr(out, "\r\n"));
	assert_int_equal(info.ei_count, 2);
	assert_int_equal(billing_period_checksum(tc.db, "2026-11", 0, &n, sum),
	    0);
	assert_string_equal(info.ei_checksum, sum);
	free(out);
	json_decref(info.ei_ids);
	/* A point and commas, as selected. */
	o.eo_sep = ',';
	o.eo_point = '.';
	o.eo_summary = 1;
	assert_int_equal(billing_export(tc.db, "2026-11", EXPORT_CSV, &o, &out,
	    &len, &info, &cause), 0);
	assert_non_null(strstr(out, ",30.72,sha256:"));
	free(out);
	json_decref(info.ei_ids);
	/* JSON pages: one statement, then the next. */
	o.eo_summary = 0;
	o.eo_limit = 1;
	assert_int_equal(billing_export(tc.db, "2026-11", EXPORT_JSON, &o, &out,
	    &len, &info, &cause), 0);
	assert_int_equal(info.ei_count, 1);
	assert_int_equal(info.ei_period_count, 2);
	assert_true(info.ei_next > 0);
	doc = json_loadb(out, len, 0, NULL);
	assert_non_null(doc);
	assert_int_equal(json_array_size(json_object_get(doc, "statements")),
	    1);
	json_decref(doc);
	free(out);
	json_decref(info.ei_ids);
}

/* ---- no binary fractions ---- */

static void
billing_sources_name_no_binary_fraction_type(void **state)
{
	static const char *const files[] = { "controller/billing/billing.h",
	    "controller/billing/billing.c", "controller/billing/money.c",
	    "controller/billing/period.c", "controller/billing/tariff.c",
	    "controller/billing/gen.c", "controller/billing/export.c",
	    "controller/billing/titre.c", "controller/billing/pes.c",
	    "cli/tariff.c", "cli/statement.c", "cli/adjustment.c", NULL };
	static const char *const words[] = { "double", "float", "strtod",
	    "strtof", "strtold", "atof", "json_real", "json_real_value",
	    "json_number_value", "JSON_DECODE_INT_AS_REAL", NULL };
	char	 top[1024], path[1200], *text, *cause = NULL, *p, *slash;
	size_t	 i, j, wl;
	int	 checked = 0;

	/* The tree this test was built from: __FILE__ is tests/unit/... */
	strlcpy(top, __FILE__, sizeof(top));
	for (i = 0; i < 3 && (slash = strrchr(top, '/')) != NULL; i++)
		*slash = '\0';
	if (i < 3)
		strlcpy(top, ".", sizeof(top));
	for (i = 0; files[i] != NULL; i++) {
		snprintf(path, sizeof(path), "%s/%s", top, files[i]);
		if (util_read_file(path, 1 << 22, &text, NULL, &cause) == -1)
			fail_msg("%s", cause);
		for (j = 0; words[j] != NULL; j++) {
			wl = strlen(words[j]);
			for (p = text; (p = strstr(p, words[j])) != NULL;
			    p += wl) {
				if ((p > text && (isalnum((unsigned char)
				    p[-1]) || p[-1] == '_')) ||
				    isalnum((unsigned char)p[wl]) ||
				    p[wl] == '_')
					continue;
				fail_msg("%s names '%s'", files[i], words[j]);
			}
		}
		/* printf conversions of binary fractions */
		if (strstr(text, "%f") || strstr(text, "%g") ||
		    strstr(text, "%e\"") || strstr(text, "%Lf"))
			fail_msg("%s formats a binary fraction", files[i]);
		free(text);
		checked++;
	}
	assert_int_equal(checked, 12);
}

int
main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(money_parses_decimal_strings_exactly),
		cmocka_unit_test(money_formats_with_the_chosen_decimal_mark),
		cmocka_unit_test(line_rounds_once_half_up_to_cents),
		cmocka_unit_test(ten_thousand_random_lines_round_like_the_reference),
		cmocka_unit_test(periods_follow_the_paris_calendar),
		cmocka_unit_test(usage_metric_names_are_distinct_across_kinds),
		cmocka_unit_test(tariff_documents_are_checked),
		cmocka_unit_test(billing_sources_name_no_binary_fraction_type),
	};
#define DB(t) cmocka_unit_test_setup_teardown(t, setup_db, teardown_db)
	const struct CMUnitTest db[] = {
		DB(golden_october_with_a_tariff_change_on_the_16th),
		DB(regenerating_a_draft_replaces_it_and_keeps_its_id),
		DB(generation_refuses_gaps_and_overlapping_periods),
		DB(a_closed_statement_never_changes),
		DB(late_usage_goes_on_the_next_statement_once),
		DB(late_usage_is_found_by_the_change_marker),
		DB(an_adjustment_appears_on_the_next_statement),
		DB(a_checksum_is_the_sorted_dump_of_the_document),
		DB(random_lines_totals_are_sums_of_rounded_lines),
		DB(csv_export_opens_in_french_libreoffice),
	};
	char	*cause = NULL;
	int	 rc;

	log_init("test_ctl_billing", LOG_LEVEL_WARN, NULL);
	if (calendar_init("Europe/Paris", &cause) == -1)
		fail_msg("%s", cause);
	rc = cmocka_run_group_tests_name("billing", pure, NULL, NULL);
	rc += cmocka_run_group_tests_name("billing_db", db, NULL, NULL);
	return (rc);
}
