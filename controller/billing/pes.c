/*
 * PES_Aller writer for titres de recettes (see pes.h). The structure and
 * the order of the elements are those of the DGFiP's schemas 5.17
 * (PES_V2/Rev0/PES_Aller.xsd and PES_V2/NS_Recette/r0/); the rules the
 * schema cannot say are taken from their annotations:
 *
 * - an ordinary titre is the triplet TypBord 01, TypPce 01 (titre
 *   ordinaire), NatPce 01 (fonctionnement); a reduction is 02, 02 (titre
 *   correctif), 06 (annulation-réduction), each line carrying RattachPiece
 *   with NatPceOrig 01 (titres), the titre's exercise, number and line;
 * - amounts are strictly positive (MtHT, MtBordHt), NbrPce at least 1;
 * - the debtor (Tiers, TypTiers 01 débiteur principal) is a legal person:
 *   IdTiers = SIRET with NatIdTiers 01, CatTiers with NatJur 09
 *   (collectivité territoriale / EPL), the address in the postal norm;
 * - the root element is qualified (namespace Rev0/aller), everything
 *   below it unqualified (elementFormDefault="unqualified").
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/util.h"
#include "http/http.h"
#include "members/members.h"
#include "pes.h"

#define PES_NS	"http://www.minefi.gouv.fr/cp/helios/pes_v2/Rev0/aller"

/*
 * The base letters of U+00C0..U+017F, upper case; '.' where the character
 * is not a letter, '*' where it is a ligature handled apart.
 */
static const char pes_fold[] =
    /* C0 */ "AAAAAA*CEEEEIIII" "DNOOOOO.OUUUUYT*"
    /* E0 */ "AAAAAA*CEEEEIIII" "DNOOOOO.OUUUUYTY"
    /* 100 */ "AAAAAACCCCCCCCDD" "DDEEEEEEEEEEGGGG"
    /* 120 */ "GGGGHHHHIIIIIIII" "II**JJKKKLLLLLLL"
    /* 140 */ "LLLNNNNNNNNNOOOO" "OO**RRRRRRSSSSSS"
    /* 160 */ "SSTTTTTTUUUUUUUU" "UUUUWWYYYZZZZZZS";

/* The postal-norm letters of one character ("" if punctuation). */
static const char *
pes_fold_cp(uint32_t cp, char one[2])
{
	one[1] = '\0';
	if (cp < 0x80) {
		if (isalnum((int)cp)) {
			one[0] = (char)toupper((int)cp);
			return (one);
		}
		return ("");
	}
	switch (cp) {
	case 0xc6: case 0xe6:
		return ("AE");
	case 0xdf:
		return ("SS");
	case 0x132: case 0x133:
		return ("IJ");
	case 0x152: case 0x153:
		return ("OE");
	}
	if (cp >= 0xc0 && cp <= 0x17f && pes_fold[cp - 0xc0] != '.') {
		one[0] = pes_fold[cp - 0xc0];
		return (one);
	}
	return ("");
}

/* A text in the postal norm; see pes.h. */
void
pes_postal(const char *in, char *out, size_t len)
{
	const unsigned char	*s = (const unsigned char *)in;
	const char		*f;
	char			 one[2];
	size_t			 o = 0, fl;
	int			 space = 0;

	if (len == 0)
		return;
	while (*s != '\0') {
		f = pes_fold_cp(obuf_utf8(&s), one);
		if (*f == '\0') {
			space = o > 0;
			continue;
		}
		fl = strlen(f);
		if (o + space + fl + 1 > len)
			break;
		if (space)
			out[o++] = ' ';
		space = 0;
		memcpy(out + o, f, fl);
		o += fl;
	}
	out[o] = '\0';
}

