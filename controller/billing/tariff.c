/*
 * Tariffs: versions voted by the committee, each with its deliberation
 * (number, date) and effective dates, rates per metric, free allowances,
 * population bands, a monthly fee and a yearly contribution per
 * inhabitant. A version is immutable once added, except that an
 * open-ended one may be given its last day (never before a day a closed
 * statement billed with it). Members are bound to a tariff by name, or
 * get the default one.
 *
 * Money arrives as decimal strings ("0.0150") and is refused as a JSON
 * number: a number in a JSON document is a binary fraction to most tools.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "members/members.h"
#include "billing.h"

#define GIB_MIB		1024
#define HOUR		3600
#define DAY		86400

const struct billing_metric billing_metrics[] = {
	{ "vm.vcpu_hours", "vm", "vcpu_seconds", HOUR, "vCPU-hour",
	  "vCPU allocated" },
	{ "vm.memory_gib_hours", "vm", "memory_mib_seconds",
	  (int64_t)GIB_MIB * HOUR, "GiB-hour", "memory allocated" },
	{ "vm.disk_gib_hours", "vm", "disk_mib_seconds",
	  (int64_t)GIB_MIB * HOUR, "GiB-hour", "disk allocated" },
	{ "vm.cpu_seconds", "vm", "cpu_ns", 1000000000, "CPU-second",
	  "CPU used" },
	{ "vm.net_rx_gib", "vm", "net_rx_bytes", (int64_t)1 << 30, "GiB",
	  "network received" },
	{ "vm.net_tx_gib", "vm", "net_tx_bytes", (int64_t)1 << 30, "GiB",
	  "network sent" },
	{ "vm.disk_used_gib_hours", "vm", "disk_used_mib_seconds",
	  (int64_t)GIB_MIB * HOUR, "GiB-hour", "disk used" },
	{ "mailbox.mailbox_days", "mailbox", "mailbox_seconds", DAY,
	  "mailbox-day", "mailboxes" },
	{ "mailbox.storage_gib_hours", "mailbox", "mailbox_mib_seconds",
	  (int64_t)GIB_MIB * HOUR, "GiB-hour", "mailbox storage used" },
	{ "site.site_days", "site", "site_seconds", DAY, "site-day",
	  "websites" },
	{ "site.storage_gib_hours", "site", "site_mib_seconds",
	  (int64_t)GIB_MIB * HOUR, "GiB-hour", "website storage used" },
};
const size_t billing_nmetrics = nitems(billing_metrics);
_Static_assert(nitems(billing_metrics) == BILLING_NMETRICS,
    "BILLING_NMETRICS");

int
tariff_metric(const char *key)
{
	size_t	 i;

	for (i = 0; i < nitems(billing_metrics); i++)
		if (strcmp(billing_metrics[i].bm_key, key) == 0)
			return ((int)i);
	return (-1);
}

int
tariff_metric_usage(const char *kind, const char *metric)
{
	size_t	 i;

	for (i = 0; i < nitems(billing_metrics); i++)
		if (strcmp(billing_metrics[i].bm_usage, metric) == 0 &&
		    strcmp(billing_metrics[i].bm_kind, kind) == 0)
			return ((int)i);
	return (-1);
}

static int
tariff_name_ok(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len == 0 || len > TARIFF_NAME_MAX || !isalnum((unsigned char)s[0]))
		return (0);
	for (i = 0; i < len; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)
		    s[i]) || s[i] == '-' || s[i] == '_'))
			return (0);
	return (1);
}

static int
tariff_band_name_ok(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len == 0 || len > 32)
		return (0);
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return (0);
	return (1);
}

/* The band a population falls in: the first whose max it does not pass. */
size_t
tariff_band(const struct tariff *t, int64_t population)
{
	size_t	 i;

	for (i = 0; i + 1 < t->t_nbands; i++)
		if (population <= t->t_bands[i].tb_max)
			return (i);
	return (t->t_nbands - 1);
}

void
tariff_label(const struct tariff *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s v%lld", t->t_name, (long long)t->t_version);
}

/*
 * A value that may depend on the band: a decimal string for every band,
 * or {"BAND": "decimal", ...} naming each band once. Parsed into out[band]
 * (micro-units, maxdec decimals) and written in normalized form (an
 * object over every band) into *norm. -1 with *cause.
 */
