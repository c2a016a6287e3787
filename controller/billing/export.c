/*
 * What finance gets: the document of a statement, its checksum, and the
 * exports of a period (CSV of every line, CSV summary with one row per
 * member, JSON documents). Every export names its statements and carries
 * the period's checksum: SHA-256 over "ID CHECKSUM\n" for each statement
 * in id order, where a statement's checksum is the SHA-256 of its JSON
 * document (compact, keys sorted, without status, revision, generated_at,
 * closed_at and checksum). A draft's checksum thus equals the one it keeps
 * once closed, and a closed statement's never changes.
 *
 * CSV is what French LibreOffice opens as is: UTF-8 with a BOM, ';'
 * between fields, decimal comma, CRLF; both separators can be chosen.
 * Text cells that a spreadsheet would take for a formula (=, +, -, @) get
 * a leading apostrophe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "http/http.h"
#include "billing.h"

static json_t *
export_text(sqlite3_stmt *st, int col)
{
	return (sqlite3_column_type(st, col) == SQLITE_NULL ? json_null() :
	    json_string((const char *)sqlite3_column_text(st, col)));
}

static json_t *
export_int(sqlite3_stmt *st, int col)
{
	return (sqlite3_column_type(st, col) == SQLITE_NULL ? json_null() :
	    json_integer(sqlite3_column_int64(st, col)));
}

static json_t *
export_day(sqlite3_stmt *st, int col, int64_t delta)
{
	char	 buf[16];

	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return (json_null());
	period_fmt_day(sqlite3_column_int64(st, col) + delta, buf, sizeof(buf));
	return (json_string(buf));
}

static json_t *
export_time(sqlite3_stmt *st, int col)
{
	char	 buf[32];

	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return (json_null());
	util_time_fmt(sqlite3_column_int64(st, col), buf, sizeof(buf));
	return (json_string(buf));
}

#define EXP_LINE_COLS "l.seq, l.type, l.class, l.metric, l.label, l.unit, " \
	"l.used_base, l.allowance_base, l.quantity_base, l.divisor, " \
	"l.unit_price_micro, l.amount_cents, l.basis_cents, l.tariff_id, " \
	"t.name, t.version, t.deliberation_number, t.deliberation_date, " \
	"l.band, l.day_from, l.day_end, l.corrects_period, " \
	"l.corrects_statement, l.adjustment_id, l.reason"

static json_t *
export_line_json(sqlite3_stmt *st)
{
	json_t		*o = json_object();
	struct money	 price;
	struct cents	 amount;
	char		 buf[64];

	json_object_set_new(o, "seq", export_int(st, 0));
	json_object_set_new(o, "type", export_text(st, 1));
	json_object_set_new(o, "class", export_text(st, 2));
	json_object_set_new(o, "metric", export_text(st, 3));
	json_object_set_new(o, "label", export_text(st, 4));
	json_object_set_new(o, "unit", export_text(st, 5));
	json_object_set_new(o, "used_base", export_int(st, 6));
	json_object_set_new(o, "allowance_base", export_int(st, 7));
	money_fmt_quantity(sqlite3_column_int64(st, 8),
	    sqlite3_column_int64(st, 9), '.', buf, sizeof(buf));
	json_object_set_new(o, "quantity", json_string(buf));
	json_object_set_new(o, "quantity_base", export_int(st, 8));
	json_object_set_new(o, "divisor", export_int(st, 9));
	price.micro = sqlite3_column_int64(st, 10);
	money_fmt_price(price, '.', buf, sizeof(buf));
	json_object_set_new(o, "unit_price", json_string(buf));
	json_object_set_new(o, "unit_price_micro", export_int(st, 10));
	amount.c = sqlite3_column_int64(st, 11);
	money_fmt_cents(amount, '.', buf, sizeof(buf));
	json_object_set_new(o, "amount", json_string(buf));
	json_object_set_new(o, "amount_cents", export_int(st, 11));
	if (sqlite3_column_type(st, 12) != SQLITE_NULL)
		json_object_set_new(o, "basis_cents", export_int(st, 12));
	if (sqlite3_column_type(st, 13) != SQLITE_NULL) {
		json_object_set_new(o, "tariff", json_pack("{s:o,s:o,s:o}",
		    "id", export_int(st, 13), "name", export_text(st, 14),
		    "version", export_int(st, 15)));
		json_object_set_new(o, "deliberation", json_pack("{s:o,s:o}",
		    "number", export_text(st, 16), "date",
		    export_text(st, 17)));
	} else {
		json_object_set_new(o, "tariff", json_null());
		json_object_set_new(o, "deliberation", json_null());
	}
	json_object_set_new(o, "band", export_text(st, 18));
	json_object_set_new(o, "from", export_day(st, 19, 0));
	json_object_set_new(o, "to", export_day(st, 20, -1));
	json_object_set_new(o, "corrects_period", export_text(st, 21));
	json_object_set_new(o, "corrects_statement", export_int(st, 22));
	json_object_set_new(o, "adjustment", export_int(st, 23));
	json_object_set_new(o, "reason", export_text(st, 24));
	return (o);
}

/* The document of a statement; see billing.h. */
json_t *
billing_statement_json(sqlite3 *db, int64_t id)
{
	sqlite3_stmt	*st;
	json_t		*o = NULL, *lines;
	struct cents	 total;
	char		 buf[64];

	st = store_stmt(db, "SELECT id, period, first_day, end_day, tz, "
	    "status, revision, generated_at, closed_at, tenant_id, "
	    "member_kind, member_name, insee, siren, population, total_cents, "
	    "checksum FROM statements WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW) {
		o = json_object();
		json_object_set_new(o, "id", export_int(st, 0));
		json_object_set_new(o, "period", export_text(st, 1));
		json_object_set_new(o, "from", export_day(st, 2, 0));
		json_object_set_new(o, "to", export_day(st, 3, -1));
		json_object_set_new(o, "tz", export_text(st, 4));
		json_object_set_new(o, "status", export_text(st, 5));
		json_object_set_new(o, "revision", export_int(st, 6));
		json_object_set_new(o, "generated_at", export_time(st, 7));
		json_object_set_new(o, "closed_at", export_time(st, 8));
		json_object_set_new(o, "currency", json_string("EUR"));
		json_object_set_new(o, "member", json_pack("{s:o,s:o,s:o,s:o,"
		    "s:o,s:o}", "id", export_int(st, 9), "kind",
		    export_text(st, 10), "name", export_text(st, 11), "insee",
		    export_text(st, 12),
		    "siren", export_text(st, 13), "population",
		    export_int(st, 14)));
		total.c = sqlite3_column_int64(st, 15);
		money_fmt_cents(total, '.', buf, sizeof(buf));
		json_object_set_new(o, "total", json_string(buf));
		json_object_set_new(o, "total_cents", export_int(st, 15));
		json_object_set_new(o, "checksum", export_text(st, 16));
	}
	store_done(st);
	if (o == NULL)
		return (NULL);
	lines = json_array();
	st = store_stmt(db, "SELECT " EXP_LINE_COLS " FROM statement_lines "
	    "l LEFT JOIN tariffs t ON t.id = l.tariff_id WHERE "
	    "l.statement_id = ? ORDER BY l.seq");
	sqlite3_bind_int64(st, 1, id);
	while (store_step(st) == SQLITE_ROW)
		json_array_append_new(lines, export_line_json(st));
	store_done(st);
	json_object_set_new(o, "lines", lines);
	return (o);
}