/* Split a postal text over two lines; see pes.h. */
void
pes_postal_lines(const char *in, char *line1, char *line2)
{
	char	*all, *cut;
	size_t	 len = strlen(in) * 2 + 1;

	all = xmalloc(len);
	pes_postal(in, all, len);
	line2[0] = '\0';
	if (strlen(all) <= PES_TEXT_LINE) {
		strlcpy(line1, all, PES_TEXT_LINE + 1);
		free(all);
		return;
	}
	/* The last space at which the first line can end. */
	for (cut = all + PES_TEXT_LINE; cut > all && *cut != ' '; cut--)
		;
	if (cut == all)
		cut = all + PES_TEXT_LINE;
	strlcpy(line1, all, (size_t)(cut - all) + 1);
	while (*cut == ' ')
		cut++;
	if (strlen(cut) > PES_TEXT_LINE) {
		/* The second line ends at a space too, if it has one. */
		char	*end = cut + PES_TEXT_LINE;

		while (end > cut && *end != ' ')
			end--;
		if (end == cut)
			end = cut + PES_TEXT_LINE;
		*end = '\0';
	}
	strlcpy(line2, cut, PES_TEXT_LINE + 1);
	free(all);
}

/*
 * Free text in ISO-8859-1, at most max characters: Latin-1 as is,
 * typographic quotes and dashes as their ASCII forms, anything else '?';
 * controls become spaces. Escaped for an attribute value.
 */
static void
pes_latin1(struct obuf *ob, const char *in, size_t max)
{
	const unsigned char	*s = (const unsigned char *)in;
	struct obuf		 raw = { 0 };
	const char		*rep;
	uint32_t		 cp;
	size_t			 n = 0, i, rl;
	char			 c[2] = { 0, 0 };

	while (*s != '\0' && n < max) {
		cp = obuf_utf8(&s);
		rep = NULL;
		switch (cp) {
		case 0x2018: case 0x2019: case 0x2032:
			rep = "'";
			break;
		case 0x201c: case 0x201d: case 0x00ab: case 0x00bb:
			rep = "\"";
			break;
		case 0x2010: case 0x2011: case 0x2013: case 0x2014:
			rep = "-";
			break;
		case 0x2026:
			rep = "...";
			break;
		case 0x20ac:
			rep = "EUR";
			break;
		case 0x152:
			rep = "OE";
			break;
		case 0x153:
			rep = "oe";
			break;
		case 0xa0: case 0x202f:
			rep = " ";
			break;
		}
		if (rep == NULL) {
			if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
				c[0] = ' ';
			else if (cp <= 0xff)
				c[0] = (char)cp;
			else
				c[0] = '?';
			rep = c;
		}
		rl = strlen(rep);
		for (i = 0; i < rl && n < max; i++, n++)
			obuf_add(&raw, rep + i, 1);
	}
	if (raw.ob_len > 0)
		obuf_xml(ob, raw.ob_b);
	obuf_free(&raw);
}

/*
 * Is s made of min to max characters that pass ok (isdigit, isalnum), not
 * only zeros (the schema's texts and numbers refuse "0" and "000")?
 */
static int
pes_chars(const char *s, size_t min, size_t max, int (*ok)(int))
{
	size_t	 n;
	int	 nonzero = 0;

	for (n = 0; s[n] != '\0'; n++) {
		if (!ok((unsigned char)s[n]))
			return (0);
		if (s[n] != '0')
			nonzero = 1;
	}
	return (n >= min && n <= max && nonzero);
}

static int
pes_digits(const char *s, size_t min, size_t max)
{
	return (pes_chars(s, min, max, isdigit));
}

static int
pes_alnum(const char *s, size_t max)
{
	return (pes_chars(s, 1, max, isalnum));
}

/* A date "YYYY-MM-DD" with a plausible month and day. */
static int
pes_date_ok(const char *s)
{
	int	 i;

	if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return (0);
	for (i = 0; i < 10; i++)
		if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
			return (0);
	return (strncmp(s + 5, "01", 2) >= 0 && strncmp(s + 5, "12", 2) <= 0 &&
	    strncmp(s + 8, "01", 2) >= 0 && strncmp(s + 8, "31", 2) <= 0);
}

/* A poste comptable's codique: 6 or 7 digits, or 02A/02B and 3 or 4. */
static int
pes_codique_ok(const char *s)
{
	size_t	 n;

	if (s == NULL || (n = strlen(s)) < 6 || n > 7)
		return (0);
	if (strncmp(s, "02A", 3) == 0 || strncmp(s, "02B", 3) == 0)
		return (strspn(s + 3, "0123456789") == n - 3);
	return (strspn(s, "0123456789") == n);
}

static void
pes_amount(char *buf, size_t len, int64_t cents)
{
	snprintf(buf, len, "%lld.%02lld", (long long)(cents / 100),
	    (long long)(cents % 100));
}

