/*
 * Titres de recettes from closed statements, against a real store (every
 * migration): a period with communes and an EPCI gives one valid PES file
 * (xmllint against tests/data/pes-v2-xsd-5.17) whose titres add up to the
 * statements; exporting again gives the same bytes; numbers go on across
 * periods and start again with a fiscal year; a reduction after export is
 * a TypBord 02 titre naming the original; credits net out; and what is
 * missing is listed with nothing numbered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "billing/billing.h"
#include "billing/pes.h"
#include "billing/titre.h"

static struct ctl	 tc;
static char		 dir[64];

static const struct titre_conf conf_ok = {
	.tc_siret = "25310000000012",
	.tc_poste = "031000",
	.tc_poste_label = "SGC Muret",
	.tc_collectivity = "123",
	.tc_budget = "02",
	.tc_budget_label = "Services num\xc3\xa9riques",
	.tc_products = "vm=HEB:70688 mailbox=MAIL:70688 site=WEB:70688 "
	    "fee=ABON:70688 contribution=COTI:74741 *=DIV:7088",
	.tc_lines = "service",
	.tc_fonction = "",
	.tc_object = "Services num\xc3\xa9riques",
	.tc_signed = 1,
	.tc_first_bordereau = 1,
	.tc_first_titre = 1,
};

static int
setup_db(void **state)
{
	char	 path[128], *cause = NULL;

	(void)state;
	memset(&tc, 0, sizeof(tc));
	ctl = &tc;
	strlcpy(dir, "/tmp/opsn-titre-XXXXXX", sizeof(dir));
	if (mkdtemp(dir) == NULL)
		return (-1);
	snprintf(path, sizeof(path), "%s/opsn.db", dir);
	if (store_open(path, &tc.db, &cause) == -1) {
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
	return (system(cmd) == 0 ? 0 : -1);
}

static int64_t
add_member(const char *kind, const char *name, const char *insee,
    const char *siret, const char *addr, const char *cp, const char *town)
{
	sqlite3_stmt	*st;
	int64_t		 id;

	st = store_prepare(tc.db, "INSERT INTO tenants (kind, name, insee, "
	    "siren, siret, address, postcode, town, joined_on, created_at, "
	    "updated_at) VALUES (?, ?, ?, substr(?4, 1, 9), ?4, ?, ?, ?, "
	    "'2015-01-01', 0, 0) RETURNING id");
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	if (insee != NULL)
		sqlite3_bind_text(st, 3, insee, -1, SQLITE_STATIC);
	if (siret != NULL)
		sqlite3_bind_text(st, 4, siret, -1, SQLITE_STATIC);
	if (addr != NULL)
		sqlite3_bind_text(st, 5, addr, -1, SQLITE_STATIC);
	if (cp != NULL)
		sqlite3_bind_text(st, 6, cp, -1, SQLITE_STATIC);
	if (town != NULL)
		sqlite3_bind_text(st, 7, town, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (id);
}

/* A statement line: type, class, metric, cents, corrected period. */
struct sline {
	const char	*type;
	const char	*class;
	const char	*metric;
	int64_t		 cents;
	const char	*corrects;
};