static void
export_sha256(const void *data, size_t len, char out[72])
{
	unsigned char	 h[32];
	unsigned int	 hl = sizeof(h);

	EVP_Digest(data, len, h, &hl, util_sha256(), NULL);
	memcpy(out, "sha256:", 7);
	util_hex(h, sizeof(h), out + 7);
}

/* A day column as the document writes it, or null. */
static void
export_w_day(struct jsonw *w, sqlite3_stmt *st, int col, int64_t delta)
{
	char	 buf[16];

	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		jsonw_null(w);
		return;
	}
	period_fmt_day(sqlite3_column_int64(st, col) + delta, buf, sizeof(buf));
	jsonw_str(w, buf);
}

/* One line of the canonical content: export_line_json's, keys sorted. */
static int64_t
export_line_canon(struct jsonw *w, sqlite3_stmt *st)
{
	struct money	 price;
	struct cents	 amount;
	char		 buf[64];

	jsonw_obj(w);
	jsonw_key(w, "adjustment");
	jsonw_col_int(w, st, 23);
	jsonw_key(w, "allowance_base");
	jsonw_col_int(w, st, 7);
	amount.c = sqlite3_column_int64(st, 11);
	money_fmt_cents(amount, '.', buf, sizeof(buf));
	jsonw_key(w, "amount");
	jsonw_str(w, buf);
	jsonw_key(w, "amount_cents");
	jsonw_col_int(w, st, 11);
	jsonw_key(w, "band");
	jsonw_col_text(w, st, 18);
	if (sqlite3_column_type(st, 12) != SQLITE_NULL) {
		jsonw_key(w, "basis_cents");
		jsonw_col_int(w, st, 12);
	}
	jsonw_key(w, "class");
	jsonw_col_text(w, st, 2);
	jsonw_key(w, "corrects_period");
	jsonw_col_text(w, st, 21);
	jsonw_key(w, "corrects_statement");
	jsonw_col_int(w, st, 22);
	jsonw_key(w, "deliberation");
	if (sqlite3_column_type(st, 13) != SQLITE_NULL) {
		jsonw_obj(w);
		jsonw_key(w, "date");
		jsonw_col_text(w, st, 17);
		jsonw_key(w, "number");
		jsonw_col_text(w, st, 16);
		jsonw_obj_end(w);
	} else
		jsonw_null(w);
	jsonw_key(w, "divisor");
	jsonw_col_int(w, st, 9);
	jsonw_key(w, "from");
	export_w_day(w, st, 19, 0);
	jsonw_key(w, "label");
	jsonw_col_text(w, st, 4);
	jsonw_key(w, "metric");
	jsonw_col_text(w, st, 3);
	money_fmt_quantity(sqlite3_column_int64(st, 8),
	    sqlite3_column_int64(st, 9), '.', buf, sizeof(buf));
	jsonw_key(w, "quantity");
	jsonw_str(w, buf);
	jsonw_key(w, "quantity_base");
	jsonw_col_int(w, st, 8);
	jsonw_key(w, "reason");
	jsonw_col_text(w, st, 24);
	jsonw_key(w, "seq");
	jsonw_col_int(w, st, 0);
	jsonw_key(w, "tariff");
	if (sqlite3_column_type(st, 13) != SQLITE_NULL) {
		jsonw_obj(w);
		jsonw_key(w, "id");
		jsonw_col_int(w, st, 13);
		jsonw_key(w, "name");
		jsonw_col_text(w, st, 14);
		jsonw_key(w, "version");
		jsonw_col_int(w, st, 15);
		jsonw_obj_end(w);
	} else
		jsonw_null(w);
	jsonw_key(w, "to");
	export_w_day(w, st, 20, -1);
	jsonw_key(w, "type");
	jsonw_col_text(w, st, 1);
	jsonw_key(w, "unit");
	jsonw_col_text(w, st, 5);
	price.micro = sqlite3_column_int64(st, 10);
	money_fmt_price(price, '.', buf, sizeof(buf));
	jsonw_key(w, "unit_price");
	jsonw_str(w, buf);
	jsonw_key(w, "unit_price_micro");
	jsonw_col_int(w, st, 10);
	jsonw_key(w, "used_base");
	jsonw_col_int(w, st, 6);
	jsonw_obj_end(w);
	return (amount.c);
}