static int
tariff_banded(const char *what, json_t *v, const struct tariff *t,
    int maxdec, int64_t *out, json_t **norm, char **cause)
{
	const char	*k;
	json_t		*x;
	char		*why = NULL, buf[48];
	size_t		 b;
	int64_t		 one;

	*norm = json_object();
	if (json_is_string(v)) {
		if (money_parse_micro(json_string_value(v), maxdec, 0, &one,
		    &why) == -1)
			goto bad;
		for (b = 0; b < t->t_nbands; b++)
			out[b] = one;
	} else if (json_is_object(v)) {
		json_object_foreach(v, k, x) {
			for (b = 0; b < t->t_nbands; b++)
				if (strcmp(t->t_bands[b].tb_name, k) == 0)
					break;
			if (b == t->t_nbands) {
				xasprintf(cause, "%s: no band named '%.32s'",
				    what, k);
				goto fail;
			}
			if (!json_is_string(x)) {
				xasprintf(cause, "%s: band %s: give the amount "
				    "as a string such as \"0.0150\"", what, k);
				goto fail;
			}
			if (money_parse_micro(json_string_value(x), maxdec, 0,
			    &out[b], &why) == -1)
				goto bad;
		}
		if (json_object_size(v) != t->t_nbands) {
			xasprintf(cause, "%s: give a value for each of the %zu "
			    "bands, or one string for all", what, t->t_nbands);
			goto fail;
		}
	} else {
		xasprintf(cause, "%s: give a decimal string such as \"0.0150\" "
		    "(a JSON number is refused: money is exact), or one per "
		    "band", what);
		goto fail;
	}
	for (b = 0; b < t->t_nbands; b++) {
		money_fmt_scaled(out[b], 6, 0, 6, '.', buf, sizeof(buf));
		json_object_set_new(*norm, t->t_bands[b].tb_name,
		    json_string(buf));
	}
	return (0);
bad:
	xasprintf(cause, "%s: %s", what, why);
	free(why);
fail:
	json_decref(*norm);
	*norm = NULL;
	return (-1);
}

static int
tariff_date(json_t *doc, const char *key, int required, int64_t *day,
    char **cause)
{
	json_t	*v = json_object_get(doc, key);

	if (v == NULL || json_is_null(v)) {
		if (required) {
			xasprintf(cause, "%s is required (YYYY-MM-DD)", key);
			return (-1);
		}
		return (1);
	}
	if (!json_is_string(v) || period_parse_day(json_string_value(v),
	    day) == -1) {
		xasprintf(cause, "%s must be a date YYYY-MM-DD", key);
		return (-1);
	}
	return (0);
}

static int
tariff_check_keys(json_t *o, const char *const *known, const char *what,
    char **cause)
{
	const char	*k, *const *kk;
	json_t		*v;

	json_object_foreach(o, k, v) {
		for (kk = known; *kk != NULL; kk++)
			if (strcmp(*kk, k) == 0)
				break;
		if (*kk == NULL) {
			xasprintf(cause, "%s: unknown field '%.64s'", what, k);
			return (-1);
		}
	}
	return (0);
}

/* The deliberation: {"number": ..., "date": "YYYY-MM-DD"}. */
static int
tariff_norm_deliberation(json_t *doc, json_t *out, struct tariff *t,
    char **cause)
{
	static const char *const dknown[] = { "number", "date", NULL };
	json_t		*d, *v;
	int64_t		 day;
	char		*why;

	d = json_object_get(doc, "deliberation");
	if (!json_is_object(d)) {
		xasprintf(cause, "deliberation {\"number\": ..., \"date\": "
		    "\"YYYY-MM-DD\"} is required");
		return (-1);
	}
	if (tariff_check_keys(d, dknown, "deliberation", cause) == -1)
		return (-1);
	v = json_object_get(d, "number");
	if (!json_is_string(v) || !tenants_text_ok(json_string_value(v), 64)) {
		xasprintf(cause, "deliberation.number must be 1 to 64 "
		    "characters");
		return (-1);
	}
	strlcpy(t->t_delib_no, json_string_value(v), sizeof(t->t_delib_no));
	if (tariff_date(d, "date", 1, &day, cause) == -1) {
		why = *cause;
		xasprintf(cause, "deliberation.%s", why);
		free(why);
		return (-1);
	}
	period_fmt_day(day, t->t_delib_date, sizeof(t->t_delib_date));
	json_object_set_new(out, "deliberation", json_pack("{s:s,s:s}",
	    "number", t->t_delib_no, "date", t->t_delib_date));
	return (0);
}

