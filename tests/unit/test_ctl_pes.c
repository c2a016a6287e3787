/*
 * The PES V2 writer: SIRET checks (Luhn, and La Poste's exception), the
 * postal norm, files of ordinary and reduction bordereaux that the DGFiP's
 * schemas accept (xmllint against tests/data/pes-v2-xsd-5.17, which must
 * be found: a missing schema fails the test), their totals and ISO-8859-1
 * bytes, and the fields the writer refuses.
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

#include "opsn/util.h"
#include "members/members.h"
#include "billing/pes.h"

/* The schema, from the tree this test was built from. */
static void
xsd_path(char *buf, size_t len)
{
	char	 top[1024], *slash;
	int	 i;

	strlcpy(top, __FILE__, sizeof(top));
	for (i = 0; i < 3 && (slash = strrchr(top, '/')) != NULL; i++)
		*slash = '\0';
	if (i < 3)
		strlcpy(top, ".", sizeof(top));
	snprintf(buf, len, "%s/tests/data/pes-v2-xsd-5.17/PES_V2/Rev0/"
	    "PES_Aller.xsd", top);
}

/*
 * xmllint's verdict on a file against the PES_Aller schema: 0 if valid;
 * its report is printed when the verdict is not the one expected.
 */
static int
xsd_validate(const char *doc, size_t len, int expect_valid)
{
	char	 xsd[1200], path[] = "/tmp/opsn-pes-XXXXXX", cmd[1500];
	char	 log[64], *text = NULL, *cause = NULL;
	int	 fd, rc;

	xsd_path(xsd, sizeof(xsd));
	if (access(xsd, R_OK) != 0)
		fail_msg("the PES schema is not at %s", xsd);
	if (system("xmllint --version >/dev/null 2>&1") != 0)
		fail_msg("xmllint is not installed (ops/deps.sh)");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, doc, len), (ssize_t)len);
	close(fd);
	snprintf(log, sizeof(log), "%s.log", path);
	snprintf(cmd, sizeof(cmd), "xmllint --noout --schema %s %s >%s 2>&1",
	    xsd, path, log);
	rc = system(cmd);
	if ((rc == 0) != expect_valid &&
	    util_read_file(log, 1 << 20, &text, NULL, &cause) == 0) {
		fprintf(stderr, "%s", text);
		free(text);
	}
	free(cause);
	unlink(log);
	unlink(path);
	return (rc);
}

/* The document without its line breaks and indentation. */
static char *
unindent(const char *s)
{
	char	*o = xmalloc(strlen(s) + 1), *p = o;

	for (; *s != '\0'; s++)
		if (*s != '\n' && *s != '\t')
			*p++ = *s;
	*p = '\0';
	return (o);
}

static const struct pes_header hdr = {
	.ph_file = "PESALR1_21010001200017_2026_1.xml",
	.ph_sigle = "opsn",
	.ph_app = "opsn-controller " OPSN_VERSION,
	.ph_date = "2026-12-03",
	.ph_exer = 2026,
	.ph_demat = 1,
	.ph_idpost = "001054",
	.ph_libpost = "SGC Bourg-en-Bresse",
	.ph_idcoll = "25310000000012",
	.ph_codcol = "123",
	.ph_codbud = "00",
	.ph_libcolbud = "Budget principal num\xc3\xa9rique",
};

static const struct pes_line lines_a[] = {
	{ "H\xc3\xa9" "bergement de machines \xe2\x80\x93 novembre 2026",
	    "HEB", "70688", NULL, 11436, 0, 0, 0 },
	{ "Messagerie", "MAIL", "70688", NULL, 5, 0, 0, 0 },
};
static const struct pes_line lines_b[] = {
	{ "Cotisation 2026", "COT", "7474", NULL, 1234567, 0, 0, 0 },
};
static const struct pes_line lines_red[] = {
	{ "R\xc3\xa9" "duction : site indisponible le 3 oct.", "HEB",
	    "70688", NULL, 1250, 2026, 7, 1 },
};

static const struct pes_piece pieces_ord[] = {
	{ 8, "Services num\xc3\xa9riques novembre 2026", { "21010001200017",
	    PES_CAT_COMMUNE, "01001",
	    "L'Abergement-Cl\xc3\xa9menciat", "Place de la Mairie", NULL,
	    "01400", "L'Abergement-Cl\xc3\xa9menciat" }, lines_a, 2 },
	{ 9, "Services num\xc3\xa9riques novembre 2026", { "20007111600012",
	    PES_CAT_GROUPEMENT, NULL,
	    "Communaut\xc3\xa9 de communes de la C\xc3\xb4te d'\xc3\x89meraude "
	    "et des \xc3\x8elets de l'Ouest", "2 rue de l'\xc3\x89glise",
	    "BP 12", "20000", "Ajaccio" }, lines_b, 1 },
};
static const struct pes_piece pieces_red[] = {
	{ 10, "R\xc3\xa9" "duction du titre 7", { "21010001200017",
	    PES_CAT_COMMUNE, "01001", "L'Abergement-Cl\xc3\xa9menciat",
	    "Place de la Mairie", NULL, "01400",
	    "L'Abergement-Cl\xc3\xa9menciat" }, lines_red, 1 },
};