/*
 * Checksum and total of a statement; see billing.h. The canonical content
 * is written straight from the rows, keys in order (the statement
 * generation seals 35,000 of these: a jansson tree and a sorted dump of
 * each took a third of its time); the unit tests check it against
 * json_dumps(JSON_COMPACT | JSON_SORT_KEYS) of billing_statement_json().
 */
int
billing_statement_sum(sqlite3 *db, int64_t id, struct cents *total,
    char out[72])
{
	sqlite3_stmt	*sh, *sl;
	struct jsonw	 w;
	char		 buf[64];
	int		 rv = -1;

	memset(&w, 0, sizeof(w));
	total->c = 0;
	sh = store_stmt(db, "SELECT id, period, first_day, end_day, tz, "
	    "tenant_id, member_kind, member_name, insee, siren, population "
	    "FROM statements WHERE id = ?");
	sqlite3_bind_int64(sh, 1, id);
	if (store_step(sh) != SQLITE_ROW)
		goto out;
	jsonw_obj(&w);
	jsonw_key(&w, "currency");
	jsonw_str(&w, "EUR");
	jsonw_key(&w, "from");
	export_w_day(&w, sh, 2, 0);
	jsonw_key(&w, "id");
	jsonw_col_int(&w, sh, 0);
	jsonw_key(&w, "lines");
	jsonw_arr(&w);
	sl = store_stmt(db, "SELECT " EXP_LINE_COLS " FROM statement_lines "
	    "l LEFT JOIN tariffs t ON t.id = l.tariff_id WHERE "
	    "l.statement_id = ? ORDER BY l.seq");
	sqlite3_bind_int64(sl, 1, id);
	while (store_step(sl) == SQLITE_ROW)
		total->c += export_line_canon(&w, sl);
	store_done(sl);
	jsonw_arr_end(&w);
	jsonw_key(&w, "member");
	jsonw_obj(&w);
	jsonw_key(&w, "id");
	jsonw_col_int(&w, sh, 5);
	jsonw_key(&w, "insee");
	jsonw_col_text(&w, sh, 8);
	jsonw_key(&w, "kind");
	jsonw_col_text(&w, sh, 6);
	jsonw_key(&w, "name");
	jsonw_col_text(&w, sh, 7);
	jsonw_key(&w, "population");
	jsonw_col_int(&w, sh, 10);
	jsonw_key(&w, "siren");
	jsonw_col_text(&w, sh, 9);
	jsonw_obj_end(&w);
	jsonw_key(&w, "period");
	jsonw_col_text(&w, sh, 1);
	jsonw_key(&w, "to");
	export_w_day(&w, sh, 3, -1);
	money_fmt_cents(*total, '.', buf, sizeof(buf));
	jsonw_key(&w, "total");
	jsonw_str(&w, buf);
	jsonw_key(&w, "total_cents");
	jsonw_int(&w, total->c);
	jsonw_key(&w, "tz");
	jsonw_col_text(&w, sh, 4);
	jsonw_obj_end(&w);
	export_sha256(w.jw_b, w.jw_len, out);
	rv = 0;
out:
	store_done(sh);
	jsonw_free(&w);
	return (rv);
}

