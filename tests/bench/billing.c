/*
 * Billing benchmark: one month of statements for every commune of the
 * Etalab file, three services each (a VM, a mailbox, a website), from
 * hourly usage rows written straight into usage_hourly. Prints the time
 * to generate the period (and to regenerate it, export it, close it)
 * next to references measured on the same rows in the same run: a plain
 * scan of the month's rows, and the SUM ... GROUP BY tenant, kind, metric
 * a report would run.
 *
 * The usage database is built once and kept (BENCH_BILLING_DIR, default
 * build/bench): the statements written are removed after each run, the
 * close is rolled back. Figures only: it never fails on a time.
 *
 * usage: billing COMMUNES.JSON
 * knobs: BENCH_BILLING_COMMUNES (0: all), BENCH_BILLING_HOURS (0: the
 * whole month), BENCH_BILLING_METRICS (billed: the 4 allocation metrics
 * the sample tariff prices most; all: the 11 metrics of the contract),
 * BENCH_BILLING_DIR, BENCH_BILLING_NOREF (1: skip the slow GROUP BY).
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "billing/billing.h"

#define PERIOD		"2026-10"

static struct ctl	 bc;

struct bmetric {
	const char	*kind, *metric;
	int64_t		 per_hour;	/* base units per hour */
};

/* What a VM (2 vCPU, 4 GiB, 20 GiB), a mailbox and a site use per hour. */
static const struct bmetric all_metrics[] = {
	{ "vm", "vcpu_seconds", 2 * 3600 },
	{ "vm", "memory_mib_seconds", 4096LL * 3600 },
	{ "mailbox", "mailbox_seconds", 3600 },
	{ "site", "site_seconds", 3600 },
	{ "vm", "disk_mib_seconds", 20480LL * 3600 },
	{ "vm", "cpu_ns", 360000000000LL },
	{ "vm", "net_rx_bytes", 50LL << 20 },
	{ "vm", "net_tx_bytes", 20LL << 20 },
	{ "vm", "disk_used_mib_seconds", 8192LL * 3600 },
	{ "mailbox", "mailbox_mib_seconds", 800LL * 3600 },
	{ "site", "site_mib_seconds", 300LL * 3600 },
};

static const char bench_tariff[] = "{\"name\": \"standard\", "
    "\"deliberation\": {\"number\": \"2026-031\", \"date\": \"2026-09-24\"}, "
    "\"effective_from\": \"2026-01-01\", \"bands\": [{\"name\": \"S\", "
    "\"max\": 999}, {\"name\": \"M\", \"max\": 9999}, {\"name\": \"L\"}], "
    "\"rates\": {\"vm.vcpu_hours\": \"0.0180\", \"vm.memory_gib_hours\": "
    "{\"S\": \"0.0045\", \"M\": \"0.0055\", \"L\": \"0.0065\"}, "
    "\"vm.disk_gib_hours\": \"0.00012\", \"vm.cpu_seconds\": \"0.000001\", "
    "\"vm.net_rx_gib\": \"0.001\", \"vm.net_tx_gib\": \"0.01\", "
    "\"vm.disk_used_gib_hours\": \"0.00001\", \"mailbox.mailbox_days\": "
    "\"0.0120\", \"mailbox.storage_gib_hours\": \"0.00005\", "
    "\"site.site_days\": \"0.0333\", \"site.storage_gib_hours\": "
    "\"0.00005\"}, \"allowances\": {\"mailbox.mailbox_days\": \"100\"}, "
    "\"monthly_fee\": {\"S\": \"6.00\", \"M\": \"18.00\", \"L\": "
    "\"45.00\"}, \"contribution_per_inhabitant\": \"0.73\"}";

static double
bench_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

static void
bench_exec(const char *sql)
{
	char	*cause = NULL;

	if (store_exec(bc.db, sql, &cause) == -1)
		fatalx("%s: %s", sql, cause);
}

static int64_t
bench_scalar(const char *sql)
{
	sqlite3_stmt	*st = store_prepare(bc.db, sql);
	int64_t		 v = -1;

	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (v);
}

