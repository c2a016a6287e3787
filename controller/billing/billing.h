/*
 * Billing: deliberated tariffs, statements per member and period, and the
 * exports finance reconciles. Shared by controller/billing*.c and their
 * unit tests; nothing outside billing includes it.
 *
 * Money is never a binary fraction: prices are struct money (integer
 * micro-euros), statement amounts struct cents (integer cents). Neither
 * converts implicitly to or from a number, and tests/unit/
 * test_ctl_billing.c fails if a billing source names a binary-fraction type.
 */
#ifndef OPSN_BILLING_H
#define OPSN_BILLING_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

struct api_req;

/* ---- billing_money.c ---- */

#define MONEY_MICRO_PER_CENT	10000
#define MONEY_MICRO_PER_EUR	1000000
/* The largest price or amount accepted as input: 1e9 EUR. */
#define MONEY_MAX_MICRO		((int64_t)1000000000 * MONEY_MICRO_PER_EUR)
/*
 * The largest amount of one line: 10^13 EUR. Thousands of such lines
 * still sum within 64 bits; an amount beyond is an error, never wrapped.
 */
#define MONEY_MAX_CENTS		((int64_t)1000000000000000)

/* A price: integer micro-euros (0.0150 EUR = 15000). */
struct money {
	int64_t	 micro;
};

/* An amount on a statement: integer cents. */
struct cents {
	int64_t	 c;
};

/*
 * Parse a decimal string ("0.0150", "-12.50", "12,50", "3") exactly into
 * micro-units with at most maxdec decimals (6 for money); a sign only when
 * negok. -1 with *cause.
 */
int	money_parse_micro(const char *, int maxdec, int negok, int64_t *,
	    char **cause);
int	money_parse(const char *, int negok, struct money *, char **cause);
/* Parse an amount in euros with at most 2 decimals ("-12.50"). */
int	money_parse_cents(const char *, struct cents *, char **cause);
/*
 * Round num/den (den > 0) to the nearest integer, halves away from zero
 * (so up for the positive amounts of usage): 0.5 -> 1, -0.5 -> -1.
 */
int64_t	money_round_div(__int128 num, __int128 den);
/*
 * The amount of a line: quantity qbase/divisor display units at price per
 * display unit, rounded once, half up, to cents. Exact: 128-bit products.
 * -1 when it is beyond MONEY_MAX_CENTS either way.
 */
int	money_line(int64_t qbase, int64_t divisor, struct money price,
	    struct cents *);
/* a + b; -1 on overflow. */
int	money_cents_add(struct cents *, struct cents);
/*
 * Decimal text of v / 10^scale with between mindec and maxdec decimals
 * (rounded half away from zero past maxdec), point as the separator;
 * into buf (at least 48 bytes).
 */
void	money_fmt_scaled(__int128 v, int scale, int mindec, int maxdec,
	    char point, char *buf, size_t len);
/* "12.50" */
void	money_fmt_cents(struct cents, char point, char *buf, size_t len);
/* "0.015" (at least 2 decimals, at most 6) */
void	money_fmt_price(struct money, char point, char *buf, size_t len);
/* qbase/divisor with at most 4 decimals, trailing zeros dropped. */
void	money_fmt_quantity(int64_t qbase, int64_t divisor, char point,
	    char *buf, size_t len);

/* ---- billing_period.c: calendar days, periods, the operator's zone ---- */

#define PERIOD_LABEL_MAX	16

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
int64_t	period_days(int y, int m, int d);
/* The civil date of a day number. */
void	period_civil(int64_t day, int *y, int *m, int *d);
/* "YYYY-MM-DD" -> day number; -1 if not a real date in 1900..2200. */
int	period_parse_day(const char *, int64_t *day);
/* Day number -> "YYYY-MM-DD" (buf of at least 11 bytes). */
void	period_fmt_day(int64_t day, char *buf, size_t len);
int	period_days_in_month(int y, int m);
int	period_days_in_year(int y);

struct period {
	char	 p_label[PERIOD_LABEL_MAX];	/* "2026-10", "2026-Q4", "2026" */
	int64_t	 p_first;	/* first day (number) */
	int64_t	 p_end;		/* the day after the last */
	int	 p_year;
};

/* Parse "2026-10", "2026-Q4" or "2026"; -1 with *cause. */
int	period_parse(const char *, struct period *, char **cause);
/*
 * The UTC instants of local midnight at the start of days, in the
 * operator's calendar (core/calendar.c).
 */