/* The period's checksum over its statements (of one member, or all). */
int
billing_period_checksum(sqlite3 *db, const char *period, int64_t tenant,
    int64_t *count, char out[72])
{
	sqlite3_stmt	*st;
	EVP_MD_CTX	*md = EVP_MD_CTX_new();
	unsigned char	 h[32];
	unsigned int	 hl = sizeof(h);
	char		 line[128];
	int		 rc;

	*count = 0;
	EVP_DigestInit_ex(md, util_sha256(), NULL);
	st = store_prepare(db, "SELECT id, checksum FROM statements WHERE "
	    "period = ?1 AND (?2 = 0 OR tenant_id = ?2) ORDER BY id");
	sqlite3_bind_text(st, 1, period, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, tenant);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		snprintf(line, sizeof(line), "%lld %s\n", (long long)
		    sqlite3_column_int64(st, 0), sqlite3_column_text(st, 1));
		EVP_DigestUpdate(md, line, strlen(line));
		(*count)++;
	}
	sqlite3_finalize(st);
	EVP_DigestFinal_ex(md, h, &hl);
	EVP_MD_CTX_free(md);
	memcpy(out, "sha256:", 7);
	util_hex(h, sizeof(h), out + 7);
	return (rc == SQLITE_DONE ? 0 : -1);
}

/* One CSV cell; text cells are defused against formulas. */
static void
export_cell(struct obuf *x, const struct export_opts *o, const char *s,
    int text, int last)
{
	const char	*p;
	int		 quote;

	if (s == NULL)
		s = "";
	quote = strchr(s, o->eo_sep) != NULL || strpbrk(s, "\"\r\n") != NULL;
	if (text && *s != '\0' && strchr("=+-@\t\r", *s) != NULL)
		quote = 1;
	if (quote) {
		obuf_add(x, "\"", 1);
		if (text && *s != '\0' && strchr("=+-@\t\r", *s) != NULL)
			obuf_add(x, "'", 1);
		for (p = s; *p != '\0'; p++) {
			if (*p == '"')
				obuf_add(x, "\"", 1);
			obuf_add(x, p, 1);
		}
		obuf_add(x, "\"", 1);
	} else
		obuf_str(x, s);
	if (last)
		obuf_add(x, "\r\n", 2);
	else
		obuf_add(x, &o->eo_sep, 1);
}