static long
env_long(const char *name, long def)
{
	const char	*s = getenv(name);

	return (s != NULL && *s != '\0' ? strtol(s, NULL, 10) : def);
}

static int
bench_cmp_metric(const void *a, const void *b)
{
	const struct bmetric *x = *(const struct bmetric *const *)a;
	const struct bmetric *y = *(const struct bmetric *const *)b;
	int	 c = strcmp(x->kind, y->kind);

	return (c != 0 ? c : strcmp(x->metric, y->metric));
}

/* Drop (0) metering's secondary indexes of usage_hourly, or rebuild (1). */
static void
bench_indexes(int rebuild)
{
	static char	*sql[8];
	static size_t	 n;
	sqlite3_stmt	*st;
	char		*drop[8];
	size_t		 i, nd = 0;

	if (rebuild) {
		for (i = 0; i < n; i++) {
			bench_exec(sql[i]);
			free(sql[i]);
		}
		n = 0;
		return;
	}
	st = store_prepare(bc.db, "SELECT name, sql FROM sqlite_master WHERE "
	    "type = 'index' AND tbl_name = 'usage_hourly' AND sql IS NOT "
	    "NULL");
	while (sqlite3_step(st) == SQLITE_ROW && n < nitems(sql)) {
		sql[n++] = xstrdup((const char *)sqlite3_column_text(st, 1));
		xasprintf(&drop[nd++], "DROP INDEX %s",
		    sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	for (i = 0; i < nd; i++) {
		bench_exec(drop[i]);
		free(drop[i]);
	}
}

/* Members and the tariff; the usage rows, hour by hour. */
static void
bench_load(const char *communes, long max_communes, int64_t start,
    long hours, size_t nmetrics)
{
	json_t		*all, *c;
	json_error_t	 jerr;
	sqlite3_stmt	*st;
	struct tariff	 t;
	json_t		*doc, *norm;
	char		*cause = NULL, *s, res[32];
	int64_t		*ids = NULL, n = 0;
	const struct bmetric *sel[nitems(all_metrics)];
	size_t		 i, m, k, kend;
	long		 h;
	double		 t0 = bench_now(), t1;
	int64_t		 rows = 0;

	if ((all = json_load_file(communes, 0, &jerr)) == NULL)
		fatalx("%s:%d: %s", communes, jerr.line, jerr.text);
	bench_exec("BEGIN");
	st = store_prepare(bc.db, "INSERT INTO tenants (kind, name, insee, "
	    "siren, population, joined_on, created_at, updated_at) VALUES "
	    "('commune', ?, ?, ?, ?, '2015-01-01', 0, 0) RETURNING id");
	json_array_foreach(all, i, c) {
		if (strcmp(json_string_value(json_object_get(c, "type")) ?
		    json_string_value(json_object_get(c, "type")) : "",
		    "commune-actuelle") != 0)
			continue;
		if (max_communes > 0 && n == max_communes)
			break;
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, json_string_value(json_object_get(c,
		    "nom")), -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, json_string_value(json_object_get(c,
		    "code")), -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, json_string_value(json_object_get(c,
		    "siren")), -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, json_integer_value(json_object_get(c,
		    "population")));
		if (sqlite3_step(st) != SQLITE_ROW)
			fatalx("tenant %s: %s", json_string_value(
			    json_object_get(c, "code")), sqlite3_errmsg(bc.db));
		ids = xrealloc(ids, (size_t)(n + 1) * sizeof(*ids));
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	json_decref(all);

	doc = json_loads(bench_tariff, 0, NULL);
	if ((norm = tariff_normalize(doc, &t, &cause)) == NULL)
		fatalx("tariff: %s", cause);
	s = json_dumps(norm, JSON_COMPACT | JSON_SORT_KEYS);
	st = store_prepare(bc.db, "INSERT INTO tariffs (name, version, "
	    "deliberation_number, deliberation_date, effective_from, doc, "
	    "created_at) VALUES ('standard', 1, '2026-031', '2026-09-24', "
	    "'2026-01-01', ?, 0)");
	sqlite3_bind_text(st, 1, s, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		fatalx("tariff: %s", sqlite3_errmsg(bc.db));
	sqlite3_finalize(st);
	free(s);
	json_decref(norm);
	json_decref(doc);
	bench_exec("INSERT INTO billing_default (one, name) VALUES (1, "
	    "'standard')");
	bench_exec("COMMIT");
	printf("bench: billing: %lld communes; writing %ld hours x %zu rows "
	    "each\n", (long long)n, hours, nmetrics);
	fflush(stdout);

	/*
	 * Fast load: metering's secondary indexes are dropped and built
	 * again at the end (a sort), no journal, rows in primary key order
	 * (hour, kind, resource, metric) so that the table only appends.
	 */
	bench_indexes(0);
	bench_exec("PRAGMA journal_mode = OFF");
	for (m = 0; m < nmetrics; m++)
		sel[m] = &all_metrics[m];
	qsort(sel, nmetrics, sizeof(sel[0]), bench_cmp_metric);
	st = store_prepare(bc.db, "INSERT INTO usage_hourly (tenant_id, hour, "
	    "kind, resource, metric, quantity) VALUES (?, ?, ?, ?, ?, ?)");
	bench_exec("BEGIN");
	for (h = 0; h < hours; h++) {
		for (k = 0; k < nmetrics; k = kend) {
			for (kend = k; kend < nmetrics && strcmp(sel[kend]->kind,
			    sel[k]->kind) == 0; kend++)
				;
			for (i = 0; i < (size_t)n; i++) {
				snprintf(res, sizeof(res), "%c%07lld",
				    sel[k]->kind[0], (long long)ids[i]);
				for (m = k; m < kend; m++) {
					sqlite3_reset(st);
					sqlite3_bind_int64(st, 1, ids[i]);
					sqlite3_bind_int64(st, 2, start +
					    h * 3600);
					sqlite3_bind_text(st, 3, sel[m]->kind,
					    -1, SQLITE_STATIC);
					sqlite3_bind_text(st, 4, res, -1,
					    SQLITE_TRANSIENT);
					sqlite3_bind_text(st, 5,
					    sel[m]->metric, -1, SQLITE_STATIC);
					sqlite3_bind_int64(st, 6,
					    sel[m]->per_hour);
					if (sqlite3_step(st) != SQLITE_DONE)
						fatalx("usage: %s",
						    sqlite3_errmsg(bc.db));
					rows++;
				}
			}
		}
		if (h % 24 == 23) {
			bench_exec("COMMIT");
			printf("bench: billing:   %ld of %ld hours, %.0f rows/s\n",
			    h + 1, hours, (double)rows / (bench_now() - t0));
			fflush(stdout);
			bench_exec("BEGIN");
		}
	}
	bench_exec("COMMIT");
	sqlite3_finalize(st);
	free(ids);
	t1 = bench_now();
	printf("bench: billing: wrote %lld usage rows in %.1f s (%.0f rows/s)\n",
	    (long long)rows, t1 - t0, (double)rows / (t1 - t0));
	bench_indexes(1);
	printf("bench: billing: rebuilt metering's indexes in %.1f s\n",
	    bench_now() - t1);
	bench_exec("PRAGMA journal_mode = WAL");
	bench_exec("CREATE TABLE bench_meta (communes, hours, metrics)");
}

/* Step through every row of a query; the rows seen. */
static int64_t
bench_run(const char *sql, int64_t a, int64_t b, double *secs)
{
	sqlite3_stmt	*st = store_prepare(bc.db, sql);
	double		 t0 = bench_now();
	int64_t		 n = 0, sum = 0;

	sqlite3_bind_int64(st, 1, a);
	sqlite3_bind_int64(st, 2, b);
	while (sqlite3_step(st) == SQLITE_ROW) {
		sum += sqlite3_column_int64(st, sqlite3_column_count(st) - 1);
		n++;
	}
	sqlite3_finalize(st);
	*secs = bench_now() - t0;
	(void)sum;
	return (n);
}

static double
bench_generate(struct billing_gen_result *res, struct period *p)
{
	double	 t0 = bench_now();
	char	*cause = NULL;
	int	 status;

	bench_exec("BEGIN IMMEDIATE");
	if (billing_generate(bc.db, p, res, &status, &cause) == -1)
		fatalx("generate: %s", cause);
	bench_exec("COMMIT");
	return (bench_now() - t0);
}

int
main(int argc, char **argv)
{
	struct billing_gen_result res, res2;
	struct export_opts o;
	struct export_info info;
	struct period	 p;
	const char	*dir = getenv("BENCH_BILLING_DIR");
	long		 max_communes = env_long("BENCH_BILLING_COMMUNES", 0);
	long		 hours = env_long("BENCH_BILLING_HOURS", 0);
	const char	*which = getenv("BENCH_BILLING_METRICS");
	size_t		 nmetrics = 4, len;
	int64_t		 bounds[2], utc[2], rows, groups, n;
	double		 t_scan, t_group, t_gen, t_regen, t_csv, t_json, t_close;
	double		 t0;
	char		*cause = NULL, path[1024], tmp[1100], *out, sum[72];
	int		 status, fresh = 0;
	struct stat	 sb;
	sqlite3_stmt	*st;

	if (argc != 2) {
		fprintf(stderr, "usage: billing COMMUNES.JSON\n");
		return (2);
	}
	log_init("bench-billing", LOG_LEVEL_WARN, NULL);
	if (calendar_init("Europe/Paris", &cause) == -1)
		fatalx("%s", cause);
	if (which != NULL && strcmp(which, "all") == 0)
		nmetrics = nitems(all_metrics);
	if (period_parse(PERIOD, &p, &cause) == -1)
		fatalx("%s", cause);
	bounds[0] = p.p_first;
	bounds[1] = p.p_end;
	period_utc(bounds, utc, 2);
	if (hours <= 0 || hours > (utc[1] - utc[0]) / 3600)
		hours = (long)((utc[1] - utc[0]) / 3600);
	if (util_mkdirs(dir ? dir : "build/bench", 0755, &cause) == -1)
		fatalx("%s", cause);
	snprintf(path, sizeof(path), "%s/billing-%ld-%ld-%zu.db",
	    dir ? dir : "build/bench", max_communes, hours, nmetrics);
	memset(&bc, 0, sizeof(bc));
	ctl = &bc;
	if (stat(path, &sb) == 0) {
		if (store_open(path, &bc.db, &cause) == -1)
			fatalx("%s", cause);
		if (bench_scalar("SELECT count(*) FROM sqlite_master WHERE "
		    "name = 'bench_meta'") != 1) {
			store_close(bc.db);
			bc.db = NULL;
			unlink(path);
			snprintf(tmp, sizeof(tmp), "%s-wal", path);
			unlink(tmp);
			snprintf(tmp, sizeof(tmp), "%s-shm", path);
			unlink(tmp);
		}
	}
	if (bc.db == NULL || stat(path, &sb) != 0) {
		fresh = 1;
		if (store_open(path, &bc.db, &cause) == -1)
			fatalx("%s", cause);
	}
	bench_exec("PRAGMA cache_size = -1048576");	/* 1 GiB */
	if (fresh) {
		bench_exec("PRAGMA synchronous = OFF");
		bench_load(argv[1], max_communes, utc[0], hours, nmetrics);
		bench_exec("PRAGMA wal_checkpoint(TRUNCATE)");
		bench_exec("PRAGMA synchronous = FULL");
	} else
		printf("bench: billing: reusing %s\n", path);
	/* A run that stopped half way left statements: drafts go. */
	bench_exec("DELETE FROM statements WHERE status = 'draft'");
	bench_exec("DELETE FROM billing_periods WHERE status = 'draft'");
	rows = bench_scalar("SELECT count(*) FROM usage_hourly");
	stat(path, &sb);
	printf("bench: billing: %lld usage rows, %lld communes, database %.1f "
	    "GiB\n", (long long)rows, (long long)bench_scalar("SELECT count(*) "
	    "FROM tenants"), (double)sb.st_size / (1 << 30));

	/* References, the first also warming the cache. */
	bench_run("SELECT count(*), sum(quantity) FROM usage_hourly WHERE "
	    "hour >= ? AND hour < ?", utc[0], utc[1], &t_scan);
	bench_run("SELECT count(*), sum(quantity) FROM usage_hourly WHERE "
	    "hour >= ? AND hour < ?", utc[0], utc[1], &t_scan);
	if (env_long("BENCH_BILLING_NOREF", 0) == 0)
		groups = bench_run("SELECT tenant_id, kind, metric, "
		    "sum(quantity) FROM usage_hourly WHERE hour >= ? AND hour "
		    "< ? GROUP BY tenant_id, kind, metric", utc[0], utc[1],
		    &t_group);
	else {
		groups = 0;
		t_group = 1;
	}

	t_gen = bench_generate(&res, &p);
	t_regen = bench_generate(&res2, &p);

	memset(&o, 0, sizeof(o));
	o.eo_sep = ';';
	o.eo_point = ',';
	t0 = bench_now();
	if (billing_export(bc.db, PERIOD, EXPORT_CSV, &o, &out, &len, &info,
	    &cause) == -1)
		fatalx("export: %s", cause);
	t_csv = bench_now() - t0;
	printf("bench: billing: CSV of every line: %.1f MiB\n",
	    (double)len / (1 << 20));
	free(out);
	json_decref(info.ei_ids);
	t0 = bench_now();
	if (billing_export(bc.db, PERIOD, EXPORT_JSON, &o, &out, &len, &info,
	    &cause) == -1)
		fatalx("export: %s", cause);
	t_json = bench_now() - t0;
	printf("bench: billing: JSON documents: %.1f MiB\n",
	    (double)len / (1 << 20));
	free(out);
	json_decref(info.ei_ids);

	t0 = bench_now();
	bench_exec("BEGIN IMMEDIATE");
	if (billing_close(bc.db, &p, &n, sum, &status, &cause) == -1)
		fatalx("close: %s", cause);
	t_close = bench_now() - t0;
	bench_exec("ROLLBACK");

	/* Leave the usage database as it was for the next run. */
	st = store_prepare(bc.db, "DELETE FROM statements WHERE period = ?");
	sqlite3_bind_text(st, 1, PERIOD, -1, SQLITE_STATIC);
	sqlite3_step(st);
	sqlite3_finalize(st);
	bench_exec("DELETE FROM billing_periods WHERE period = '" PERIOD "'");
	bench_exec("PRAGMA wal_checkpoint(TRUNCATE)");

	printf("\n==================== opsn billing bench ====================\n");
	printf("One month (%s, Europe/Paris, %ld hours) of %lld usage rows:\n",
	    PERIOD, hours, (long long)rows);
	printf("%lld communes x 3 services (VM, mailbox, site), %zu metrics "
	    "per commune-hour\n", (long long)res.g_statements, nmetrics);
	printf("  %-44s %8.2f s\n", "reference: scan of the month's rows",
	    t_scan);
	printf("  %-44s %8.2f s  (%lld groups)\n", "reference: SUM ... GROUP "
	    "BY tenant, kind, metric", t_group, (long long)groups);
	printf("  %-44s %8.2f s  (usage read %.2f s)\n", "generate: all "
	    "statements, committed", t_gen, (double)res.g_usage_ms / 1000);
	printf("  %-44s %8.2f s\n", "regenerate: replace every draft", t_regen);
	printf("  %-44s %8.2f s\n", "export: CSV of every line", t_csv);
	printf("  %-44s %8.2f s\n", "export: JSON documents", t_json);
	printf("  %-44s %8.2f s\n", "close (rolled back)", t_close);
	printf("  statements %lld, lines %lld, total %lld.%02lld EUR\n",
	    (long long)res.g_statements, (long long)res.g_lines,
	    (long long)(res.g_total.c / 100), (long long)(res.g_total.c % 100));
	printf("  ratio generate / GROUP BY reference: %.2f; per statement: "
	    "%.3f ms\n", t_gen / t_group, 1000 * t_gen /
	    (double)(res.g_statements ? res.g_statements : 1));
	printf("============================================================\n");
	store_close(bc.db);
	return (0);
}