static void
add_period(const char *label)
{
	struct period	 p;
	sqlite3_stmt	*st;
	char		*cause = NULL;

	assert_int_equal(period_parse(label, &p, &cause), 0);
	st = store_prepare(tc.db, "INSERT INTO billing_periods (period, "
	    "first_day, end_day, tz, start_utc, end_utc) VALUES (?, ?, ?, "
	    "'Europe/Paris', 0, 0)");
	sqlite3_bind_text(st, 1, label, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, p.p_first);
	sqlite3_bind_int64(st, 3, p.p_end);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

static int64_t
add_statement(const char *period, int64_t tenant, const struct sline *l,
    size_t n)
{
	sqlite3_stmt	*st;
	int64_t		 id, total = 0;
	size_t		 i;

	st = store_prepare(tc.db, "INSERT INTO statements (tenant_id, period, "
	    "first_day, end_day, tz, member_kind, member_name, insee, siren, "
	    "population, generated_at) SELECT id, ?, 0, 1, 'Europe/Paris', "
	    "kind, name, insee, siren, 100, 0 FROM tenants WHERE id = ? "
	    "RETURNING id");
	sqlite3_bind_text(st, 1, period, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, tenant);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	for (i = 0; i < n; i++) {
		st = store_prepare(tc.db, "INSERT INTO statement_lines "
		    "(statement_id, seq, type, class, metric, label, unit, "
		    "quantity_base, divisor, unit_price_micro, amount_cents, "
		    "corrects_period, reason) VALUES (?, ?, ?, ?, ?, ?3 || ' ' "
		    "|| ?5, 'EUR', 1, 1, ?6 * 10000, ?6, ?, ?)");
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, (int64_t)i + 1);
		sqlite3_bind_text(st, 3, l[i].type, -1, SQLITE_STATIC);
		if (l[i].class != NULL)
			sqlite3_bind_text(st, 4, l[i].class, -1,
			    SQLITE_STATIC);
		sqlite3_bind_text(st, 5, l[i].metric, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, l[i].cents);
		if (l[i].corrects != NULL)
			sqlite3_bind_text(st, 7, l[i].corrects, -1,
			    SQLITE_STATIC);
		if (l[i].corrects != NULL)
			sqlite3_bind_text(st, 8, "site down 3 Oct.", -1,
			    SQLITE_STATIC);
		assert_int_equal(sqlite3_step(st), SQLITE_DONE);
		sqlite3_finalize(st);
		total += l[i].cents;
	}
	st = store_prepare(tc.db, "UPDATE statements SET total_cents = ? "
	    "WHERE id = ?");
	sqlite3_bind_int64(st, 1, total);
	sqlite3_bind_int64(st, 2, id);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	return (id);
}