void	period_utc(const int64_t *days, int64_t *utc, size_t n);
/*
 * The fraction of months that days [from, end) cover, each day weighing
 * 1/(days in its month), as a multiple of 1/PERIOD_MONTH_DIV: exact,
 * because PERIOD_MONTH_DIV = lcm(28, 29, 30, 31).
 */
#define PERIOD_MONTH_DIV	377580
int64_t	period_month_fraction(int64_t from, int64_t end);

/* ---- billing_tariff.c ---- */

#define TARIFF_BANDS_MAX	8
#define TARIFF_NAME_MAX		63

/* The metrics a tariff can price: usage_hourly (kind, metric) -> unit. */
struct billing_metric {
	const char	*bm_key;	/* "vm.vcpu_hours": what tariffs name */
	const char	*bm_kind;	/* usage_hourly.kind */
	const char	*bm_usage;	/* usage_hourly.metric */
	int64_t		 bm_div;	/* base units per display unit */
	const char	*bm_unit;	/* "vCPU-hour" */
	const char	*bm_label;
};
extern const struct billing_metric	billing_metrics[];
extern const size_t			billing_nmetrics;
#define BILLING_NMETRICS	11
/* Index of a metric by key, or by kind and usage metric; -1 if unknown. */
int	tariff_metric(const char *key);
int	tariff_metric_usage(const char *kind, const char *metric);

struct tariff_band {
	char	 tb_name[33];
	int64_t	 tb_max;		/* -1: no upper bound */
};

/* One version of a tariff, parsed from its stored document. */
struct tariff {
	int64_t		 t_id;
	char		 t_name[TARIFF_NAME_MAX + 1];
	int64_t		 t_version;
	char		 t_delib_no[65];
	char		 t_delib_date[11];
	int64_t		 t_from;	/* first day */
	int64_t		 t_end;		/* day after the last; INT64_MAX: open */
	size_t		 t_nbands;
	struct tariff_band t_bands[TARIFF_BANDS_MAX];
	/* Per metric and band: the price, whether there is one, allowance. */
	struct money	 t_rate[BILLING_NMETRICS][TARIFF_BANDS_MAX];
	int		 t_has_rate[BILLING_NMETRICS];
	int64_t		 t_allow[BILLING_NMETRICS][TARIFF_BANDS_MAX];	/* micro-units per month */
	struct money	 t_fee[TARIFF_BANDS_MAX];	/* per month */
	int		 t_has_fee;
	struct money	 t_contrib[TARIFF_BANDS_MAX];	/* per inhabitant per year */
	int		 t_has_contrib;
};

/*
 * Check a tariff document (as an operator sends it) and return its
 * normalized form (every banded value expanded, prices as canonical
 * strings) with the parsed version in *t. NULL with *cause.
 */
json_t	*tariff_normalize(json_t *doc, struct tariff *t, char **cause);
/* Parse a stored, normalized document. -1 with *cause. */
int	tariff_from_doc(json_t *doc, struct tariff *t, char **cause);
/* The band of a population (index into t_bands). */
size_t	tariff_band(const struct tariff *, int64_t population);
/* "standard v2" into buf. */
void	tariff_label(const struct tariff *, char *buf, size_t len);

/* All versions (of every tariff), ordered by name and start. */
struct tariff_set {
	struct tariff	*ts_v;
	size_t		 ts_n;
	char		 ts_default[TARIFF_NAME_MAX + 1];	/* "" if none */
};
int	tariff_load(sqlite3 *, struct tariff_set *, char **cause);
void	tariff_set_free(struct tariff_set *);
const struct tariff *tariff_by_id(const struct tariff_set *, int64_t id);

/* Routes. */
void	tariff_route_list(struct api_req *);
void	tariff_route_add(struct api_req *);
void	tariff_route_show(struct api_req *);
void	tariff_route_default(struct api_req *);
void	tariff_route_end(struct api_req *);
void	tariff_route_bind(struct api_req *);
void	tariff_route_binding(struct api_req *);

/* ---- billing_gen.c: statements ---- */