/* <Name V="value"/> with value escaped as it is (ASCII). */
static void
pes_indent(struct obuf *ob, int depth)
{
	static const char tabs[] = "\t\t\t\t\t\t\t\t";

	obuf_add(ob, tabs, (size_t)depth < sizeof(tabs) - 1 ? (size_t)depth :
	    sizeof(tabs) - 1);
}

static void
pes_el(struct obuf *ob, int depth, const char *name, const char *v)
{
	pes_indent(ob, depth);
	obuf_printf(ob, "<%s V=\"", name);
	obuf_xml(ob, v);
	obuf_str(ob, "\"/>\n");
}

static void
pes_el_int(struct obuf *ob, int depth, const char *name, int64_t v)
{
	pes_indent(ob, depth);
	obuf_printf(ob, "<%s V=\"%lld\"/>\n", name, (long long)v);
}

/* <Name V="free text"/> in ISO-8859-1, if the text has something. */
static void
pes_el_text(struct obuf *ob, int depth, const char *name, const char *v,
    size_t max)
{
	const char	*p;

	if (v == NULL)
		return;
	for (p = v; *p == ' '; p++)
		;
	if (*p == '\0')
		return;
	pes_indent(ob, depth);
	obuf_printf(ob, "<%s V=\"", name);
	pes_latin1(ob, p, max);
	obuf_str(ob, "\"/>\n");
}

static int
pes_check_header(const struct pes_header *h, char **cause)
{
	const char	*what = NULL;

	if (h->ph_file == NULL || *h->ph_file == '\0' ||
	    strlen(h->ph_file) > 100)
		what = "NomFic: the file name must have 1 to 100 characters";
	else if (h->ph_sigle == NULL || *h->ph_sigle == '\0' ||
	    strlen(h->ph_sigle) > 32)
		what = "Emetteur/Sigle must have 1 to 32 characters";
	else if (h->ph_app == NULL || *h->ph_app == '\0' ||
	    strlen(h->ph_app) > 38)
		what = "Emetteur/Adresse must have 1 to 38 characters";
	else if (!pes_date_ok(h->ph_date))
		what = "DteStr: the date must be YYYY-MM-DD";
	else if (h->ph_exer < 1000 || h->ph_exer > 9999)
		what = "Exer: the fiscal year must have 4 digits";
	else if (!pes_codique_ok(h->ph_idpost))
		what = "IdPost: the poste comptable's codique must be 6 or 7 "
		    "digits, or 02A/02B and 3 or 4 digits";
	else if (!tenants_siret_ok(h->ph_idcoll))
		what = "IdColl must be the SIRET of the budget (14 digits, "
		    "Luhn check)";
	else if (h->ph_codcol == NULL || strlen(h->ph_codcol) != 3 ||
	    !pes_digits(h->ph_codcol, 3, 3))
		what = "CodCol must be 3 digits, not 000";
	else if (h->ph_codbud == NULL || strlen(h->ph_codbud) != 2 ||
	    !(isdigit((unsigned char)h->ph_codbud[0]) ||
	    isupper((unsigned char)h->ph_codbud[0])) ||
	    !isdigit((unsigned char)h->ph_codbud[1]))
		what = "CodBud must be 2 characters: a digit or capital letter, "
		    "then a digit";
	if (what == NULL)
		return (0);
	xasprintf(cause, "%s", what);
	return (-1);
}

static int
pes_check_tiers(const struct pes_tiers *t, int64_t piece, char **cause)
{
	char		 l1[PES_TEXT_LINE + 1], l2[PES_TEXT_LINE + 1];
	const char	*what = NULL;

	if (!tenants_siret_ok(t->pt_siret))
		what = "the debtor's SIRET is missing or invalid";
	else if (t->pt_cat < PES_CAT_REGION || t->pt_cat > PES_CAT_PUBLIC_OTHER)
		what = "the debtor's category (CatTiers) is not a public body's";
	else if (t->pt_ref != NULL && (strlen(t->pt_ref) > 30 ||
	    !pes_alnum(t->pt_ref, 30)))
		what = "RefTiers must be 1 to 30 letters and digits";
	else if (t->pt_postcode == NULL || strlen(t->pt_postcode) != 5 ||
	    !pes_digits(t->pt_postcode, 5, 5))
		what = "the debtor's postcode must be 5 digits";
	if (what == NULL) {
		pes_postal_lines(t->pt_name ? t->pt_name : "", l1, l2);
		if (*l1 == '\0')
			what = "the debtor has no name";
	}
	if (what == NULL) {
		pes_postal_lines(t->pt_line ? t->pt_line : "", l1, l2);
		if (*l1 == '\0')
			what = "the debtor's address has no street line";
	}
	if (what == NULL) {
		pes_postal_lines(t->pt_town ? t->pt_town : "", l1, l2);
		if (*l1 == '\0')
			what = "the debtor's address has no town";
	}
	if (what == NULL)
		return (0);
	xasprintf(cause, "titre %lld: %s", (long long)piece, what);
	return (-1);
}