static void
close_period(const char *label)
{
	sqlite3_stmt	*st;

	st = store_prepare(tc.db, "UPDATE statements SET status = 'closed', "
	    "closed_at = 1 WHERE period = ?");
	sqlite3_bind_text(st, 1, label, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	st = store_prepare(tc.db, "UPDATE billing_periods SET status = "
	    "'closed', closed_at = 1 WHERE period = ?");
	sqlite3_bind_text(st, 1, label, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

static int64_t
count(const char *sql)
{
	sqlite3_stmt	*st = store_prepare(tc.db, sql);
	int64_t		 n = -1;

	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (n);
}

/* The schema, from the tree this test was built from. */
static void
assert_valid_pes(const struct titre_file *f)
{
	char	 top[1024], path[] = "/tmp/opsn-titre-pes-XXXXXX";
	char	 cmd[4400], *slash;
	int	 i, fd;

	strlcpy(top, __FILE__, sizeof(top));
	for (i = 0; i < 3 && (slash = strrchr(top, '/')) != NULL; i++)
		*slash = '\0';
	if (i < 3)
		strlcpy(top, ".", sizeof(top));
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, f->tf_content, f->tf_len),
	    (ssize_t)f->tf_len);
	close(fd);
	snprintf(cmd, sizeof(cmd), "test -r %s/tests/data/pes-v2-xsd-5.17/"
	    "PES_V2/Rev0/PES_Aller.xsd && xmllint --noout --schema "
	    "%s/tests/data/pes-v2-xsd-5.17/PES_V2/Rev0/PES_Aller.xsd %s "
	    "2>&1 | grep -v 'validates$\\|Skipping import' >&2; "
	    "xmllint --noout --schema %s/tests/data/pes-v2-xsd-5.17/PES_V2/"
	    "Rev0/PES_Aller.xsd %s >/dev/null 2>&1", top, top, path, top,
	    path);
	if (system(cmd) != 0)
		fail_msg("%s does not validate against the PES schema", path);
	unlink(path);
}

static int
export(const struct titre_conf *c, const char *period, int64_t now,
    struct titre_file *f, int *status, char **cause)
{
	struct period	 p;
	int		 rv;

	assert_int_equal(period_parse(period, &p, cause), 0);
	assert_int_equal(store_begin(tc.db), 0);
	rv = titre_export(tc.db, c, &p, "test", now, f,
	    status, cause);
	if (rv == 0)
		assert_int_equal(store_commit(tc.db), 0);
	else
		store_rollback(tc.db);
	return (rv);
}

/* 3 Dec. 2026, 12:00 UTC */
#define DEC3	INT64_C(1796299200)

static void
missing_data_is_listed_and_nothing_numbered(void **state)
{
	static const struct sline l[] = {
		{ "usage", "vm", "vm.vcpu_hours", 11436, NULL },
	};
	struct titre_conf	 c = conf_ok;
	struct titre_file	 f;
	char			*cause = NULL, *all;
	int64_t			 a, b;
	int			 status = 0;

	(void)state;
	a = add_member("commune", "Agassac", "31001", NULL, NULL, NULL, NULL);
	b = add_member("commune", "Muret", "31395", "21310395500018",
	    "Place de la Mairie", "31600", "Muret");
	add_period("2026-10");
	add_statement("2026-10", a, l, 1);
	add_statement("2026-10", b, l, 1);
	/* Open periods are not titled. */
	assert_int_equal(export(&c, "2026-10", DEC3, &f, &status, &cause),
	    -1);
	assert_int_equal(status, 409);
	free(cause);
	close_period("2026-10");

	c.tc_siret = NULL;
	c.tc_poste = "";
	c.tc_products = "vm=TOOLONG:70688";
	assert_int_equal(export(&c, "2026-10", DEC3, &f, &status, &cause),
	    -1);
	assert_int_equal(status, TITRE_EINCOMPLETE);
	assert_non_null(f.tf_missing);
	all = json_dumps(f.tf_missing, 0);
	assert_non_null(strstr(all, "siret (IdColl"));
	assert_non_null(strstr(all, "poste (IdPost"));
	assert_non_null(strstr(all, "products: vm: the product code"));
	assert_non_null(strstr(all, "no product code and account for usage"));
	assert_non_null(strstr(all, "member 31001 Agassac"));
	assert_non_null(strstr(all, "31001 Agassac (tenant 1): no SIRET"));
	assert_non_null(strstr(all, "31001 Agassac (tenant 1): no address"));
	assert_null(strstr(all, "Muret"));
	free(all);
	free(cause);
	titre_file_clear(&f);
	assert_int_equal(count("SELECT count(*) FROM pes_exports"), 0);
	assert_int_equal(count("SELECT count(*) FROM pes_titres"), 0);
}

static void
a_period_is_titled_once_and_numbers_go_on(void **state)
{
	static const struct sline la[] = {
		{ "usage", "vm", "vm.vcpu_hours", 11436, NULL },
		{ "usage", "vm", "vm.memory_gib_hours", 2975, NULL },
		{ "usage", "site", "site.site_days", 5, NULL },
		{ "fee", NULL, "fee.monthly", 500, NULL },
		{ "contribution", NULL, "contribution", 12345, NULL },
	};
	static const struct sline lb[] = {
		{ "fee", NULL, "fee.monthly", 4000, NULL },
	};
	static const struct sline lz[] = {
		{ "usage", "vm", "vm.vcpu_hours", 0, NULL },
	};
	/* November: Agassac's October is reduced by 12.50 (site down). */
	static const struct sline na[] = {
		{ "usage", "vm", "vm.vcpu_hours", 10000, NULL },
		{ "adjustment", NULL, "adjustment", -1250, "2026-10" },
	};
	/* The EPCI's credit is more than its November: netted, no titre. */
	static const struct sline nb[] = {
		{ "fee", NULL, "fee.monthly", 4000, NULL },
		{ "adjustment", NULL, "adjustment", -100, NULL },
	};
	struct titre_file	 f, g;
	char			*cause = NULL, *flat;
	int64_t			 a, b, z, sa;
	int			 status;

	(void)state;
	a = add_member("commune", "L'Abergement-Cl\xc3\xa9menciat", "01001",
	    "21010001200017", "Place de la Mairie", "01400",
	    "L'Abergement-Cl\xc3\xa9menciat");
	b = add_member("epci", "CC du Pays de l'\xc3\x89tang", NULL,
	    "20007111600012", "2 rue de l'\xc3\x89glise", "20000",
	    "Ajaccio");
	z = add_member("commune", "Ajaccio", "2A004", NULL, NULL, NULL, NULL);
	add_period("2026-10");
	sa = add_statement("2026-10", a, la, nitems(la));
	add_statement("2026-10", b, lb, nitems(lb));
	/* Nothing to bill: no titre, so no SIRET needed. */
	add_statement("2026-10", z, lz, nitems(lz));
	close_period("2026-10");

	if (export(&conf_ok, "2026-10", DEC3, &f, &status, &cause) == -1)
		fail_msg("%s %s", cause, f.tf_missing ?
		    json_dumps(f.tf_missing, 0) : "");
	assert_true(f.tf_new);
	assert_valid_pes(&f);
	assert_string_equal(f.tf_name,
	    "PESALR1_25310000000012_2026_0001.xml");
	flat = f.tf_content;
	assert_non_null(strstr(flat, "<NbrPce V=\"2\"/>"));
	/* 114.36 + 29.75 + 0.05 + 5.00 + 123.45 + 40.00 */
	assert_non_null(strstr(flat, "<MtBordHt V=\"312.61\"/>"));
	assert_non_null(strstr(flat, "<MtCumulAnnuel V=\"312.61\"/>"));
	/* One line per service: the VM's two metrics together. */
	assert_non_null(strstr(flat, "<MtHT V=\"144.11\"/>"));
	assert_non_null(strstr(flat, "<ObjLignePce V=\"Machines virtuelles\""
	    "/>"));
	assert_non_null(strstr(flat, "<CodProdLoc V=\"COTI\"/>"));
	assert_non_null(strstr(flat, "<Nature V=\"74741\"/>"));
	assert_non_null(strstr(flat, "<CatTiers V=\"24\"/>"));
	assert_non_null(strstr(flat, "<IdPce V=\"2\"/>"));
	assert_non_null(strstr(flat, "<ObjPce V=\"Services num\xe9riques "
	    "octobre 2026 (relev\xe9 "));
	assert_null(strstr(flat, "AJACCIO\"/>\n\t\t\t\t\t\t<CatTiers V=\"23"));
	assert_int_equal(json_integer_value(json_object_get(f.tf_summary,
	    "ordinary_cents")), 31261);

	/* Again: the same bytes, nothing new. */
	assert_int_equal(export(&conf_ok, "2026-10", DEC3 + 86400 * 9, &g,
	    &status, &cause), 0);
	assert_false(g.tf_new);
	assert_int_equal(g.tf_len, f.tf_len);
	assert_memory_equal(g.tf_content, f.tf_content, f.tf_len);
	titre_file_clear(&g);
	titre_file_clear(&f);
	assert_int_equal(count("SELECT count(*) FROM pes_titres"), 2);

	/* November: a new titre 3, and a reduction of titre 1. */
	add_period("2026-11");
	add_statement("2026-11", a, na, nitems(na));
	add_statement("2026-11", b, nb, nitems(nb));
	close_period("2026-11");
	if (export(&conf_ok, "2026-11", DEC3 + 86400 * 30, &f, &status,
	    &cause) == -1)
		fail_msg("%s", cause);
	assert_valid_pes(&f);
	flat = f.tf_content;
	assert_string_equal(f.tf_name,
	    "PESALR1_25310000000012_2026_0002.xml");
	assert_non_null(strstr(flat, "<IdBord V=\"2\"/>"));
	assert_non_null(strstr(flat, "<TypBord V=\"02\"/>"));
	assert_non_null(strstr(flat, "<IdPceOrig V=\"1\"/>"));
	assert_non_null(strstr(flat, "<ExerRat V=\"2026\"/>"));
	/* An adjustment names no service: from titre 1's first line. */
	assert_non_null(strstr(flat, "<IdLigneOrig V=\"1\"/>"));
	assert_non_null(strstr(flat, "<ObjPce V=\"R\xe9" "duction du titre 1 "
	    "de 2026 : site down 3 Oct.\"/>"));
	/* Agassac 100.00, EPCI 40.00 - 1.00 */
	assert_non_null(strstr(flat, "<MtBordHt V=\"139.00\"/>"));
	assert_non_null(strstr(flat, "<MtCumulAnnuel V=\"451.61\"/>"));
	assert_non_null(strstr(flat, "<MtBordHt V=\"12.50\"/>"));
	assert_int_equal(count("SELECT min(number) FROM pes_titres WHERE "
	    "export_id = 2"), 3);
	assert_int_equal(count("SELECT count(*) FROM pes_titres WHERE "
	    "type = 2 AND orig_number = 1"), 1);
	(void)sa;
	titre_file_clear(&f);

	/* A new fiscal year starts at 1 again. */
	add_period("2027-01");
	add_statement("2027-01", a, la, 1);
	close_period("2027-01");
	assert_int_equal(export(&conf_ok, "2027-01", DEC3 + 86400 * 60, &f,
	    &status, &cause), 0);
	assert_valid_pes(&f);
	assert_non_null(strstr(f.tf_content, "<Exer V=\"2027\"/>"));
	assert_non_null(strstr(f.tf_content, "<IdBord V=\"1\"/>"));
	assert_non_null(strstr(f.tf_content, "<IdPce V=\"1\"/>"));
	assert_string_equal(f.tf_name,
	    "PESALR1_25310000000012_2027_0001.xml");
	titre_file_clear(&f);

	/* What was sent never changes, even from outside the controller. */
	assert_int_not_equal(store_exec(tc.db, "DELETE FROM pes_titres",
	    NULL), 0);
	assert_int_not_equal(store_exec(tc.db, "UPDATE pes_exports SET "
	    "content = 'x'", NULL), 0);
}

static void
a_prepared_file_is_refused_once_others_are_numbered(void **state)
{
	static const struct sline l[] = {
		{ "fee", NULL, "fee.monthly", 600, NULL },
	};
	struct titre_job	*job;
	struct titre_file	 f, g;
	struct period		 p;
	char			*cause = NULL;
	int64_t			 a;
	int			 status = 0;

	(void)state;
	a = add_member("commune", "Agassac", "31001", "21310395500018",
	    "Place de la Mairie", "31410", "Agassac");
	add_period("2026-10");
	add_statement("2026-10", a, l, 1);
	close_period("2026-10");
	add_period("2026-11");
	add_statement("2026-11", a, l, 1);
	close_period("2026-11");
	/* October is worked out, then November numbered first. */
	assert_int_equal(period_parse("2026-10", &p, &cause), 0);
	assert_int_equal(titre_prepare(tc.db, &conf_ok, &p, DEC3, &f, &job,
	    &status, &cause), 0);
	assert_non_null(job);
	assert_int_equal(export(&conf_ok, "2026-11", DEC3, &g, &status,
	    &cause), 0);
	titre_file_clear(&g);
	assert_int_equal(store_begin(tc.db), 0);
	assert_int_equal(titre_commit(tc.db, job, "test", DEC3, &f, &status,
	    &cause), -1);
	store_rollback(tc.db);
	assert_int_equal(status, 409);
	assert_non_null(strstr(cause, "numbered meanwhile"));
	free(cause);
	titre_job_free(job);
	titre_file_clear(&f);
	assert_int_equal(count("SELECT count(*) FROM pes_exports"), 1);
	/* Again from the start: October gets the next numbers. */
	assert_int_equal(export(&conf_ok, "2026-10", DEC3, &f, &status,
	    &cause), 0);
	assert_non_null(strstr(f.tf_content, "<IdPce V=\"2\"/>"));
	titre_file_clear(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    missing_data_is_listed_and_nothing_numbered, setup_db,
		    teardown_db),
		cmocka_unit_test_setup_teardown(
		    a_period_is_titled_once_and_numbers_go_on, setup_db,
		    teardown_db),
		cmocka_unit_test_setup_teardown(
		    a_prepared_file_is_refused_once_others_are_numbered,
		    setup_db, teardown_db),
	};
	char	*cause = NULL;

	log_init("test", LOG_LEVEL_WARN, NULL);
	if (calendar_init("Europe/Paris", &cause) == -1) {
		fprintf(stderr, "%s\n", cause);
		return (1);
	}
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