/* Name, default, deliberation, effective dates and currency. */
static int
tariff_norm_header(json_t *doc, json_t *out, struct tariff *t, char **cause)
{
	json_t	*v;
	int64_t	 day;
	int	 rv;

	v = json_object_get(doc, "name");
	if (!json_is_string(v) || !tariff_name_ok(json_string_value(v))) {
		xasprintf(cause, "name must be 1 to %d lower-case letters, "
		    "digits, '-' or '_'", TARIFF_NAME_MAX);
		return (-1);
	}
	strlcpy(t->t_name, json_string_value(v), sizeof(t->t_name));
	json_object_set_new(out, "name", json_string(t->t_name));
	if ((v = json_object_get(doc, "default")) != NULL && !json_is_boolean(v)) {
		xasprintf(cause, "default must be true or false");
		return (-1);
	}
	if (tariff_norm_deliberation(doc, out, t, cause) == -1)
		return (-1);
	if (tariff_date(doc, "effective_from", 1, &t->t_from, cause) == -1)
		return (-1);
	if ((rv = tariff_date(doc, "effective_to", 0, &day, cause)) == -1)
		return (-1);
	t->t_end = rv == 1 ? INT64_MAX : day + 1;
	if (t->t_end <= t->t_from) {
		xasprintf(cause, "effective_to is before effective_from");
		return (-1);
	}
	json_object_set(out, "effective_from",
	    json_object_get(doc, "effective_from"));
	json_object_set_new(out, "effective_to", rv == 1 ? json_null() :
	    json_deep_copy(json_object_get(doc, "effective_to")));
	if ((v = json_object_get(doc, "currency")) != NULL &&
	    (!json_is_string(v) || strcmp(json_string_value(v), "EUR") != 0)) {
		xasprintf(cause, "currency must be EUR");
		return (-1);
	}
	json_object_set_new(out, "currency", json_string("EUR"));
	return (0);
}

/* Band i of a list: its name (not used before) and its max population. */
static int
tariff_norm_band(json_t *b, size_t i, struct tariff *t, int64_t *prev,
    char **cause)
{
	static const char *const bknown[] = { "name", "max", NULL };
	json_t	*x;
	size_t	 m;

	if (!json_is_object(b)) {
		xasprintf(cause, "bands[%zu] must be an object", i);
		return (-1);
	}
	if (tariff_check_keys(b, bknown, "bands", cause) == -1)
		return (-1);
	x = json_object_get(b, "name");
	if (!json_is_string(x) || !tariff_band_name_ok(json_string_value(x))) {
		xasprintf(cause, "bands[%zu].name must be 1 to 32 letters, "
		    "digits, '-' or '_'", i);
		return (-1);
	}
	strlcpy(t->t_bands[i].tb_name, json_string_value(x),
	    sizeof(t->t_bands[i].tb_name));
	for (m = 0; m < i; m++)
		if (strcmp(t->t_bands[m].tb_name, t->t_bands[i].tb_name) == 0) {
			xasprintf(cause, "band '%s' is named twice",
			    t->t_bands[i].tb_name);
			return (-1);
		}
	x = json_object_get(b, "max");
	if (i + 1 == t->t_nbands) {
		if (x != NULL && !json_is_null(x)) {
			xasprintf(cause, "the last band (%s) has no max: it "
			    "takes every larger population",
			    t->t_bands[i].tb_name);
			return (-1);
		}
		t->t_bands[i].tb_max = -1;
		return (0);
	}
	if (!json_is_integer(x) || json_integer_value(x) <= *prev ||
	    json_integer_value(x) > 100000000) {
		xasprintf(cause, "bands[%zu].max must be a population above "
		    "the previous band's", i);
		return (-1);
	}
	*prev = t->t_bands[i].tb_max = json_integer_value(x);
	return (0);
}

/* Bands: [{"name": "S", "max": 999}, ..., {"name": "L"}]. */
static int
tariff_norm_bands(json_t *doc, json_t *out, struct tariff *t, char **cause)
{
	json_t	*bands, *v, *b;
	int64_t	 prev = -1;
	size_t	 i;

	bands = json_array();
	json_object_set_new(out, "bands", bands);
	v = json_object_get(doc, "bands");
	if (v == NULL || (json_is_array(v) && json_array_size(v) == 0)) {
		t->t_nbands = 1;
		strlcpy(t->t_bands[0].tb_name, "all", sizeof(t->t_bands[0].tb_name));
		t->t_bands[0].tb_max = -1;
	} else if (!json_is_array(v) || json_array_size(v) > TARIFF_BANDS_MAX) {
		xasprintf(cause, "bands must be a list of at most %d "
		    "{\"name\": ..., \"max\": POPULATION}, the last without max",
		    TARIFF_BANDS_MAX);
		return (-1);
	} else {
		t->t_nbands = json_array_size(v);
		json_array_foreach(v, i, b)
			if (tariff_norm_band(b, i, t, &prev, cause) == -1)
				return (-1);
	}
	for (i = 0; i < t->t_nbands; i++)
		json_array_append_new(bands, json_pack("{s:s,s:o}", "name",
		    t->t_bands[i].tb_name, "max", t->t_bands[i].tb_max < 0 ?
		    json_null() : json_integer(t->t_bands[i].tb_max)));
	return (0);
}