static int
pes_check_line(const struct pes_line *l, int type, int64_t piece,
    size_t idx, char **cause)
{
	const char	*what = NULL;

	if (l->pl_cents <= 0 || l->pl_cents > PES_MAX_CENTS)
		what = "MtHT must be more than 0.00 and at most 14 digits";
	else if (l->pl_product == NULL || !pes_alnum(l->pl_product, 4))
		what = "CodProdLoc (product code) must be 1 to 4 letters or "
		    "digits";
	else if (l->pl_nature == NULL || !pes_digits(l->pl_nature, 1, 12) ||
	    l->pl_nature[0] == '0')
		what = "Nature (account) must be 1 to 12 digits, not starting "
		    "with 0";
	else if (l->pl_fonction != NULL && (strlen(l->pl_fonction) > 10 ||
	    !pes_digits(l->pl_fonction, 1, 10)))
		what = "Fonction must be 1 to 10 digits";
	else if (type == PES_BORD_REDUCTION && (l->pl_orig_exer < 1000 ||
	    l->pl_orig_exer > 9999 || l->pl_orig_piece <= 0 ||
	    l->pl_orig_piece > INT64_C(9999999999999) ||
	    l->pl_orig_line <= 0 || l->pl_orig_line > 999999))
		what = "a reduction must name the titre it reduces (exercise, "
		    "number, line)";
	if (what == NULL)
		return (0);
	xasprintf(cause, "titre %lld line %zu: %s", (long long)piece, idx + 1,
	    what);
	return (-1);
}

static void
pes_write_tiers(struct obuf *ob, const struct pes_tiers *t)
{
	char	 l1[PES_TEXT_LINE + 1], l2[PES_TEXT_LINE + 1];
	char	 a1[PES_TEXT_LINE + 1], a2[PES_TEXT_LINE + 1];

	obuf_str(ob, "\t\t\t<Tiers>\n\t\t\t\t<InfoTiers>\n");
	pes_el(ob, 5, "IdTiers", t->pt_siret);
	pes_el(ob, 5, "NatIdTiers", "01");
	if (t->pt_ref != NULL)
		pes_el(ob, 5, "RefTiers", t->pt_ref);
	pes_indent(ob, 5);
	obuf_printf(ob, "<CatTiers V=\"%02d\"/>\n", t->pt_cat);
	pes_el(ob, 5, "NatJur", "09");
	pes_el(ob, 5, "TypTiers", "01");
	pes_postal_lines(t->pt_name, l1, l2);
	pes_el(ob, 5, "Nom", l1);
	if (*l2 != '\0')
		pes_el(ob, 5, "ComplNom", l2);
	obuf_str(ob, "\t\t\t\t</InfoTiers>\n\t\t\t\t<Adresse>\n");
	pes_el(ob, 5, "TypAdr", "1");
	pes_postal_lines(t->pt_line, l1, l2);
	pes_el(ob, 5, "Adr2", l1);
	/* Adr3 takes what the street line left over, else the complement. */
	if (t->pt_line2 != NULL && *l2 == '\0')
		pes_postal_lines(t->pt_line2, a1, a2);
	else
		strlcpy(a1, l2, sizeof(a1));
	if (*a1 != '\0')
		pes_el(ob, 5, "Adr3", a1);
	pes_el(ob, 5, "CP", t->pt_postcode);
	pes_postal_lines(t->pt_town, l1, l2);
	pes_el(ob, 5, "Ville", l1);
	pes_el(ob, 5, "CodRes", "0");
	obuf_str(ob, "\t\t\t\t</Adresse>\n\t\t\t</Tiers>\n");
}