static void
siret_is_luhn_checked_with_la_postes_exception(void **state)
{
	(void)state;
	assert_true(tenants_siret_ok("73282932000074"));
	assert_true(tenants_siret_ok("21010001200017"));
	assert_false(tenants_siret_ok("21010001200018"));
	assert_false(tenants_siret_ok("2101000120001"));
	assert_false(tenants_siret_ok("210100012000170"));
	assert_false(tenants_siret_ok("2101000120001A"));
	assert_false(tenants_siret_ok(""));
	assert_false(tenants_siret_ok(NULL));
	/* La Poste: its head office passes Luhn, the others add up to 5k. */
	assert_true(tenants_siret_ok("35600000000048"));
	assert_true(tenants_siret_ok("35600000049008"));
	assert_false(tenants_siret_ok("35600000049009"));
	/* The exception is La Poste's alone. */
	assert_false(tenants_siret_ok("35600000149007"));
}

static void
postal_norm_is_upper_case_without_accents(void **state)
{
	char	 buf[128], l1[PES_TEXT_LINE + 1], l2[PES_TEXT_LINE + 1];

	(void)state;
	pes_postal("L'Abergement-Cl\xc3\xa9menciat", buf, sizeof(buf));
	assert_string_equal(buf, "L ABERGEMENT CLEMENCIAT");
	pes_postal("  \xc5\x92uvre  Saint-\xc3\x89tienne-de-Tin\xc3\xa9" "e, "
	    "Stra\xc3\x9f" "e \xc3\x86gir ", buf, sizeof(buf));
	assert_string_equal(buf, "OEUVRE SAINT ETIENNE DE TINEE STRASSE "
	    "AEGIR");
	pes_postal("bad \xff byte", buf, sizeof(buf));
	assert_string_equal(buf, "BAD BYTE");
	pes_postal("Ajaccio", buf, 4);
	assert_string_equal(buf, "AJA");

	pes_postal_lines("Communaut\xc3\xa9 de communes de la C\xc3\xb4te "
	    "d'\xc3\x89meraude et des \xc3\x8elets de l'Ouest", l1, l2);
	assert_string_equal(l1, "COMMUNAUTE DE COMMUNES DE LA COTE D");
	assert_string_equal(l2, "EMERAUDE ET DES ILETS DE L OUEST");
	assert_true(strlen(l1) <= PES_TEXT_LINE);
	pes_postal_lines("Mairie", l1, l2);
	assert_string_equal(l1, "MAIRIE");
	assert_string_equal(l2, "");
}

static void
ordinary_and_reduction_bordereaux_validate_against_the_xsd(void **state)
{
	char	*flat;
	const struct pes_bordereau b[] = {
		{ PES_BORD_ORDINARY, 3, 1000000 + 11441 + 1234567,
		    pieces_ord, 2 },
		{ PES_BORD_REDUCTION, 1, 1250, pieces_red, 1 },
	};
	char	*out = NULL, *cause = NULL;
	size_t	 len = 0;

	(void)state;
	if (pes_write(&hdr, b, nitems(b), &out, &len, &cause) == -1)
		fail_msg("%s", cause);
	assert_int_equal(strlen(out), len);
	assert_int_equal(xsd_validate(out, len, 1), 0);
	flat = unindent(out);

	assert_non_null(strstr(out, "encoding=\"ISO-8859-1\""));
	/* Free texts in Latin-1 (é is one byte 0xe9; the dash is ASCII). */
	assert_non_null(strstr(out, "<ObjLignePce V=\"H\xe9" "bergement de "
	    "machines - novembre 2026\"/>"));
	assert_non_null(strstr(out, "<LibelleColBud V=\"Budget principal "
	    "num\xe9rique\"/>"));
	assert_null(strstr(out, "\xc3\xa9"));
	/* Names and addresses in the postal norm, long ones split. */
	assert_non_null(strstr(out, "<Nom V=\"L ABERGEMENT CLEMENCIAT\"/>"));
	assert_non_null(strstr(out, "<Ville V=\"L ABERGEMENT CLEMENCIAT\"/>"));
	assert_non_null(strstr(out, "<ComplNom V=\"EMERAUDE ET DES ILETS DE "
	    "L OUEST\"/>"));
	assert_non_null(strstr(out, "<Adr2 V=\"2 RUE DE L EGLISE\"/>"));
	assert_non_null(strstr(out, "<Adr3 V=\"BP 12\"/>"));
	assert_non_null(strstr(out, "<RefTiers V=\"01001\"/>"));
	/* The debtors: SIRET, commune and groupement. */
	assert_non_null(strstr(flat, "<IdTiers V=\"21010001200017\"/>"
	    "<NatIdTiers V=\"01\"/>"));
	assert_non_null(strstr(out, "<CatTiers V=\"23\"/>"));
	assert_non_null(strstr(out, "<CatTiers V=\"24\"/>"));
	assert_non_null(strstr(out, "<NatJur V=\"09\"/>"));
	/* Totals: the sum of the titres' lines, in cents. */
	assert_non_null(strstr(out, "<MtBordHt V=\"12460.08\"/>"));
	assert_non_null(strstr(out, "<MtCumulAnnuel V=\"22460.08\"/>"));
	assert_non_null(strstr(out, "<NbrPce V=\"2\"/>"));
	assert_non_null(strstr(out, "<MtHT V=\"0.05\"/>"));
	assert_non_null(strstr(out, "<Bordereau Id=\"BORD_2026_01_3\">"));
	assert_non_null(strstr(out, "<Bordereau Id=\"BORD_2026_02_1\">"));
	/* The reduction refers to titre 7 of 2026, line 1. */
	assert_non_null(strstr(out, "<TypBord V=\"02\"/>"));
	assert_non_null(strstr(flat, "<TypPce V=\"02\"/><NatPce V=\"06\"/>"));
	assert_non_null(strstr(flat, "<RattachPiece><NatPceOrig V=\"01\"/>"
	    "<ExerRat V=\"2026\"/><IdPceOrig V=\"7\"/><IdLigneOrig V=\"1\"/>"
	    "</RattachPiece>"));
	free(flat);
	free(out);
}