/* Rates per metric, then allowances for metrics that have a rate. */
static int
tariff_norm_rates(json_t *doc, json_t *out, struct tariff *t, char **cause)
{
	json_t		*rates, *allow, *v, *x, *norm;
	const char	*k;
	int64_t		 tmp[TARIFF_BANDS_MAX];
	size_t		 i;
	int		 m;
	char		 what[96];

	rates = json_object();
	json_object_set_new(out, "rates", rates);
	v = json_object_get(doc, "rates");
	if (v != NULL && !json_is_object(v)) {
		xasprintf(cause, "rates must be an object {\"METRIC\": "
		    "\"PRICE\"}");
		return (-1);
	}
	json_object_foreach(v, k, x) {
		if ((m = tariff_metric(k)) == -1) {
			xasprintf(cause, "rates: unknown metric '%.64s' (known: "
			    "vm.vcpu_hours, vm.memory_gib_hours, ...; see "
			    "docs/billing.md)", k);
			return (-1);
		}
		snprintf(what, sizeof(what), "rates.%s", k);
		if (tariff_banded(what, x, t, 6, tmp, &norm, cause) == -1)
			return (-1);
		for (i = 0; i < t->t_nbands; i++)
			t->t_rate[m][i].micro = tmp[i];
		t->t_has_rate[m] = 1;
		json_object_set_new(rates, k, norm);
	}
	allow = json_object();
	json_object_set_new(out, "allowances", allow);
	v = json_object_get(doc, "allowances");
	if (v != NULL && !json_is_object(v)) {
		xasprintf(cause, "allowances must be an object {\"METRIC\": "
		    "\"QUANTITY PER MONTH\"}");
		return (-1);
	}
	json_object_foreach(v, k, x) {
		if ((m = tariff_metric(k)) == -1 || !t->t_has_rate[m]) {
			xasprintf(cause, "allowances: '%.64s' is not a metric "
			    "this tariff has a rate for", k);
			return (-1);
		}
		snprintf(what, sizeof(what), "allowances.%s", k);
		if (tariff_banded(what, x, t, 6, t->t_allow[m], &norm,
		    cause) == -1)
			return (-1);
		json_object_set_new(allow, k, norm);
	}
	return (0);
}

/* An optional banded amount (monthly_fee, contribution_per_inhabitant). */
static int
tariff_norm_amount(json_t *doc, json_t *out, const char *key,
    struct tariff *t, struct money *amounts, int *has, char **cause)
{
	json_t	*v = json_object_get(doc, key), *norm;
	int64_t	 tmp[TARIFF_BANDS_MAX];
	size_t	 i;

	if (v == NULL || json_is_null(v)) {
		json_object_set_new(out, key, json_null());
		return (0);
	}
	if (tariff_banded(key, v, t, 6, tmp, &norm, cause) == -1)
		return (-1);
	for (i = 0; i < t->t_nbands; i++)
		amounts[i].micro = tmp[i];
	*has = 1;
	json_object_set_new(out, key, norm);
	return (0);
}

/* Check and normalize an operator's tariff document; see billing.h. */
json_t *
tariff_normalize(json_t *doc, struct tariff *t, char **cause)
{
	static const char *const known[] = { "name", "default", "deliberation",
	    "effective_from", "effective_to", "currency", "bands", "rates",
	    "allowances", "monthly_fee", "contribution_per_inhabitant",
	    NULL };
	json_t	*out;

	memset(t, 0, sizeof(*t));
	if (!json_is_object(doc)) {
		xasprintf(cause, "a tariff is a JSON object");
		return (NULL);
	}
	if (tariff_check_keys(doc, known, "tariff", cause) == -1)
		return (NULL);
	out = json_object();
	if (tariff_norm_header(doc, out, t, cause) == -1 ||
	    tariff_norm_bands(doc, out, t, cause) == -1 ||
	    tariff_norm_rates(doc, out, t, cause) == -1 ||
	    tariff_norm_amount(doc, out, "monthly_fee", t, t->t_fee,
	    &t->t_has_fee, cause) == -1 ||
	    tariff_norm_amount(doc, out, "contribution_per_inhabitant", t,
	    t->t_contrib, &t->t_has_contrib, cause) == -1) {
		json_decref(out);
		return (NULL);
	}
	return (out);
}

/* Parse a stored (normalized) version: the same checks, same result. */
int
tariff_from_doc(json_t *doc, struct tariff *t, char **cause)
{
	json_t	*n;

	if ((n = tariff_normalize(doc, t, cause)) == NULL)
		return (-1);
	json_decref(n);
	return (0);
}