static void
pes_write_piece(struct obuf *ob, const struct pes_piece *p, int type)
{
	const struct pes_line	*l;
	char			 amount[32];
	size_t			 i;

	obuf_str(ob, "\t<Piece>\n\t\t<BlocPiece>\n");
	pes_el_int(ob, 3, "IdPce", p->pp_id);
	pes_el(ob, 3, "TypPce", type == PES_BORD_ORDINARY ? "01" : "02");
	pes_el(ob, 3, "NatPce", type == PES_BORD_ORDINARY ? "01" : "06");
	pes_el_text(ob, 3, "ObjPce", p->pp_object, 160);
	obuf_str(ob, "\t\t</BlocPiece>\n");
	for (i = 0; i < p->pp_nlines; i++) {
		l = &p->pp_lines[i];
		obuf_str(ob, "\t\t<LigneDePiece>\n\t\t\t<BlocLignePiece>\n"
		    "\t\t\t\t<InfoLignePiece>\n");
		pes_el_int(ob, 5, "IdLigne", (int64_t)i + 1);
		pes_el_text(ob, 5, "ObjLignePce", l->pl_object, 160);
		pes_el(ob, 5, "CodProdLoc", l->pl_product);
		pes_el(ob, 5, "Nature", l->pl_nature);
		if (l->pl_fonction != NULL)
			pes_el(ob, 5, "Fonction", l->pl_fonction);
		pes_el(ob, 5, "Majo", "0");
		pes_el(ob, 5, "TvaIntraCom", "0");
		pes_amount(amount, sizeof(amount), l->pl_cents);
		pes_el(ob, 5, "MtHT", amount);
		obuf_str(ob, "\t\t\t\t</InfoLignePiece>\n");
		if (type == PES_BORD_REDUCTION) {
			obuf_str(ob, "\t\t\t\t<RattachPiece>\n");
			pes_el(ob, 5, "NatPceOrig", "01");
			pes_el_int(ob, 5, "ExerRat", l->pl_orig_exer);
			pes_el_int(ob, 5, "IdPceOrig", l->pl_orig_piece);
			pes_el_int(ob, 5, "IdLigneOrig", l->pl_orig_line);
			obuf_str(ob, "\t\t\t\t</RattachPiece>\n");
		}
		obuf_str(ob, "\t\t\t</BlocLignePiece>\n");
		/* Each line names its debtor. */
		pes_write_tiers(ob, &p->pp_tiers);
		obuf_str(ob, "\t\t</LigneDePiece>\n");
	}
	obuf_str(ob, "\t</Piece>\n");
}