static const char *
export_col(sqlite3_stmt *st, int col)
{
	return (sqlite3_column_type(st, col) == SQLITE_NULL ? "" :
	    (const char *)sqlite3_column_text(st, col));
}

/* The row's first cells, one per character of kinds ('t': as text). */
static void
export_cells(struct obuf *x, const struct export_opts *o, sqlite3_stmt *st,
    const char *kinds)
{
	int	 i;

	for (i = 0; kinds[i] != '\0'; i++)
		export_cell(x, o, export_col(st, i), kinds[i] == 't', 0);
}

/*
 * A statement's line for the exports: EXP_LINES_SQL's columns, of the
 * statements (after, upto] of a period.
 */
#define EXP_LINES_SQL "SELECT s.id, s.period, s.status, s.insee, " \
	"s.siren, s.member_name, l.type, l.class, l.metric, l.label, " \
	"l.quantity_base, l.divisor, l.unit, l.unit_price_micro, " \
	"l.amount_cents, t.name, t.version, t.deliberation_number, " \
	"t.deliberation_date, l.band, l.day_from, l.day_end, " \
	"l.corrects_period, l.reason FROM statements s JOIN " \
	"statement_lines l ON l.statement_id = s.id LEFT JOIN tariffs t " \
	"ON t.id = l.tariff_id WHERE s.period = ?1 AND (?2 = 0 OR " \
	"s.tenant_id = ?2) AND s.id > ?3 AND s.id <= ?4 ORDER BY s.id, " \
	"l.seq"

/* sql over the statements (after, upto] of the period (?1 to ?4). */
static sqlite3_stmt *
export_page(sqlite3 *db, const char *sql, const char *period,
    const struct export_opts *o, int64_t after, int64_t upto)
{
	sqlite3_stmt	*st = store_prepare(db, sql);

	sqlite3_bind_text(st, 1, period, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, o->eo_tenant);
	sqlite3_bind_int64(st, 3, after);
	sqlite3_bind_int64(st, 4, upto);
	return (st);
}

/* "standard v2" of an EXP_LINES_SQL row, or "". */
static void
export_tariff_text(sqlite3_stmt *st, char *buf, size_t len)
{
	buf[0] = '\0';
	if (sqlite3_column_type(st, 15) != SQLITE_NULL)
		snprintf(buf, len, "%s v%lld", export_col(st, 15),
		    (long long)sqlite3_column_int64(st, 16));
}

/* "2026-031 (2026-09-24)" of an EXP_LINES_SQL row, or "". */
static void
export_delib_text(sqlite3_stmt *st, char *buf, size_t len)
{
	buf[0] = '\0';
	if (sqlite3_column_type(st, 17) != SQLITE_NULL)
		snprintf(buf, len, "%s (%s)", export_col(st, 17),
		    export_col(st, 18));
}

static void
export_header(struct obuf *x, const struct export_opts *o,
    const char *const *cols)
{
	for (; *cols != NULL; cols++)
		export_cell(x, o, *cols, 0, cols[1] == NULL);
}