void
tariff_set_free(struct tariff_set *s)
{
	if (s == NULL)
		return;
	free(s->ts_v);
	memset(s, 0, sizeof(*s));
}

/* Every version with its id, version number and current last day. */
int
tariff_load(sqlite3 *db, struct tariff_set *s, char **cause)
{
	sqlite3_stmt	*st;
	json_t		*doc;
	json_error_t	 jerr;
	struct tariff	*t;
	int64_t		 day;
	int		 rv = 0;

	memset(s, 0, sizeof(*s));
	st = store_prepare(db, "SELECT id, version, doc, effective_to FROM "
	    "tariffs ORDER BY name, effective_from");
	while (store_step(st) == SQLITE_ROW) {
		s->ts_v = xrealloc(s->ts_v, (s->ts_n + 1) * sizeof(*s->ts_v));
		t = &s->ts_v[s->ts_n];
		doc = json_loads((const char *)sqlite3_column_text(st, 2), 0,
		    &jerr);
		if (doc == NULL || tariff_from_doc(doc, t, cause) == -1) {
			if (doc == NULL)
				xasprintf(cause, "tariff %lld: stored document "
				    "unreadable", (long long)
				    sqlite3_column_int64(st, 0));
			json_decref(doc);
			rv = -1;
			break;
		}
		json_decref(doc);
		t->t_id = sqlite3_column_int64(st, 0);
		t->t_version = sqlite3_column_int64(st, 1);
		t->t_end = INT64_MAX;
		if (sqlite3_column_type(st, 3) != SQLITE_NULL &&
		    period_parse_day((const char *)sqlite3_column_text(st, 3),
		    &day) == 0)
			t->t_end = day + 1;
		s->ts_n++;
	}
	sqlite3_finalize(st);
	if (rv == -1) {
		tariff_set_free(s);
		return (-1);
	}
	st = store_prepare(db, "SELECT name FROM billing_default");
	if (store_step(st) == SQLITE_ROW)
		strlcpy(s->ts_default, (const char *)sqlite3_column_text(st, 0),
		    sizeof(s->ts_default));
	sqlite3_finalize(st);
	return (0);
}

const struct tariff *
tariff_by_id(const struct tariff_set *s, int64_t id)
{
	size_t	 i;

	for (i = 0; i < s->ts_n; i++)
		if (s->ts_v[i].t_id == id)
			return (&s->ts_v[i]);
	return (NULL);
}

/* ---- routes ---- */

static char *
tariff_default_name(void)
{
	sqlite3_stmt	*st;
	char		*name = NULL;

	st = store_prepare(ctl->db, "SELECT name FROM billing_default");
	if (store_step(st) == SQLITE_ROW)
		name = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return (name);
}

/* The API's view of one stored version. */
static json_t *
tariff_version_json(sqlite3_stmt *st, const char *dflt)
{
	json_t	*doc;
	char	 buf[32];

	/* id, name, version, doc, effective_to, created_at, members */
	doc = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
	if (doc == NULL)
		doc = json_object();
	json_object_set_new(doc, "id", json_integer(sqlite3_column_int64(st,
	    0)));
	json_object_set_new(doc, "version", json_integer(sqlite3_column_int64(
	    st, 2)));
	json_object_set_new(doc, "effective_to", sqlite3_column_type(st, 4) ==
	    SQLITE_NULL ? json_null() : json_string((const char *)
	    sqlite3_column_text(st, 4)));
	util_time_fmt(sqlite3_column_int64(st, 5), buf, sizeof(buf));
	json_object_set_new(doc, "created_at", json_string(buf));
	json_object_set_new(doc, "default", json_boolean(dflt != NULL &&
	    strcmp(dflt, (const char *)sqlite3_column_text(st, 1)) == 0));
	json_object_set_new(doc, "bound_members",
	    json_integer(sqlite3_column_int64(st, 6)));
	return (doc);
}

#define TARIFF_COLS "t.id, t.name, t.version, t.doc, t.effective_to, " \
	"t.created_at, (SELECT count(*) FROM tenant_tariffs b WHERE " \
	"b.tariff = t.name)"

/* GET /v1/tariffs?limit=&cursor= : every version. */
void
tariff_route_list(struct api_req *r)
{
	sqlite3_stmt	*st;
	int64_t		 after;
	char		*next = NULL, *dflt;
	int		 limit, n = 0;
	json_t		*items, *o;

	if (params_page_id(r, &limit, &after) == -1)
		return;
	dflt = tariff_default_name();
	items = json_array();
	st = store_prepare(ctl->db, "SELECT " TARIFF_COLS " FROM tariffs t "
	    "WHERE t.id > ? ORDER BY t.id LIMIT ?");
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int(st, 2, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			xasprintf(&next, "%lld", (long long)
			    sqlite3_column_int64(st, 0) - 1);
			break;
		}
		o = tariff_version_json(st, dflt);
		/* The list is a summary; show has the rates. */
		json_object_del(o, "rates");
		json_object_del(o, "allowances");
		json_object_del(o, "bands");
		json_object_del(o, "monthly_fee");
		json_object_del(o, "contribution_per_inhabitant");
		json_array_append_new(items, o);
	}
	sqlite3_finalize(st);
	free(dflt);
	params_reply_page(r, items, next);
}