/* Write a PES_Aller file; see pes.h. */
int
pes_write(const struct pes_header *h, const struct pes_bordereau *b,
    size_t n, char **out, size_t *len, char **cause)
{
	struct obuf			 ob = { 0 };
	const struct pes_bordereau	*bb;
	const struct pes_piece		*p;
	int64_t				 total;
	size_t				 i, j, k;
	char				 amount[32];

	if (pes_check_header(h, cause) == -1)
		return (-1);
	if (n == 0) {
		xasprintf(cause, "a PES file needs at least one bordereau");
		return (-1);
	}
	for (i = 0; i < n; i++) {
		bb = &b[i];
		if (bb->pb_type != PES_BORD_ORDINARY &&
		    bb->pb_type != PES_BORD_REDUCTION) {
			xasprintf(cause, "bordereau %lld: TypBord must be 01 or "
			    "02", (long long)bb->pb_id);
			return (-1);
		}
		if (bb->pb_id <= 0 || bb->pb_id > 9999999 ||
		    bb->pb_npieces == 0 || bb->pb_npieces > 99999) {
			xasprintf(cause, "bordereau %lld: IdBord must be 1 to "
			    "9999999 and hold 1 to 99999 titres",
			    (long long)bb->pb_id);
			return (-1);
		}
		total = 0;
		for (j = 0; j < bb->pb_npieces; j++) {
			p = &bb->pb_pieces[j];
			if (p->pp_id <= 0 || p->pp_id > 99999999 ||
			    p->pp_nlines == 0 || p->pp_nlines > 999999) {
				xasprintf(cause, "titre %lld: IdPce must be 1 "
				    "to 99999999 and the titre needs lines",
				    (long long)p->pp_id);
				return (-1);
			}
			if (pes_check_tiers(&p->pp_tiers, p->pp_id,
			    cause) == -1)
				return (-1);
			for (k = 0; k < p->pp_nlines; k++) {
				if (pes_check_line(&p->pp_lines[k],
				    bb->pb_type, p->pp_id, k, cause) == -1)
					return (-1);
				total += p->pp_lines[k].pl_cents;
				if (total > PES_MAX_CENTS) {
					xasprintf(cause, "bordereau %lld: "
					    "MtBordHt is over 14 digits",
					    (long long)bb->pb_id);
					return (-1);
				}
			}
		}
		if (bb->pb_cumul < total || bb->pb_cumul > PES_MAX_CENTS) {
			xasprintf(cause, "bordereau %lld: MtCumulAnnuel must "
			    "include the bordereau's own amount",
			    (long long)bb->pb_id);
			return (-1);
		}
	}

	obuf_str(&ob, "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n"
	    "<n:PES_Aller xmlns:n=\"" PES_NS "\">\n"
	    "<Enveloppe>\n\t<Parametres>\n");
	pes_el(&ob, 2, "Version", "2");
	pes_el(&ob, 2, "TypFic", "PESALR1");
	pes_el_text(&ob, 2, "NomFic", h->ph_file, 100);
	obuf_str(&ob, "\t</Parametres>\n\t<Emetteur>\n");
	pes_el_text(&ob, 2, "Sigle", h->ph_sigle, 32);
	pes_el_text(&ob, 2, "Adresse", h->ph_app, 38);
	obuf_str(&ob, "\t</Emetteur>\n</Enveloppe>\n<EnTetePES>\n");
	pes_el(&ob, 1, "DteStr", h->ph_date);
	pes_el(&ob, 1, "IdPost", h->ph_idpost);
	pes_el_text(&ob, 1, "LibellePoste", h->ph_libpost, 38);
	pes_el(&ob, 1, "IdColl", h->ph_idcoll);
	pes_el(&ob, 1, "CodCol", h->ph_codcol);
	pes_el(&ob, 1, "CodBud", h->ph_codbud);
	pes_el_text(&ob, 1, "LibelleColBud", h->ph_libcolbud, 38);
	obuf_str(&ob, "</EnTetePES>\n<PES_RecetteAller>\n<EnTeteRecette>\n");
	pes_el(&ob, 1, "IdVer", "2");
	pes_el(&ob, 1, "InfoDematerialisee", h->ph_demat ? "1" : "0");
	obuf_str(&ob, "</EnTeteRecette>\n");
	for (i = 0; i < n; i++) {
		bb = &b[i];
		total = 0;
		for (j = 0; j < bb->pb_npieces; j++)
			for (k = 0; k < bb->pb_pieces[j].pp_nlines; k++)
				total += bb->pb_pieces[j].pp_lines[k].pl_cents;
		/* An xs:ID, unique in the file: what a signature refers to. */
		obuf_printf(&ob, "<Bordereau Id=\"BORD_%04d_%02d_%lld\">\n"
		    "\t<BlocBordereau>\n", h->ph_exer, bb->pb_type,
		    (long long)bb->pb_id);
		pes_el_int(&ob, 2, "Exer", h->ph_exer);
		pes_el_int(&ob, 2, "IdBord", bb->pb_id);
		pes_el(&ob, 2, "DteBordEm", h->ph_date);
		pes_el(&ob, 2, "TypBord", bb->pb_type == PES_BORD_ORDINARY ?
		    "01" : "02");
		pes_el_int(&ob, 2, "NbrPce", (int64_t)bb->pb_npieces);
		pes_amount(amount, sizeof(amount), bb->pb_cumul);
		pes_el(&ob, 2, "MtCumulAnnuel", amount);
		pes_amount(amount, sizeof(amount), total);
		pes_el(&ob, 2, "MtBordHt", amount);
		obuf_str(&ob, "\t</BlocBordereau>\n");
		for (j = 0; j < bb->pb_npieces; j++)
			pes_write_piece(&ob, &bb->pb_pieces[j], bb->pb_type);
		obuf_str(&ob, "</Bordereau>\n");
	}
	obuf_str(&ob, "</PES_RecetteAller>\n</n:PES_Aller>\n");
	*out = obuf_take(&ob, len);
	return (0);
}