static void
the_xsd_check_catches_a_wrong_file(void **state)
{
	const struct pes_bordereau b[] = {
		{ PES_BORD_ORDINARY, 3, 1234567, pieces_ord + 1, 1 },
	};
	char	*out = NULL, *cause = NULL, *p;
	size_t	 len = 0;

	(void)state;
	assert_int_equal(pes_write(&hdr, b, 1, &out, &len, &cause), 0);
	assert_int_equal(xsd_validate(out, len, 1), 0);
	p = strstr(out, "<TypBord V=\"01\"/>");
	assert_non_null(p);
	p[13] = '7';
	assert_int_not_equal(xsd_validate(out, len, 0), 0);
	free(out);
}

static void
writer_refuses_what_helios_would_reject(void **state)
{
	struct pes_header	 h = hdr;
	struct pes_line		 l = lines_a[0];
	struct pes_piece	 p = pieces_ord[0];
	struct pes_bordereau	 b = { PES_BORD_ORDINARY, 1, 11436, &p, 1 };
	char			*out = NULL, *cause = NULL;
	size_t			 len;

	(void)state;
	p.pp_lines = &l;
	p.pp_nlines = 1;
	assert_int_equal(pes_write(&h, &b, 1, &out, &len, &cause), 0);
	free(out);

#define REFUSED(what) do {						\
	cause = NULL;							\
	assert_int_equal(pes_write(&h, &b, 1, &out, &len, &cause), -1);	\
	assert_non_null(cause);						\
	if (strstr(cause, (what)) == NULL)				\
		fail_msg("'%s' does not say '%s'", cause, (what));	\
	free(cause);							\
} while (0)

	h.ph_idpost = "12345";
	REFUSED("IdPost");
	h.ph_idpost = "02A1234";
	assert_int_equal(pes_write(&h, &b, 1, &out, &len, &cause), 0);
	free(out);
	h.ph_idcoll = "25310000000013";
	REFUSED("IdColl");
	h = hdr;
	h.ph_codbud = "0A";
	REFUSED("CodBud");
	h = hdr;

	p.pp_tiers.pt_siret = NULL;
	REFUSED("SIRET");
	p.pp_tiers = pieces_ord[0].pp_tiers;
	p.pp_tiers.pt_postcode = "1400";
	REFUSED("postcode");
	p.pp_tiers = pieces_ord[0].pp_tiers;
	p.pp_tiers.pt_line = " - ";
	REFUSED("street");
	p.pp_tiers = pieces_ord[0].pp_tiers;
	p.pp_tiers.pt_cat = 60;
	REFUSED("CatTiers");
	p.pp_tiers = pieces_ord[0].pp_tiers;

	l.pl_cents = 0;
	REFUSED("MtHT");
	l = lines_a[0];
	l.pl_product = "HEBER";
	REFUSED("CodProdLoc");
	l = lines_a[0];
	l.pl_nature = "0706";
	REFUSED("Nature");
	l = lines_a[0];
	b.pb_type = PES_BORD_REDUCTION;
	b.pb_cumul = 11436;
	REFUSED("reduces");
	b.pb_type = PES_BORD_ORDINARY;
	b.pb_cumul = 11435;
	REFUSED("MtCumulAnnuel");
#undef REFUSED
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(siret_is_luhn_checked_with_la_postes_exception),
		cmocka_unit_test(postal_norm_is_upper_case_without_accents),
		cmocka_unit_test(
		    ordinary_and_reduction_bordereaux_validate_against_the_xsd),
		cmocka_unit_test(the_xsd_check_catches_a_wrong_file),
		cmocka_unit_test(writer_refuses_what_helios_would_reject),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