/* GET /v1/tariffs/{name}?version=N : a tariff and its versions. */
void
tariff_route_show(struct api_req *r)
{
	const char	*name = api_param(r, "name");
	const char	*vs = api_query(r, "version");
	sqlite3_stmt	*st;
	char		*dflt, *end;
	long long	 version = 0;
	json_t		*versions, *o;

	if (vs != NULL && ((version = strtoll(vs, &end, 10)) < 1 ||
	    *end != '\0')) {
		api_reply_error(r, 400, "bad_parameter", "version must be a "
		    "number from 1");
		return;
	}
	dflt = tariff_default_name();
	versions = json_array();
	st = store_prepare(ctl->db, "SELECT " TARIFF_COLS " FROM tariffs t "
	    "WHERE t.name = ? AND (? = 0 OR t.version = ?) ORDER BY "
	    "t.effective_from");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, version);
	sqlite3_bind_int64(st, 3, version);
	while (store_step(st) == SQLITE_ROW)
		json_array_append_new(versions, tariff_version_json(st, dflt));
	sqlite3_finalize(st);
	if (json_array_size(versions) == 0) {
		json_decref(versions);
		free(dflt);
		api_reply_error(r, 404, "not_found", "no tariff '%s'%s", name,
		    version ? " with that version" : "");
		return;
	}
	o = json_pack("{s:s,s:b,s:o}", "name", name, "default", dflt != NULL &&
	    strcmp(dflt, name) == 0, "versions", versions);
	free(dflt);
	api_reply_json(r, 200, o);
}

static int
tariff_set_default(const char *name)
{
	sqlite3_stmt	*st;
	int		 rv;

	st = store_prepare(ctl->db, "INSERT INTO billing_default (one, name) "
	    "VALUES (1, ?) ON CONFLICT (one) DO UPDATE SET name = "
	    "excluded.name");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rv = store_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_finalize(st);
	return (rv);
}