/* What generating a period did. */
struct billing_gen_result {
	int64_t		 g_statements;
	int64_t		 g_lines;
	int64_t		 g_late_lines;		/* late usage corrections */
	int64_t		 g_adjustments;
	int64_t		 g_removed;		/* drafts of members no longer active */
	struct cents	 g_total;
	int64_t		 g_revision;
	int64_t		 g_usage_ms;		/* reading usage_hourly */
	int64_t		 g_total_ms;
};

/* Status codes that say which HTTP status an error deserves. */
#define BILLING_EINVAL	400
#define BILLING_ECONFLICT 409
#define BILLING_EINTERNAL 500

/*
 * Write draft statements of period for every member active in it, in the
 * operator's calendar, inside the caller's transaction. -1 with *cause and
 * *status (one of BILLING_E*).
 */
int	billing_generate(sqlite3 *, const struct period *,
	    struct billing_gen_result *, int *status, char **cause);

/*
 * Generation in two steps so the reading runs on the thread pool: plan
 * (loop thread), read (pool, its own read connection), then write the
 * statements (loop thread, one transaction).
 */
struct billing_usage;
struct billing_usage *billing_usage_plan(sqlite3 *, const struct period *,
	    int *status, char **cause);
int	billing_usage_read(struct billing_usage *, sqlite3 *reader,
	    char **cause);
int	billing_generate_usage(sqlite3 *, const struct period *,
	    const struct billing_usage *,
	    struct billing_gen_result *, int *status, char **cause);
void	billing_usage_free(struct billing_usage *);
/* Freeze the period's statements (caller's transaction). */
int	billing_close(sqlite3 *, const struct period *, int64_t *count,
	    char checksum[72], int *status, char **cause);
/*
 * Put a member's pending adjustments on its earliest open statement, if
 * it has one (caller's transaction). The number placed, or -1.
 */
int	billing_attach_pending(sqlite3 *, int64_t tenant, char **cause);
/* Recompute a statement's total and checksum from its lines. */
int	billing_seal(sqlite3 *, int64_t statement, char **cause);
/* Does the database have metering's usage_hourly table? */
int	billing_have_usage(sqlite3 *);

/* ---- billing_export.c ---- */

/*
 * The document of one statement, with its lines (NULL if none). The
 * checksum covers this document without status, revision,
 * generated_at, closed_at and checksum.
 */
json_t	*billing_statement_json(sqlite3 *, int64_t id);
/*
 * The checksum of a statement, "sha256:HEX" (the SHA-256 of its document
 * from billing_statement_json() without those keys, compact, keys
 * sorted), with the total of its lines (the document's total is taken
 * from them). -1 if there is no such statement.
 */
int	billing_statement_sum(sqlite3 *, int64_t id, struct cents *total,
	    char out[72]);

/* How an export is written. */
struct export_opts {
	char	 eo_sep;		/* ';' by default */
	char	 eo_point;		/* ',' by default (French LibreOffice) */
	int	 eo_summary;		/* one row per member */
	int64_t	 eo_tenant;		/* 0: every member */
	int64_t	 eo_after;		/* cursor: statements with a greater id */
	int	 eo_limit;		/* 0: all */
};

/* What an export holds, for reconciliation. */
struct export_info {
	int64_t	 ei_count;		/* statements in this export */
	int64_t	 ei_period_count;	/* in the period (after the tenant filter) */
	json_t	*ei_ids;		/* array of statement ids (owned) */
	char	 ei_checksum[72];	/* over the whole period */
	int64_t	 ei_next;		/* cursor of the next page, 0: none */
	struct cents ei_total;		/* of this export */
};

#define EXPORT_CSV	0
#define EXPORT_JSON	1
#define EXPORT_ODS	2	/* a summary sheet and a lines sheet */

/*
 * A period's export as text: CSV (the lines, or one row per member with
 * opts->eo_summary) or JSON (a document per statement, or the summary
 * rows), paged by statement id; or an OpenDocument spreadsheet with both
 * the summary and the lines. Caller frees *out and info->ei_ids.
 */
int	billing_export(sqlite3 *, const char *period, int format,
	    const struct export_opts *, char **out, size_t *len,
	    struct export_info *, char **cause);
/* The checksum of a set of statements: SHA-256 of "ID CHECKSUM\n" lines. */
int	billing_period_checksum(sqlite3 *, const char *period, int64_t tenant,
	    int64_t *count, char out[72]);

/* billing/billing.c: the module. */
extern const struct ctl_module billing_module;

#endif