/* The CSV rows of statements (after, upto] of the period. */
static int
export_csv_lines(sqlite3 *db, const char *period, const struct export_opts *o,
    int64_t after, int64_t upto, struct obuf *x)
{
	static const char *const cols[] = { "statement", "period", "status",
	    "insee", "siren", "member", "type", "class", "metric", "label",
	    "quantity", "unit", "unit_price", "amount", "tariff",
	    "deliberation", "band", "from", "to", "corrects_period", "reason",
	    NULL };
	sqlite3_stmt	*st;
	struct money	 price;
	struct cents	 amount;
	char		 buf[160];
	int		 rc;

	export_header(x, o, cols);
	st = export_page(db, EXP_LINES_SQL, period, o, after, upto);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		export_cells(x, o, st, "...ttt...t");
		money_fmt_quantity(sqlite3_column_int64(st, 10),
		    sqlite3_column_int64(st, 11), o->eo_point, buf,
		    sizeof(buf));
		export_cell(x, o, buf, 0, 0);
		export_cell(x, o, export_col(st, 12), 0, 0);
		price.micro = sqlite3_column_int64(st, 13);
		money_fmt_price(price, o->eo_point, buf, sizeof(buf));
		export_cell(x, o, buf, 0, 0);
		amount.c = sqlite3_column_int64(st, 14);
		money_fmt_cents(amount, o->eo_point, buf, sizeof(buf));
		export_cell(x, o, buf, 0, 0);
		export_tariff_text(st, buf, sizeof(buf));
		export_cell(x, o, buf, 1, 0);
		export_delib_text(st, buf, sizeof(buf));
		export_cell(x, o, buf, 1, 0);
		export_cell(x, o, export_col(st, 19), 1, 0);
		buf[0] = '\0';
		if (sqlite3_column_type(st, 20) != SQLITE_NULL)
			period_fmt_day(sqlite3_column_int64(st, 20), buf,
			    sizeof(buf));
		export_cell(x, o, buf, 0, 0);
		buf[0] = '\0';
		if (sqlite3_column_type(st, 21) != SQLITE_NULL)
			period_fmt_day(sqlite3_column_int64(st, 21) - 1, buf,
			    sizeof(buf));
		export_cell(x, o, buf, 0, 0);
		export_cell(x, o, export_col(st, 22), 0, 0);
		export_cell(x, o, export_col(st, 23), 1, 1);
	}
	sqlite3_finalize(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

#define EXP_SUMMARY_SQL "SELECT s.id, s.period, s.status, s.insee, " \
	"s.siren, s.member_name, s.population, (SELECT count(*) FROM " \
	"statement_lines l WHERE l.statement_id = s.id), s.total_cents, " \
	"s.checksum FROM statements s WHERE s.period = ?1 AND (?2 = 0 OR " \
	"s.tenant_id = ?2) AND s.id > ?3 AND s.id <= ?4 ORDER BY s.id"

static int
export_csv_summary(sqlite3 *db, const char *period, const struct export_opts *o,
    int64_t after, int64_t upto, struct obuf *x)
{
	static const char *const cols[] = { "statement", "period", "status",
	    "insee", "siren", "member", "population", "lines", "total",
	    "checksum", NULL };
	sqlite3_stmt	*st;
	struct cents	 total;
	char		 buf[64];
	int		 rc;

	export_header(x, o, cols);
	st = export_page(db, EXP_SUMMARY_SQL, period, o, after, upto);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		export_cells(x, o, st, "...ttt..");
		total.c = sqlite3_column_int64(st, 8);
		money_fmt_cents(total, o->eo_point, buf, sizeof(buf));
		export_cell(x, o, buf, 0, 0);
		export_cell(x, o, export_col(st, 9), 0, 1);
	}
	sqlite3_finalize(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

static int
export_json_summary(sqlite3 *db, const char *period,
    const struct export_opts *o,
    int64_t after, int64_t upto, struct obuf *x)
{
	sqlite3_stmt	*st;
	struct cents	 total;
	json_t		*row;
	char		 buf[64], *s;
	int		 rc, n = 0;

	st = export_page(db, EXP_SUMMARY_SQL, period, o, after, upto);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		total.c = sqlite3_column_int64(st, 8);
		money_fmt_cents(total, '.', buf, sizeof(buf));
		row = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:s,s:o,"
		    "s:o}", "id", export_int(st, 0), "period",
		    export_text(st, 1), "status", export_text(st, 2), "insee",
		    export_text(st, 3),
		    "siren", export_text(st, 4), "member", export_text(st, 5),
		    "population", export_int(st, 6), "lines", export_int(st, 7),
		    "total", buf, "total_cents", export_int(st, 8), "checksum",
		    export_text(st, 9));
		s = json_dumps(row, JSON_COMPACT);
		json_decref(row);
		if (n++ > 0)
			obuf_add(x, ",", 1);
		obuf_str(x, s);
		free(s);
	}
	sqlite3_finalize(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

/* The titres issued for a statement: "2026/3, 2026/8", or "". */
static void
export_titres(sqlite3_stmt *tq, int64_t stmt, char *buf, size_t len)
{
	size_t	 n = 0;

	buf[0] = '\0';
	sqlite3_reset(tq);
	sqlite3_bind_int64(tq, 1, stmt);
	while (store_step(tq) == SQLITE_ROW && n + 24 < len)
		n += (size_t)snprintf(buf + n, len - n, "%s%lld/%lld",
		    n > 0 ? ", " : "", (long long)sqlite3_column_int64(tq, 0),
		    (long long)sqlite3_column_int64(tq, 1));
}

/* A day number as an ODS date cell, or an empty cell. */
static void
export_ods_day(struct ods *ods, sqlite3_stmt *st, int col, int64_t delta)
{
	char	 buf[16];

	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		ods_empty(ods);
		return;
	}
	period_fmt_day(sqlite3_column_int64(st, col) + delta, buf,
	    sizeof(buf));
	ods_date(ods, buf);
}

/*
 * The statements (after, upto] of the period as a spreadsheet: a summary
 * sheet (one row per member, with its SIRET and titres) and a lines
 * sheet. Codes are text, quantities numbers, amounts EUR, days dates.
 */
static int
export_ods(sqlite3 *db, const char *period, const struct export_opts *o,
    int64_t after, int64_t upto, struct ods *ods)
{
	static const char *const scols[] = { "statement", "period", "status",
	    "insee", "siren", "siret", "member", "population", "lines",
	    "total", "titres", "checksum" };
	static const char *const lcols[] = { "statement", "period", "status",
	    "insee", "siren", "member", "type", "class", "metric", "label",
	    "quantity", "unit", "unit_price", "amount", "tariff",
	    "deliberation", "band", "from", "to", "corrects_period",
	    "reason" };
	sqlite3_stmt	*st, *tq;
	struct money	 price;
	char		 buf[256];
	int		 rc, i;

	ods_sheet(ods, "summary");
	ods_header(ods, scols, nitems(scols));
	tq = store_prepare(db, "SELECT exer, number FROM pes_titres WHERE "
	    "statement_id = ? ORDER BY exer, number");
	st = export_page(db, "SELECT s.id, s.period, s.status, s.insee, "
	    "s.siren, t.siret, s.member_name, s.population, (SELECT count(*) "
	    "FROM statement_lines l WHERE l.statement_id = s.id), "
	    "s.total_cents, s.checksum FROM statements s JOIN tenants t ON "
	    "t.id = s.tenant_id WHERE s.period = ?1 AND (?2 = 0 OR "
	    "s.tenant_id = ?2) AND s.id > ?3 AND s.id <= ?4 ORDER BY s.id",
	    period, o, after, upto);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		ods_row(ods);
		for (i = 0; i < 7; i++)
			ods_text(ods, export_col(st, i));
		ods_int(ods, sqlite3_column_int64(st, 7));
		ods_int(ods, sqlite3_column_int64(st, 8));
		ods_cents(ods, sqlite3_column_int64(st, 9));
		export_titres(tq, sqlite3_column_int64(st, 0), buf,
		    sizeof(buf));
		ods_text(ods, buf);
		ods_text(ods, export_col(st, 10));
	}
	sqlite3_finalize(st);
	sqlite3_finalize(tq);
	if (rc != SQLITE_DONE)
		return (-1);

	ods_sheet(ods, "lines");
	ods_header(ods, lcols, nitems(lcols));
	st = export_page(db, EXP_LINES_SQL, period, o, after, upto);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		ods_row(ods);
		for (i = 0; i < 10; i++)
			ods_text(ods, export_col(st, i));
		money_fmt_quantity(sqlite3_column_int64(st, 10),
		    sqlite3_column_int64(st, 11), '.', buf, sizeof(buf));
		ods_number(ods, buf);
		ods_text(ods, export_col(st, 12));
		price.micro = sqlite3_column_int64(st, 13);
		money_fmt_price(price, '.', buf, sizeof(buf));
		ods_number(ods, buf);
		ods_cents(ods, sqlite3_column_int64(st, 14));
		export_tariff_text(st, buf, sizeof(buf));
		ods_text(ods, buf);
		export_delib_text(st, buf, sizeof(buf));
		ods_text(ods, buf);
		ods_text(ods, export_col(st, 19));
		export_ods_day(ods, st, 20, 0);
		export_ods_day(ods, st, 21, -1);
		ods_text(ods, export_col(st, 22));
		ods_text(ods, export_col(st, 23));
	}
	sqlite3_finalize(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

/* A period's export; see billing.h. */
int
billing_export(sqlite3 *db, const char *period, int format,
    const struct export_opts *o, char **out, size_t *len,
    struct export_info *info, char **cause)
{
	sqlite3_stmt	*st;
	struct obuf	 x = { NULL, 0, 0 };
	json_t		*head, *doc;
	int64_t		 after = o->eo_after, upto = after, id;
	char		*s, buf[64], status[16] = "";
	int		 rc = 0, n = 0;

	memset(info, 0, sizeof(*info));
	info->ei_ids = json_array();
	st = store_prepare(db, "SELECT status FROM billing_periods WHERE "
	    "period = ?");
	sqlite3_bind_text(st, 1, period, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		strlcpy(status, (const char *)sqlite3_column_text(st, 0),
		    sizeof(status));
	sqlite3_finalize(st);
	if (billing_period_checksum(db, period, o->eo_tenant,
	    &info->ei_period_count, info->ei_checksum) == -1)
		goto dberr;
	/* The statements of this page: ids and total. */
	st = store_prepare(db, "SELECT id, total_cents FROM statements WHERE "
	    "period = ?1 AND (?2 = 0 OR tenant_id = ?2) AND id > ?3 ORDER BY "
	    "id LIMIT ?4");
	sqlite3_bind_text(st, 1, period, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, o->eo_tenant);
	sqlite3_bind_int64(st, 3, after);
	sqlite3_bind_int64(st, 4, o->eo_limit > 0 ? o->eo_limit + 1 : -1);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		id = sqlite3_column_int64(st, 0);
		if (o->eo_limit > 0 && n == o->eo_limit) {
			info->ei_next = upto;
			break;
		}
		n++;
		upto = id;
		json_array_append_new(info->ei_ids, json_integer(id));
		info->ei_total.c += sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		goto dberr;
	info->ei_count = n;

	if (format == EXPORT_ODS) {
		struct ods *ods = ods_new();

		if (export_ods(db, period, o, after, upto, ods) == -1) {
			ods_free(ods);
			goto dberr;
		}
		rc = ods_finish(ods, out, len, cause);
		ods_free(ods);
		if (rc == -1) {
			json_decref(info->ei_ids);
			info->ei_ids = NULL;
			return (-1);
		}
		return (0);
	} else if (format == EXPORT_CSV) {
		obuf_add(&x, "\xef\xbb\xbf", 3);
		if (n > 0 && (o->eo_summary ? export_csv_summary(db, period, o,
		    after, upto, &x) : export_csv_lines(db, period, o, after,
		    upto,
		    &x)) == -1)
			goto dberr;
		if (n == 0) {
			/* Headers only: the file still opens. */
			if (o->eo_summary)
				export_csv_summary(db, period, o, 0, 0, &x);
			else
				export_csv_lines(db, period, o, 0, 0, &x);
		}
	} else {
		money_fmt_cents(info->ei_total, '.', buf, sizeof(buf));
		head = json_pack("{s:s,s:s,s:b,s:s,s:I,s:I,s:s,s:I,s:O}",
		    "period", period, "status", *status ? status : "none",
		    "summary", o->eo_summary, "checksum", info->ei_checksum,
		    "count", (json_int_t)info->ei_count, "period_count",
		    (json_int_t)info->ei_period_count, "total", buf,
		    "total_cents", (json_int_t)info->ei_total.c,
		    "statement_ids", info->ei_ids);
		if (info->ei_next) {
			snprintf(buf, sizeof(buf), "%lld", (long long)
			    info->ei_next);
			json_object_set_new(head, "next_cursor",
			    json_string(buf));
		} else
			json_object_set_new(head, "next_cursor", json_null());
		s = json_dumps(head, JSON_COMPACT);
		json_decref(head);
		/* The head without its '}', then the statements, streamed. */
		obuf_add(&x, s, strlen(s) - 1);
		free(s);
		obuf_str(&x, o->eo_summary ? ",\"rows\":[" :
		    ",\"statements\":[");
		if (o->eo_summary) {
			if (n > 0 && export_json_summary(db, period, o, after,
			    upto, &x) == -1)
				goto dberr;
		} else {
			size_t i;

			for (i = 0; i < json_array_size(info->ei_ids); i++) {
				id = json_integer_value(json_array_get(
				    info->ei_ids, i));
				if ((doc = billing_statement_json(db, id)) ==
				    NULL)
					continue;
				s = json_dumps(doc, JSON_COMPACT);
				json_decref(doc);
				if (i > 0)
					obuf_add(&x, ",", 1);
				obuf_str(&x, s);
				free(s);
			}
		}
		obuf_str(&x, "]}");
	}
	*out = obuf_take(&x, len);
	return (0);
dberr:
	xasprintf(cause, "reading statements: %s", sqlite3_errmsg(db));
	obuf_free(&x);
	json_decref(info->ei_ids);
	info->ei_ids = NULL;
	return (-1);
}