/* POST /v1/tariffs : add a version (a JSON tariff document). */
void
tariff_route_add(struct api_req *r)
{
	struct tariff	 t;
	json_t		*body, *norm = NULL, *dv;
	sqlite3_stmt	*st;
	char		*cause = NULL, *text = NULL, from[11], obj[96];
	char		*dflt = NULL;
	int64_t		 id, version = 1, ofrom, oend, day;
	int		 clash = 0, make_default;

	if ((body = api_body_json(r)) == NULL)
		return;
	if ((norm = tariff_normalize(body, &t, &cause)) == NULL) {
		api_reply_error(r, 400, "bad_tariff", "%s", cause);
		goto out;
	}
	dv = json_object_get(body, "default");
	make_default = json_is_true(dv);
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	/* Versions of one tariff never overlap: each day has one price. */
	st = store_prepare(ctl->db, "SELECT version, effective_from, "
	    "effective_to FROM tariffs WHERE name = ? ORDER BY version");
	sqlite3_bind_text(st, 1, t.t_name, -1, SQLITE_STATIC);
	while (store_step(st) == SQLITE_ROW) {
		version = sqlite3_column_int64(st, 0) + 1;
		if (period_parse_day((const char *)sqlite3_column_text(st, 1),
		    &ofrom) == -1)
			continue;
		oend = INT64_MAX;
		if (sqlite3_column_type(st, 2) != SQLITE_NULL &&
		    period_parse_day((const char *)sqlite3_column_text(st, 2),
		    &day) == 0)
			oend = day + 1;
		if (!clash && t.t_from < oend && ofrom < t.t_end) {
			clash = 1;
			xasprintf(&cause, "tariff %s version %lld is in effect "
			    "from %s to %s, which overlaps this one; give this "
			    "one other dates, or end that one first (opsnctl "
			    "tariff end)", t.t_name, (long long)
			    sqlite3_column_int64(st, 0),
			    sqlite3_column_text(st, 1),
			    sqlite3_column_type(st, 2) == SQLITE_NULL ?
			    "(open)" : (const char *)sqlite3_column_text(st, 2));
		}
	}
	sqlite3_finalize(st);
	if (clash) {
		store_rollback(ctl->db);
		api_reply_error(r, 409, "overlap", "%s", cause);
		goto out;
	}
	text = json_dumps(norm, JSON_COMPACT | JSON_SORT_KEYS);
	period_fmt_day(t.t_from, from, sizeof(from));
	st = store_prepare(ctl->db, "INSERT INTO tariffs (name, version, "
	    "deliberation_number, deliberation_date, effective_from, "
	    "effective_to, doc, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
	    "RETURNING id");
	sqlite3_bind_text(st, 1, t.t_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, version);
	sqlite3_bind_text(st, 3, t.t_delib_no, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, t.t_delib_date, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, from, -1, SQLITE_STATIC);
	if (json_is_string(json_object_get(norm, "effective_to")))
		sqlite3_bind_text(st, 6, json_string_value(json_object_get(norm,
		    "effective_to")), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, text, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, util_now());
	if (store_step(st) != SQLITE_ROW) {
		log_warnx("billing: %s", sqlite3_errmsg(ctl->db));
		sqlite3_finalize(st);
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the tariff failed");
		goto out;
	}
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	/* The first tariff is the default until another is made so. */
	dflt = tariff_default_name();
	if (make_default || dflt == NULL) {
		make_default = 1;
		if (tariff_set_default(t.t_name) == -1)
			goto fail;
	}
	snprintf(obj, sizeof(obj), "tariff/%s/%lld", t.t_name,
	    (long long)version);
	if (audit_record(r, "tariff.add", obj, json_pack("{s:O,s:b}", "tariff",
	    norm, "default", make_default)) == -1 ||
	    store_commit(ctl->db) == -1)
		goto fail;
	log_info("billing: %s added tariff %s version %lld (deliberation %s "
	    "of %s)", api_principal(r)->ap_name, t.t_name, (long long)version,
	    t.t_delib_no, t.t_delib_date);
	st = store_prepare(ctl->db, "SELECT " TARIFF_COLS " FROM tariffs t "
	    "WHERE t.id = ?");
	sqlite3_bind_int64(st, 1, id);
	free(dflt);
	dflt = tariff_default_name();
	if (store_step(st) == SQLITE_ROW)
		api_reply_json(r, 201, tariff_version_json(st, dflt));
	sqlite3_finalize(st);
	goto out;
fail:
	store_rollback(ctl->db);
	api_reply_error(r, 500, "internal", "storing the tariff failed");
out:
	free(dflt);
	free(text);
	free(cause);
	json_decref(norm);
	json_decref(body);
}

static int
tariff_exists(const char *name)
{
	sqlite3_stmt	*st;
	int		 found;

	st = store_prepare(ctl->db, "SELECT 1 FROM tariffs WHERE name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	found = store_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return (found);
}

/* POST /v1/tariffs/{name}/default : unbound members get this tariff. */
void
tariff_route_default(struct api_req *r)
{
	const char	*name = api_param(r, "name");
	char		 obj[96];

	if (!tariff_exists(name)) {
		api_reply_error(r, 404, "not_found", "no tariff '%s'", name);
		return;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		return;
	}
	snprintf(obj, sizeof(obj), "tariff/%s", name);
	if (tariff_set_default(name) == -1 || audit_record(r, "tariff.default",
	    obj, NULL) == -1 || store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the change failed");
		return;
	}
	api_reply_json(r, 200, json_pack("{s:s,s:b}", "name", name, "default",
	    1));
}

/*
 * POST /v1/tariffs/{name}/end {"version": N, "effective_to": DATE}: give
 * an open-ended version its last day, so that the next deliberation can
 * take over. Never before a day a closed statement billed with it.
 */
void
tariff_route_end(struct api_req *r)
{
	static const char *const known[] = { "version", "effective_to", NULL };
	const char	*name = api_param(r, "name");
	json_t		*body, *v;
	sqlite3_stmt	*st;
	int64_t		 version, id = 0, from = 0, day, closed_end = 0;
	char		 obj[96], last[11];
	int		 open = 0;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1 ||
	    params_int_field(r, body, "version", 1, INT32_MAX, &version) == -1)
		goto out;
	v = json_object_get(body, "effective_to");
	if (!json_is_string(v) || period_parse_day(json_string_value(v),
	    &day) == -1) {
		api_reply_error(r, 400, "bad_field", "effective_to must be a "
		    "date YYYY-MM-DD (the version's last day)");
		goto out;
	}
	st = store_prepare(ctl->db, "SELECT id, effective_from, effective_to "
	    "IS NULL FROM tariffs WHERE name = ? AND version = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, version);
	if (store_step(st) == SQLITE_ROW) {
		id = sqlite3_column_int64(st, 0);
		period_parse_day((const char *)sqlite3_column_text(st, 1),
		    &from);
		open = sqlite3_column_int(st, 2);
	}
	sqlite3_finalize(st);
	if (id == 0) {
		api_reply_error(r, 404, "not_found", "no tariff '%s' version "
		    "%lld", name, (long long)version);
		goto out;
	}
	if (!open) {
		api_reply_error(r, 409, "not_open", "tariff %s version %lld "
		    "already has its last day; a version never changes",
		    name, (long long)version);
		goto out;
	}
	if (day < from) {
		api_reply_error(r, 400, "bad_field", "effective_to is before "
		    "the version's effective_from");
		goto out;
	}
	st = store_prepare(ctl->db, "SELECT coalesce(max(g.day_end), 0) FROM "
	    "statement_segments g JOIN statements s ON s.id = g.statement_id "
	    "WHERE g.tariff_id = ? AND s.status = 'closed'");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW)
		closed_end = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (day + 1 < closed_end) {
		period_fmt_day(closed_end - 1, last, sizeof(last));
		api_reply_error(r, 409, "closed", "closed statements billed "
		    "with this version up to %s: it cannot end before", last);
		goto out;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_prepare(ctl->db, "UPDATE tariffs SET effective_to = ? "
	    "WHERE id = ? AND effective_to IS NULL");
	sqlite3_bind_text(st, 1, json_string_value(v), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, id);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "tariff/%s/%lld", name, (long long)version);
	if (audit_record(r, "tariff.end", obj, json_pack("{s:O}",
	    "effective_to", v)) == -1 || store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the change failed");
		goto out;
	}
	api_reply_json(r, 200, json_pack("{s:s,s:I,s:O}", "name", name,
	    "version", (json_int_t)version, "effective_to", v));
out:
	json_decref(body);
}

static json_t *
tariff_binding_json(int64_t tenant)
{
	sqlite3_stmt	*st;
	char		*dflt = tariff_default_name();
	json_t		*o;

	o = json_pack("{s:I,s:n,s:o}", "tenant", (json_int_t)tenant, "tariff",
	    "default", dflt ? json_string(dflt) : json_null());
	st = store_prepare(ctl->db, "SELECT tariff FROM tenant_tariffs WHERE "
	    "tenant_id = ?");
	sqlite3_bind_int64(st, 1, tenant);
	if (store_step(st) == SQLITE_ROW)
		json_object_set_new(o, "tariff", json_string((const char *)
		    sqlite3_column_text(st, 0)));
	sqlite3_finalize(st);
	json_object_set(o, "effective", json_is_null(json_object_get(o,
	    "tariff")) ? json_object_get(o, "default") : json_object_get(o,
	    "tariff"));
	free(dflt);
	return (o);
}

/* GET /v1/tenants/{tenant}/tariff */
void
tariff_route_binding(struct api_req *r)
{
	int64_t	 id;

	if ((id = tenants_from_path(r, api_param(r, "tenant"))) == -1)
		return;
	api_reply_json(r, 200, tariff_binding_json(id));
}

/* POST /v1/tenants/{tenant}/tariff {"tariff": NAME | null} */
void
tariff_route_bind(struct api_req *r)
{
	static const char *const known[] = { "tariff", NULL };
	json_t		*body, *v;
	sqlite3_stmt	*st;
	int64_t		 id;
	char		 obj[64];

	if ((id = tenants_from_path(r, api_param(r, "tenant"))) == -1)
		return;
	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	v = json_object_get(body, "tariff");
	if (v == NULL || (!json_is_null(v) && !json_is_string(v))) {
		api_reply_error(r, 400, "bad_field", "tariff must be a tariff "
		    "name, or null for the default tariff");
		goto out;
	}
	if (json_is_string(v) && !tariff_exists(json_string_value(v))) {
		api_reply_error(r, 400, "bad_field", "no tariff '%.64s'",
		    json_string_value(v));
		goto out;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	if (json_is_null(v)) {
		st = store_prepare(ctl->db, "DELETE FROM tenant_tariffs WHERE "
		    "tenant_id = ?");
		sqlite3_bind_int64(st, 1, id);
	} else {
		st = store_prepare(ctl->db, "INSERT INTO tenant_tariffs "
		    "(tenant_id, tariff, bound_at) VALUES (?, ?, ?) ON CONFLICT "
		    "(tenant_id) DO UPDATE SET tariff = excluded.tariff, "
		    "bound_at = excluded.bound_at");
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, json_string_value(v), -1,
		    SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, util_now());
	}
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "tenant/%lld", (long long)id);
	if (audit_record(r, "tenant.tariff", obj, json_pack("{s:O}", "tariff",
	    v)) == -1 || store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the change failed");
		goto out;
	}
	api_reply_json(r, 200, tariff_binding_json(id));
out:
	json_decref(body);
}
