/*
 * From a closed period's statements to titres de recettes (PES V2).
 *
 * Each member's statement gives at most one ordinary titre (TypBord 01)
 * and reductions (TypBord 02) of titres already sent:
 *
 * - a negative line that corrects a period whose statement was titled in
 *   the same fiscal year (an adjustment naming the period, a late-usage
 *   correction naming the statement) reduces that titre, line by line,
 *   never below zero;
 * - every other line goes to the ordinary titre, grouped by product code
 *   and account (one titre line per service) or one titre line per
 *   statement line, as configured; negative lines are netted against the
 *   largest positive ones, since a titre line is never negative;
 * - what is still a credit after that reduces the member's latest titres
 *   of the year; what remains (no titre left to reduce) is reported, not
 *   titled.
 *
 * So that the ordinary titres minus the reductions equal the statements
 * plus the reported credits, which the export checks before it numbers
 * anything. Numbers (file, bordereaux per type, titres) follow on from the
 * fiscal year's last ones and are stored with the file itself in the
 * transaction that records the export; exporting the period again returns
 * the stored file, byte for byte. The work (reading one snapshot,
 * planning, writing the file) runs on the thread pool; only the recording
 * holds the loop thread.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "members/members.h"
#include "billing.h"
#include "pes.h"
#include "titre.h"

#define TITRE_KEY_MAX		48
#define TITRE_LABEL_MAX		160

/* One entry of tc_products. */
struct tmap {
	char	 m_key[TITRE_KEY_MAX];
	char	 m_product[5];
	char	 m_nature[13];
};

/* A statement line. */
struct tline {
	char	*l_type;
	char	*l_class;	/* NULL if none */
	char	*l_metric;
	char	*l_label;
	char	*l_reason;
	int64_t	 l_cents;
	char	*l_corrects;	/* period, or NULL */
	int64_t	 l_corrects_stmt;
};

/* A statement with what the titre needs of its member. */
struct tstmt {
	int64_t		 s_id;
	int64_t		 s_tenant;
	char		*s_name;
	char		*s_insee;
	char		*s_siren;
	char		*s_kind;
	char		*s_siret;
	char		*s_addr;
	char		*s_postcode;
	char		*s_town;
	char		*s_category;
	int64_t		 s_total;
	struct tline	*s_l;
	size_t		 s_nl;
};

/* A titre line being planned. */
struct tpl {
	char		 p_product[5];
	char		 p_nature[13];
	char		 p_label[TITRE_LABEL_MAX + 1];
	int64_t		 p_cents;
	int64_t		 p_orig_line;	/* reductions */
};

/* A titre being planned. */
struct ttitre {
	int		 t_type;	/* PES_BORD_* */
	size_t		 t_stmt;	/* index into the statements */
	int64_t		 t_number;
	int64_t		 t_orig_exer;
	int64_t		 t_orig_number;
	char		 t_object[TITRE_LABEL_MAX + 1];
	struct tpl	*t_pl;
	size_t		 t_npl;
	int64_t		 t_cents;
};

/* A line of a titre already sent, with what is left of it. */
struct tleft {
	int64_t		 r_number;
	int64_t		 r_line;
	char		 r_product[5];
	char		 r_nature[13];
	int64_t		 r_left;
};

/* A period being titled: read and written on the pool, recorded after. */
struct titre_job {
	sqlite3			*db;
	const struct titre_conf	*conf;
	struct titre_conf	 conf_copy;
	const struct period	*p;
	struct period		 p_copy;
	int			 exer;
	/* The numbers as the snapshot read them, and those allocated. */
	int64_t			 seq;
	int64_t			 first_titre;
	int64_t			 bord[2];
	int64_t			 bcents[2];
	int64_t			 cumul[2];
	size_t			 npieces[2];
	char			 day[16];
	char			 sha[65];
	struct tmap		*maps;
	size_t			 nmaps;
	struct tstmt		*s;
	size_t			 ns;
	struct ttitre		*t;
	size_t			 nt;
	json_t			*missing;
	json_t			*warnings;
	int64_t			 untitled;	/* credits left untitled */
	/* The member being planned: its titres of the year, what is left. */
	struct tleft		*left;
	size_t			 nleft;
	sqlite3_stmt		*st_left;	/* prepared once */
};

static const struct {
	const char	*key;
	const char	*label;
} titre_labels[] = {
	{ "vm",			"Machines virtuelles" },
	{ "mailbox",		"Messagerie" },
	{ "site",		"Sites web" },
	{ "fee",		"Abonnement" },
	{ "contribution",	"Cotisation des membres" },
	{ "adjustment",		"R\xc3\xa9gularisation" },
	{ "late_usage",		"R\xc3\xa9gularisation de consommation" },
};

static const char *const titre_months[] = { "janvier",
    "f\xc3\xa9vrier", "mars", "avril", "mai", "juin", "juillet",
    "ao\xc3\xbbt", "septembre", "octobre", "novembre",
    ("d\xc3\xa9" "cembre") };

static char *
titre_col(sqlite3_stmt *st, int col)
{
	return (sqlite3_column_type(st, col) == SQLITE_NULL ? NULL :
	    xstrdup((const char *)sqlite3_column_text(st, col)));
}

static void
titre_missing(struct titre_job *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
titre_missing(struct titre_job *x, const char *fmt, ...)
{
	va_list	 ap;
	char	*s;
	size_t	 i;
	json_t	*v;

	va_start(ap, fmt);
	xvasprintf(&s, fmt, ap);
	va_end(ap);
	/* Each problem once. */
	json_array_foreach(x->missing, i, v)
		if (strcmp(json_string_value(v), s) == 0) {
			free(s);
			return;
		}
	json_array_append_new(x->missing, json_string(s));
	free(s);
}

/* Parse tc_products; problems go to the missing list. */
static void
titre_maps_parse(struct titre_job *x)
{
	const char	*s = x->conf->tc_products ? x->conf->tc_products : "";
	char		*copy, *tok, *save = NULL, *eq, *colon;
	struct tmap	*m;

	copy = xstrdup(s);
	for (tok = strtok_r(copy, " \t,", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t,", &save)) {
		if ((eq = strchr(tok, '=')) == NULL ||
		    (colon = strchr(eq, ':')) == NULL || eq == tok) {
			titre_missing(x, "accounting: products: '%.64s' is not "
			    "KEY=PRODUCT:NATURE", tok);
			continue;
		}
		*eq = *colon = '\0';
		if (strlen(tok) >= TITRE_KEY_MAX || strlen(eq + 1) == 0 ||
		    strlen(eq + 1) > 4 || strspn(eq + 1, "0123456789"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") !=
		    strlen(eq + 1) || strlen(colon + 1) == 0 ||
		    strlen(colon + 1) > 12 || colon[1] == '0' ||
		    strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
			titre_missing(x, "accounting: products: %.47s: the "
			    "product code must be 1 to 4 letters or digits and "
			    "the account (Nature) 1 to 12 digits", tok);
			continue;
		}
		x->maps = xrealloc(x->maps, (x->nmaps + 1) * sizeof(*x->maps));
		m = &x->maps[x->nmaps++];
		strlcpy(m->m_key, tok, sizeof(m->m_key));
		strlcpy(m->m_product, eq + 1, sizeof(m->m_product));
		strlcpy(m->m_nature, colon + 1, sizeof(m->m_nature));
	}
	free(copy);
}

static const struct tmap *
titre_map_key(const struct titre_job *x, const char *key)
{
	size_t	 i;

	if (key == NULL)
		return (NULL);
	for (i = 0; i < x->nmaps; i++)
		if (strcmp(x->maps[i].m_key, key) == 0)
			return (&x->maps[i]);
	return (NULL);
}

/* The product of a line: its metric, service, type, else "*". */
static const struct tmap *
titre_map(struct titre_job *x, const struct tline *l)
{
	const struct tmap	*m;

	if ((m = titre_map_key(x, l->l_metric)) != NULL ||
	    (m = titre_map_key(x, l->l_class)) != NULL ||
	    (m = titre_map_key(x, l->l_type)) != NULL ||
	    (m = titre_map_key(x, "*")) != NULL)
		return (m);
	titre_missing(x, "accounting: products has no product code and "
	    "account for %s lines (%s%s%s, %s or *)", l->l_type, l->l_metric,
	    l->l_class ? ", " : "", l->l_class ? l->l_class : "", l->l_type);
	return (NULL);
}

/* The label of a service in a titre line. */
static const char *
titre_service_label(const struct tline *l)
{
	const char	*key = l->l_class != NULL ? l->l_class : l->l_type;
	size_t		 i;

	for (i = 0; i < nitems(titre_labels); i++)
		if (strcmp(titre_labels[i].key, key) == 0)
			return (titre_labels[i].label);
	return (l->l_label);
}

/* Append a label to a titre line's ("A, B"), once. */
static void
titre_label_add(struct tpl *pl, const char *label)
{
	size_t	 n = strlen(pl->p_label);
	char	*found = strstr(pl->p_label, label);

	if (found != NULL && (found == pl->p_label || found[-1] == ' ') &&
	    (found[strlen(label)] == '\0' || found[strlen(label)] == ','))
		return;
	if (n > 0 && n + 2 < sizeof(pl->p_label))
		strlcpy(pl->p_label + n, ", ", sizeof(pl->p_label) - n);
	n = strlen(pl->p_label);
	strlcpy(pl->p_label + n, label, sizeof(pl->p_label) - n);
}

static void
titre_period_text(const struct period *p, char *buf, size_t len)
{
	const char	*l = p->p_label;

	if (strlen(l) == 7 && l[4] == '-')
		snprintf(buf, len, "%s %.4s", titre_months[atoi(l + 5) - 1],
		    l);
	else if (strlen(l) == 7 && l[5] == 'Q')
		snprintf(buf, len, "T%c %.4s", l[6], l);
	else
		snprintf(buf, len, "%s", l);
}

static void
titre_stmts_free(struct titre_job *x)
{
	struct tstmt	*s;
	size_t		 i, j;

	for (i = 0; i < x->ns; i++) {
		s = &x->s[i];
		free(s->s_name);
		free(s->s_insee);
		free(s->s_siren);
		free(s->s_kind);
		free(s->s_siret);
		free(s->s_addr);
		free(s->s_postcode);
		free(s->s_town);
		free(s->s_category);
		for (j = 0; j < s->s_nl; j++) {
			free(s->s_l[j].l_type);
			free(s->s_l[j].l_class);
			free(s->s_l[j].l_metric);
			free(s->s_l[j].l_label);
			free(s->s_l[j].l_reason);
			free(s->s_l[j].l_corrects);
		}
		free(s->s_l);
	}
	free(x->s);
	for (i = 0; i < x->nt; i++)
		free(x->t[i].t_pl);
	free(x->t);
	free(x->maps);
	free(x->left);
	sqlite3_finalize(x->st_left);
}

/* The period's statements and lines, in id and line order. */
static void
titre_load(struct titre_job *x)
{
	sqlite3_stmt	*st, *sl;
	struct tstmt	*s;
	struct tline	*l;

	st = store_prepare(x->db, "SELECT s.id, s.tenant_id, s.member_name, "
	    "s.insee, s.siren, s.member_kind, t.siret, t.address, t.postcode, "
	    "t.town, t.accounting_category, s.total_cents FROM statements s "
	    "JOIN tenants t ON t.id = s.tenant_id WHERE s.period = ? "
	    "ORDER BY s.id");
	sl = store_prepare(x->db, "SELECT type, class, metric, label, reason, "
	    "amount_cents, corrects_period, corrects_statement FROM "
	    "statement_lines WHERE statement_id = ? ORDER BY seq");
	sqlite3_bind_text(st, 1, x->p->p_label, -1, SQLITE_STATIC);
	while (store_step(st) == SQLITE_ROW) {
		x->s = xrealloc(x->s, (x->ns + 1) * sizeof(*x->s));
		s = &x->s[x->ns++];
		memset(s, 0, sizeof(*s));
		s->s_id = sqlite3_column_int64(st, 0);
		s->s_tenant = sqlite3_column_int64(st, 1);
		s->s_name = titre_col(st, 2);
		s->s_insee = titre_col(st, 3);
		s->s_siren = titre_col(st, 4);
		s->s_kind = titre_col(st, 5);
		s->s_siret = titre_col(st, 6);
		s->s_addr = titre_col(st, 7);
		s->s_postcode = titre_col(st, 8);
		s->s_town = titre_col(st, 9);
		s->s_category = titre_col(st, 10);
		s->s_total = sqlite3_column_int64(st, 11);
		sqlite3_reset(sl);
		sqlite3_bind_int64(sl, 1, s->s_id);
		while (store_step(sl) == SQLITE_ROW) {
			s->s_l = xrealloc(s->s_l, (s->s_nl + 1) *
			    sizeof(*s->s_l));
			l = &s->s_l[s->s_nl++];
			l->l_type = titre_col(sl, 0);
			l->l_class = titre_col(sl, 1);
			l->l_metric = titre_col(sl, 2);
			l->l_label = titre_col(sl, 3);
			l->l_reason = titre_col(sl, 4);
			l->l_cents = sqlite3_column_int64(sl, 5);
			l->l_corrects = titre_col(sl, 6);
			l->l_corrects_stmt = sqlite3_column_type(sl, 7) ==
			    SQLITE_NULL ? 0 : sqlite3_column_int64(sl, 7);
		}
	}
	sqlite3_finalize(st);
	sqlite3_finalize(sl);
}

/*
 * The titre a negative correction line reduces: the ordinary titre of
 * the statement it corrects. 0 if that statement was never titled.
 */
static int
titre_corrected(struct titre_job *x, const struct tstmt *s, const struct tline *l,
    int64_t *exer, int64_t *number)
{
	sqlite3_stmt	*st;
	int64_t		 stmt = l->l_corrects_stmt;
	int		 found = 0;

	if (l->l_cents >= 0 || (strcmp(l->l_type, "adjustment") != 0 &&
	    strcmp(l->l_type, "late_usage") != 0))
		return (0);
	if (stmt == 0 && l->l_corrects != NULL) {
		st = store_prepare(x->db, "SELECT id FROM statements WHERE "
		    "tenant_id = ? AND period = ?");
		sqlite3_bind_int64(st, 1, s->s_tenant);
		sqlite3_bind_text(st, 2, l->l_corrects, -1, SQLITE_STATIC);
		if (store_step(st) == SQLITE_ROW)
			stmt = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	if (stmt == 0)
		return (0);
	st = store_prepare(x->db, "SELECT exer, number FROM pes_titres WHERE "
	    "statement_id = ? AND type = 1");
	sqlite3_bind_int64(st, 1, stmt);
	if (store_step(st) == SQLITE_ROW) {
		*exer = sqlite3_column_int64(st, 0);
		*number = sqlite3_column_int64(st, 1);
		found = 1;
	}
	sqlite3_finalize(st);
	return (found);
}

/*
 * What is left of the member's ordinary titres of the year, line by
 * line, newest titre first: what later reductions can take.
 */
static void
titre_left_load(struct titre_job *x, int64_t tenant)
{
	sqlite3_stmt	*st;
	struct tleft	*r;

	x->nleft = 0;
	if ((st = x->st_left) != NULL) {
		sqlite3_reset(st);
		goto bind;
	}
	st = x->st_left = store_prepare(x->db, "SELECT t.number, l.line, "
	    "l.product, "
	    "l.nature, l.amount_cents - coalesce((SELECT sum(rl.amount_cents) "
	    "FROM pes_titres rt JOIN pes_titre_lines rl ON rl.exer = rt.exer "
	    "AND rl.number = rt.number WHERE rt.orig_exer = t.exer AND "
	    "rt.orig_number = t.number AND rl.orig_line = l.line), 0) FROM "
	    "pes_titres t JOIN pes_titre_lines l ON l.exer = t.exer AND "
	    "l.number = t.number WHERE t.tenant_id = ? AND t.exer = ? AND "
	    "t.type = 1 ORDER BY t.number DESC, l.line");
bind:
	sqlite3_bind_int64(st, 1, tenant);
	sqlite3_bind_int(st, 2, x->exer);
	while (store_step(st) == SQLITE_ROW) {
		x->left = xrealloc(x->left, (x->nleft + 1) * sizeof(*x->left));
		r = &x->left[x->nleft++];
		r->r_number = sqlite3_column_int64(st, 0);
		r->r_line = sqlite3_column_int64(st, 1);
		strlcpy(r->r_product, (const char *)sqlite3_column_text(st, 2),
		    sizeof(r->r_product));
		strlcpy(r->r_nature, (const char *)sqlite3_column_text(st, 3),
		    sizeof(r->r_nature));
		r->r_left = sqlite3_column_int64(st, 4);
	}
}

/* The planned reduction of titre number for statement si (made if new). */
static struct ttitre *
titre_reduction(struct titre_job *x, size_t si, int64_t number, const char *why)
{
	struct ttitre	*t;
	size_t		 i;

	for (i = 0; i < x->nt; i++)
		if (x->t[i].t_type == PES_BORD_REDUCTION &&
		    x->t[i].t_stmt == si && x->t[i].t_orig_number == number)
			return (&x->t[i]);
	x->t = xrealloc(x->t, (x->nt + 1) * sizeof(*x->t));
	t = &x->t[x->nt++];
	memset(t, 0, sizeof(*t));
	t->t_type = PES_BORD_REDUCTION;
	t->t_stmt = si;
	t->t_orig_exer = x->exer;
	t->t_orig_number = number;
	snprintf(t->t_object, sizeof(t->t_object), "R\xc3\xa9" "duction du "
	    "titre %lld de %d%s%.100s", (long long)number, x->exer,
	    why != NULL && *why != '\0' ? " : " : "", why ? why : "");
	return (t);
}

/* Add cents to a reduction's line for original line r. */
static void
titre_reduce_line(struct ttitre *t, const struct tleft *r, int64_t cents)
{
	struct tpl	*pl;
	size_t		 i;

	for (i = 0; i < t->t_npl; i++)
		if (t->t_pl[i].p_orig_line == r->r_line) {
			t->t_pl[i].p_cents += cents;
			t->t_cents += cents;
			return;
		}
	t->t_pl = xrealloc(t->t_pl, (t->t_npl + 1) * sizeof(*t->t_pl));
	pl = &t->t_pl[t->t_npl++];
	memset(pl, 0, sizeof(*pl));
	strlcpy(pl->p_product, r->r_product, sizeof(pl->p_product));
	strlcpy(pl->p_nature, r->r_nature, sizeof(pl->p_nature));
	snprintf(pl->p_label, sizeof(pl->p_label), "R\xc3\xa9" "duction de la "
	    "ligne %lld du titre %lld", (long long)r->r_line,
	    (long long)r->r_number);
	pl->p_orig_line = r->r_line;
	pl->p_cents = cents;
	t->t_cents += cents;
}

/*
 * Reduce titre number (0: the member's titres, newest first) by cents,
 * taking first from lines of product (if not NULL). What could not be
 * reduced.
 */
static int64_t
titre_reduce(struct titre_job *x, size_t si, int64_t number, const char *product,
    int64_t cents, const char *why)
{
	struct tleft	*r;
	int64_t		 take;
	size_t		 i;
	int		 pass;

	for (pass = 0; pass < 2 && cents > 0; pass++) {
		for (i = 0; i < x->nleft && cents > 0; i++) {
			r = &x->left[i];
			if (r->r_left <= 0 || (number != 0 &&
			    r->r_number != number) || (pass == 0 &&
			    (product == NULL || strcmp(r->r_product,
			    product) != 0)))
				continue;
			take = cents < r->r_left ? cents : r->r_left;
			titre_reduce_line(titre_reduction(x, si, r->r_number,
			    why), r, take);
			r->r_left -= take;
			cents -= take;
		}
	}
	return (cents);
}

/*
 * Net negative lines against the largest positive ones (a titre line is
 * never negative); drop the lines left at zero. The credit left over.
 */
static int64_t
titre_net(struct tpl *pl, size_t *n)
{
	int64_t	 credit = 0, need, take;
	size_t	 i, j, best, k;

	for (i = 0; i < *n; i++) {
		if (pl[i].p_cents >= 0)
			continue;
		need = -pl[i].p_cents;
		pl[i].p_cents = 0;
		while (need > 0) {
			best = *n;
			for (j = 0; j < *n; j++)
				if (pl[j].p_cents > 0 && (best == *n ||
				    pl[j].p_cents > pl[best].p_cents))
					best = j;
			if (best == *n)
				break;
			take = need < pl[best].p_cents ? need :
			    pl[best].p_cents;
			pl[best].p_cents -= take;
			need -= take;
		}
		credit += need;
	}
	for (i = k = 0; i < *n; i++)
		if (pl[i].p_cents > 0)
			pl[k++] = pl[i];
	*n = k;
	return (credit);
}

/* Plan the titres of statement si. */
static void
titre_plan(struct titre_job *x, size_t si)
{
	const struct tstmt	*s = &x->s[si];
	const struct tline	*l;
	const struct tmap	*m;
	struct tpl		*pl = NULL;
	struct ttitre		*t;
	int64_t			 exer, number, rest, credit;
	size_t			 i, j, npl = 0;
	char			 when[48];
	int			 by_service;

	by_service = x->conf->tc_lines == NULL ||
	    strcmp(x->conf->tc_lines, "statement") != 0;
	titre_left_load(x, s->s_tenant);
	for (i = 0; i < s->s_nl; i++) {
		l = &s->s_l[i];
		if (l->l_cents == 0)
			continue;
		m = titre_map(x, l);
		rest = l->l_cents;
		if (titre_corrected(x, s, l, &exer, &number)) {
			if (exer == x->exer)
				rest = -titre_reduce(x, si, number, m ?
				    m->m_product : NULL, -l->l_cents,
				    l->l_reason);
			else
				json_array_append_new(x->warnings,
				    json_pack("{s:I,s:s,s:I,s:I,s:s}", "tenant",
				    (json_int_t)s->s_tenant, "member", s->s_name,
				    "statement", (json_int_t)s->s_id, "titre",
				    (json_int_t)number, "message", "the titre "
				    "corrected is of an earlier fiscal year (a "
				    "reduction there is a mandat on account 673): "
				    "the credit is netted on this period's "
				    "titre"));
			if (rest == 0)
				continue;
		}
		if (m == NULL)
			continue;
		/* The titre line: its service's, or the statement line's. */
		for (j = 0; by_service && j < npl; j++)
			if (strcmp(pl[j].p_product, m->m_product) == 0 &&
			    strcmp(pl[j].p_nature, m->m_nature) == 0)
				break;
		if (!by_service || j == npl) {
			pl = xrealloc(pl, (npl + 1) * sizeof(*pl));
			memset(&pl[npl], 0, sizeof(*pl));
			strlcpy(pl[npl].p_product, m->m_product,
			    sizeof(pl[npl].p_product));
			strlcpy(pl[npl].p_nature, m->m_nature,
			    sizeof(pl[npl].p_nature));
			j = npl++;
		}
		titre_label_add(&pl[j], by_service ? titre_service_label(l) :
		    l->l_label);
		pl[j].p_cents += rest;
	}
	credit = titre_net(pl, &npl);
	if (npl > 0) {
		x->t = xrealloc(x->t, (x->nt + 1) * sizeof(*x->t));
		t = &x->t[x->nt++];
		memset(t, 0, sizeof(*t));
		t->t_type = PES_BORD_ORDINARY;
		t->t_stmt = si;
		t->t_pl = pl;
		t->t_npl = npl;
		for (j = 0; j < npl; j++)
			t->t_cents += pl[j].p_cents;
		titre_period_text(x->p, when, sizeof(when));
		snprintf(t->t_object, sizeof(t->t_object), "%.100s %s (relev"
		    "\xc3\xa9 %lld)", x->conf->tc_object != NULL &&
		    *x->conf->tc_object != '\0' ? x->conf->tc_object :
		    "Services num\xc3\xa9riques", when, (long long)s->s_id);
		pl = NULL;
	}
	free(pl);
	if (credit > 0)
		credit = titre_reduce(x, si, 0, NULL, credit, "avoir");
	if (credit > 0) {
		x->untitled += credit;
		json_array_append_new(x->warnings, json_pack("{s:I,s:s,s:I,"
		    "s:I,s:s}", "tenant", (json_int_t)s->s_tenant, "member",
		    s->s_name, "statement", (json_int_t)s->s_id, "credit_cents",
		    (json_int_t)credit, "message", "a credit with no titre of "
		    "the year left to reduce: not titled"));
	}
}

/* CatTiers of a member: its accounting category (set, or its kind's). */
static int
titre_cat(const struct tstmt *s)
{
	static const struct {
		const char	*name;
		int		 cat;
	} cats[] = {
		{ "commune", PES_CAT_COMMUNE },
		{ "groupement", PES_CAT_GROUPEMENT },
		{ "ccas", PES_CAT_CCAS },
		{ "department", PES_CAT_DEPARTMENT },
		{ "region", PES_CAT_REGION },
	};
	const char	*c = tenants_category(s->s_kind, s->s_category);
	size_t		 i;

	for (i = 0; i < nitems(cats); i++)
		if (strcmp(cats[i].name, c) == 0)
			return (cats[i].cat);
	return (PES_CAT_PUBLIC_OTHER);
}

/* Does a name or address line keep something in the postal norm? */
static int
titre_postal_ok(const char *s)
{
	char	 buf[8];

	if (s == NULL)
		return (0);
	pes_postal(s, buf, sizeof(buf));
	return (buf[0] != '\0');
}

/* What the configuration and the debtors lack; into x->missing. */
static void
titre_check(struct titre_job *x)
{
	const struct titre_conf	*c = x->conf;
	const struct tstmt	*s;
	size_t			 i, j;
	char			 who[200];
	int			 titled;

	if (c->tc_siret == NULL || *c->tc_siret == '\0')
		titre_missing(x, "accounting: siret (IdColl, the OPSN's "
		    "SIRET) is not set");
	else if (!tenants_siret_ok(c->tc_siret))
		titre_missing(x, "accounting: siret %.20s is not a valid SIRET",
		    c->tc_siret);
	if (c->tc_poste == NULL || *c->tc_poste == '\0')
		titre_missing(x, "accounting: poste (IdPost, the codique of the "
		    "poste comptable) is not set");
	if (c->tc_collectivity == NULL || *c->tc_collectivity == '\0')
		titre_missing(x, "accounting: collectivity (CodCol) is not set");
	if (c->tc_budget == NULL || *c->tc_budget == '\0')
		titre_missing(x, "accounting: budget (CodBud) is not set");
	for (i = 0; i < x->ns; i++) {
		s = &x->s[i];
		/* A debtor: a titre planned, or lines a titre would hold. */
		for (j = titled = 0; j < x->nt && !titled; j++)
			titled = x->t[j].t_stmt == i;
		for (j = 0; j < s->s_nl && !titled; j++)
			titled = s->s_l[j].l_cents != 0;
		if (!titled)
			continue;
		snprintf(who, sizeof(who), "member %s %.120s (tenant %lld)",
		    s->s_insee != NULL ? s->s_insee : (s->s_siren ?
		    s->s_siren : "-"), s->s_name, (long long)s->s_tenant);
		if (s->s_siret == NULL)
			titre_missing(x, "%s: no SIRET", who);
		else if (!tenants_siret_ok(s->s_siret))
			titre_missing(x, "%s: SIRET %.20s is not valid", who,
			    s->s_siret);
		if (!titre_postal_ok(s->s_name))
			titre_missing(x, "%s: the name has no letter or digit "
			    "for the postal norm", who);
		if (!titre_postal_ok(s->s_addr))
			titre_missing(x, "%s: no address", who);
		if (s->s_postcode == NULL || strlen(s->s_postcode) != 5 ||
		    strspn(s->s_postcode, "0123456789") != 5)
			titre_missing(x, "%s: no postcode", who);
		if (!titre_postal_ok(s->s_town))
			titre_missing(x, "%s: no town", who);
	}
}

/* The next number after the year's last, or first. */
static int64_t
titre_next(sqlite3 *db, const char *sql, int exer, int type, int64_t first)
{
	sqlite3_stmt	*st;
	int64_t		 n = 0;

	st = store_prepare(db, sql);
	sqlite3_bind_int(st, 1, exer);
	if (type != 0)
		sqlite3_bind_int(st, 2, type);
	if (store_step(st) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL)
		n = sqlite3_column_int64(st, 0) + 1;
	sqlite3_finalize(st);
	return (n > 0 ? n : (first > 0 ? first : 1));
}

/* The local day (YYYY-MM-DD) of instant now, in the operator's zone. */
static void
titre_local_day(int64_t now, char *buf, size_t len)
{
	struct tm	 tm;

	calendar_local(now, &tm);
	strftime(buf, len, "%Y-%m-%d", &tm);
}

static void
titre_sha256(const char *data, size_t len, char out[65])
{
	unsigned char	 md[32];
	unsigned int	 mdlen = sizeof(md);

	EVP_Digest(data, len, md, &mdlen, util_sha256(), NULL);
	util_hex(md, 32, out);
}

/* A stored export, if the period has one. */
static int
titre_stored(sqlite3 *db, const char *period, struct titre_file *f)
{
	sqlite3_stmt	*st;
	int		 found = 0;

	st = store_prepare(db, "SELECT content, name, summary FROM "
	    "pes_exports WHERE period = ?");
	sqlite3_bind_text(st, 1, period, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW) {
		f->tf_len = (size_t)sqlite3_column_bytes(st, 0);
		f->tf_content = xmalloc(f->tf_len + 1);
		if (f->tf_len > 0)
			memcpy(f->tf_content, sqlite3_column_blob(st, 0),
			    f->tf_len);
		f->tf_content[f->tf_len] = '\0';
		f->tf_name = xstrdup((const char *)sqlite3_column_text(st, 1));
		f->tf_summary = json_loads((const char *)
		    sqlite3_column_text(st, 2), 0, NULL);
		found = 1;
	}
	sqlite3_finalize(st);
	return (found);
}

/* Record the numbers and the file; -1 with *cause. */
static int
titre_record(struct titre_job *x, const struct titre_file *f,
    const char *who, int64_t now, char **cause)
{
	const int64_t	*bord = x->bord, *bcents = x->bcents;
	const int64_t	*cumul = x->cumul;
	const size_t	*npieces = x->npieces;
	sqlite3_stmt	*st = NULL, *sl = NULL;
	const struct ttitre *t;
	int64_t		 export_id;
	char		*summary;
	size_t		 i, j;
	int		 k, rc;

	summary = json_dumps(f->tf_summary, JSON_COMPACT | JSON_SORT_KEYS);
	st = store_prepare(x->db, "INSERT INTO pes_exports (period, exer, seq, "
	    "name, day, content, sha256, summary, created_at, created_by) "
	    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
	sqlite3_bind_text(st, 1, x->p->p_label, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, x->exer);
	sqlite3_bind_int64(st, 3, x->seq);
	sqlite3_bind_text(st, 4, f->tf_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, x->day, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 6, f->tf_content, (int)f->tf_len,
	    SQLITE_STATIC);
	sqlite3_bind_text(st, 7, x->sha, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, summary, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, now);
	sqlite3_bind_text(st, 10, who, -1, SQLITE_STATIC);
	rc = store_step(st);
	sqlite3_finalize(st);
	st = NULL;
	free(summary);
	if (rc != SQLITE_DONE)
		goto fail;
	export_id = sqlite3_last_insert_rowid(x->db);
	for (k = 0; k < 2; k++) {
		if (npieces[k] == 0)
			continue;
		st = store_prepare(x->db, "INSERT INTO pes_bordereaux (exer, "
		    "type, number, export_id, pieces, amount_cents, "
		    "cumul_cents) VALUES (?, ?, ?, ?, ?, ?, ?)");
		sqlite3_bind_int(st, 1, x->exer);
		sqlite3_bind_int(st, 2, k + 1);
		sqlite3_bind_int64(st, 3, bord[k]);
		sqlite3_bind_int64(st, 4, export_id);
		sqlite3_bind_int64(st, 5, (int64_t)npieces[k]);
		sqlite3_bind_int64(st, 6, bcents[k]);
		sqlite3_bind_int64(st, 7, cumul[k]);
		rc = store_step(st);
		sqlite3_finalize(st);
		st = NULL;
		if (rc != SQLITE_DONE)
			goto fail;
	}
	st = store_prepare(x->db, "INSERT INTO pes_titres (exer, number, type, "
	    "bordereau, export_id, statement_id, tenant_id, amount_cents, "
	    "orig_exer, orig_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
	sl = store_prepare(x->db, "INSERT INTO pes_titre_lines (exer, number, "
	    "line, product, nature, label, amount_cents, orig_line) VALUES "
	    "(?, ?, ?, ?, ?, ?, ?, ?)");
	for (i = 0; i < x->nt; i++) {
		t = &x->t[i];
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		sqlite3_bind_int(st, 1, x->exer);
		sqlite3_bind_int64(st, 2, t->t_number);
		sqlite3_bind_int(st, 3, t->t_type);
		sqlite3_bind_int64(st, 4, bord[t->t_type - 1]);
		sqlite3_bind_int64(st, 5, export_id);
		sqlite3_bind_int64(st, 6, x->s[t->t_stmt].s_id);
		sqlite3_bind_int64(st, 7, x->s[t->t_stmt].s_tenant);
		sqlite3_bind_int64(st, 8, t->t_cents);
		if (t->t_type == PES_BORD_REDUCTION) {
			sqlite3_bind_int64(st, 9, t->t_orig_exer);
			sqlite3_bind_int64(st, 10, t->t_orig_number);
		}
		if (store_step(st) != SQLITE_DONE)
			goto fail;
		for (j = 0; j < t->t_npl; j++) {
			sqlite3_reset(sl);
			sqlite3_clear_bindings(sl);
			sqlite3_bind_int(sl, 1, x->exer);
			sqlite3_bind_int64(sl, 2, t->t_number);
			sqlite3_bind_int64(sl, 3, (int64_t)j + 1);
			sqlite3_bind_text(sl, 4, t->t_pl[j].p_product, -1,
			    SQLITE_STATIC);
			sqlite3_bind_text(sl, 5, t->t_pl[j].p_nature, -1,
			    SQLITE_STATIC);
			sqlite3_bind_text(sl, 6, t->t_pl[j].p_label, -1,
			    SQLITE_STATIC);
			sqlite3_bind_int64(sl, 7, t->t_pl[j].p_cents);
			if (t->t_type == PES_BORD_REDUCTION)
				sqlite3_bind_int64(sl, 8,
				    t->t_pl[j].p_orig_line);
			if (store_step(sl) != SQLITE_DONE)
				goto fail;
		}
	}
	sqlite3_finalize(st);
	sqlite3_finalize(sl);
	return (0);
fail:
	sqlite3_finalize(st);
	sqlite3_finalize(sl);
	xasprintf(cause, "recording the PES export of %s: %s", x->p->p_label,
	    sqlite3_errmsg(x->db));
	return (-1);
}

/* Number the planned titres, write the file and record it. */
/*
 * The numbers the titres get if they are recorded now: each series goes
 * on from the exercise's last (or the configured first).
 */
static void
titre_number_base(struct titre_job *x, int64_t *seq, int64_t *next,
    int64_t bord[2], int64_t cumul[2])
{
	sqlite3_stmt	*st;
	int		 k;

	*seq = titre_next(x->db, "SELECT max(seq) FROM pes_exports WHERE "
	    "exer = ?", x->exer, 0, 1);
	*next = titre_next(x->db, "SELECT max(number) FROM pes_titres WHERE "
	    "exer = ?", x->exer, 0, x->conf->tc_first_titre);
	for (k = 0; k < 2; k++) {
		bord[k] = titre_next(x->db, "SELECT max(number) FROM "
		    "pes_bordereaux WHERE exer = ? AND type = ?", x->exer,
		    k + 1, x->conf->tc_first_bordereau);
		cumul[k] = 0;
		st = store_prepare(x->db, "SELECT coalesce(sum(amount_cents), "
		    "0) FROM pes_bordereaux WHERE exer = ? AND type = ?");
		sqlite3_bind_int(st, 1, x->exer);
		sqlite3_bind_int(st, 2, k + 1);
		if (store_step(st) == SQLITE_ROW)
			cumul[k] = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
}

/* Number the planned titres and write the file, summary and digest. */
static int
titre_render(struct titre_job *x, int64_t now, struct titre_file *f,
    int *status, char **cause)
{
	const struct titre_conf	*c = x->conf;
	struct pes_header	 h;
	struct pes_bordereau	 b[2];
	struct pes_piece	*pieces[2] = { NULL, NULL };
	struct pes_line		*lines = NULL;
	struct ttitre		*t;
	struct tstmt		*s;
	struct pes_piece	*pp;
	int64_t			*bord = x->bord, *cumul = x->cumul;
	int64_t			*bcents = x->bcents, next;
	int64_t			 ordinary = 0, reduced = 0, stmts = 0;
	size_t			*npieces = x->npieces, nlines = 0, i, j, nb;
	size_t			 cnt[2] = { 0, 0 };
	char			*day = x->day, app[64];
	json_t			*jb, *jt;
	int			 k, rv = -1;

	for (i = 0; i < x->ns; i++)
		stmts += x->s[i].s_total;
	for (i = 0; i < x->nt; i++) {
		if (x->t[i].t_type == PES_BORD_ORDINARY)
			ordinary += x->t[i].t_cents;
		else
			reduced += x->t[i].t_cents;
		nlines += x->t[i].t_npl;
	}
	/* The titres say what the statements say. */
	if (ordinary - reduced != stmts + x->untitled) {
		*status = BILLING_EINTERNAL;
		xasprintf(cause, "titres of %s: %lld - %lld cents differ from "
		    "the statements' %lld + %lld untitled", x->p->p_label,
		    (long long)ordinary, (long long)reduced, (long long)stmts,
		    (long long)x->untitled);
		return (-1);
	}
	if (x->nt == 0) {
		*status = BILLING_ECONFLICT;
		xasprintf(cause, "%s has nothing to title: every statement is "
		    "zero", x->p->p_label);
		return (-1);
	}
	titre_local_day(now, day, sizeof(x->day));
	titre_number_base(x, &x->seq, &next, bord, cumul);
	x->first_titre = next;
	/* Ordinary titres first, in statement order, then reductions. */
	for (k = 0; k < 2; k++) {
		bcents[k] = 0;
		npieces[k] = 0;
		for (i = 0; i < x->nt; i++) {
			if (x->t[i].t_type != k + 1)
				continue;
			x->t[i].t_number = next++;
			bcents[k] += x->t[i].t_cents;
			npieces[k]++;
		}
		cumul[k] += bcents[k];
	}

	memset(&h, 0, sizeof(h));
	xasprintf(&f->tf_name, "PESALR1_%s_%d_%04lld.xml", c->tc_siret,
	    x->exer, (long long)x->seq);
	snprintf(app, sizeof(app), "opsn-controller %s", OPSN_VERSION);
	h.ph_file = f->tf_name;
	h.ph_sigle = "opsn";
	h.ph_app = app;
	h.ph_date = day;
	h.ph_exer = x->exer;
	h.ph_demat = c->tc_signed;
	h.ph_idpost = c->tc_poste;
	h.ph_libpost = c->tc_poste_label != NULL && *c->tc_poste_label ?
	    c->tc_poste_label : NULL;
	h.ph_idcoll = c->tc_siret;
	h.ph_codcol = c->tc_collectivity;
	h.ph_codbud = c->tc_budget;
	h.ph_libcolbud = c->tc_budget_label != NULL && *c->tc_budget_label ?
	    c->tc_budget_label : NULL;
	lines = xcalloc(nlines + 1, sizeof(*lines));
	nlines = 0;
	for (k = 0; k < 2; k++)
		pieces[k] = xcalloc(npieces[k] + 1, sizeof(*pieces[k]));
	for (i = 0; i < x->nt; i++) {
		t = &x->t[i];
		s = &x->s[t->t_stmt];
		k = t->t_type - 1;
		pp = &pieces[k][cnt[k]++];
		pp->pp_id = t->t_number;
		pp->pp_object = t->t_object;
		pp->pp_tiers.pt_siret = s->s_siret;
		pp->pp_tiers.pt_cat = titre_cat(s);
		pp->pp_tiers.pt_ref = s->s_insee != NULL ? s->s_insee :
		    s->s_siren;
		pp->pp_tiers.pt_name = s->s_name;
		pp->pp_tiers.pt_line = s->s_addr;
		pp->pp_tiers.pt_postcode = s->s_postcode;
		pp->pp_tiers.pt_town = s->s_town;
		pp->pp_lines = &lines[nlines];
		pp->pp_nlines = t->t_npl;
		for (j = 0; j < t->t_npl; j++) {
			lines[nlines].pl_object = t->t_pl[j].p_label;
			lines[nlines].pl_product = t->t_pl[j].p_product;
			lines[nlines].pl_nature = t->t_pl[j].p_nature;
			lines[nlines].pl_fonction = c->tc_fonction != NULL &&
			    *c->tc_fonction != '\0' ? c->tc_fonction : NULL;
			lines[nlines].pl_cents = t->t_pl[j].p_cents;
			if (t->t_type == PES_BORD_REDUCTION) {
				lines[nlines].pl_orig_exer =
				    (int)t->t_orig_exer;
				lines[nlines].pl_orig_piece = t->t_orig_number;
				lines[nlines].pl_orig_line =
				    t->t_pl[j].p_orig_line;
			}
			nlines++;
		}
	}
	for (k = nb = 0; k < 2; k++) {
		if (npieces[k] == 0)
			continue;
		b[nb].pb_type = k + 1;
		b[nb].pb_id = bord[k];
		b[nb].pb_cumul = cumul[k];
		b[nb].pb_pieces = pieces[k];
		b[nb].pb_npieces = npieces[k];
		nb++;
	}
	if (pes_write(&h, b, nb, &f->tf_content, &f->tf_len, cause) == -1) {
		*status = BILLING_EINTERNAL;
		goto out;
	}
	titre_sha256(f->tf_content, f->tf_len, x->sha);

	jb = json_array();
	for (k = 0; k < 2; k++)
		if (npieces[k] > 0)
			json_array_append_new(jb, json_pack("{s:s,s:I,s:I,s:I,"
			    "s:I}", "type", k == 0 ? "01" : "02", "number",
			    (json_int_t)bord[k], "titres",
			    (json_int_t)npieces[k], "amount_cents",
			    (json_int_t)bcents[k], "cumul_cents",
			    (json_int_t)cumul[k]));
	jt = json_array();
	for (i = 0; i < x->nt; i++) {
		t = &x->t[i];
		s = &x->s[t->t_stmt];
		json_array_append_new(jt, json_pack("{s:I,s:s,s:I,s:I,s:s,s:s?,"
		    "s:s,s:I,s:o}", "number", (json_int_t)t->t_number, "type",
		    t->t_type == PES_BORD_ORDINARY ? "01" : "02", "statement",
		    (json_int_t)s->s_id, "tenant", (json_int_t)s->s_tenant,
		    "member", s->s_name, "insee", s->s_insee, "siret",
		    s->s_siret, "amount_cents", (json_int_t)t->t_cents,
		    "reduces", t->t_type == PES_BORD_REDUCTION ?
		    json_pack("{s:I,s:I}", "exercise",
		    (json_int_t)t->t_orig_exer, "number",
		    (json_int_t)t->t_orig_number) : json_null()));
	}
	f->tf_summary = json_pack("{s:s,s:i,s:s,s:s,s:s,s:o,s:o,s:I,s:I,s:I,"
	    "s:O}", "period", x->p->p_label, "exercise", x->exer, "file",
	    f->tf_name, "date", day, "sha256", x->sha, "bordereaux", jb, "titres",
	    jt, "ordinary_cents", (json_int_t)ordinary, "reduced_cents",
	    (json_int_t)reduced, "untitled_cents", (json_int_t)x->untitled,
	    "warnings", x->warnings);
	rv = 0;
out:
	free(lines);
	free(pieces[0]);
	free(pieces[1]);
	return (rv);
}

/* Free a job (NULL is fine). */
void
titre_job_free(struct titre_job *x)
{
	if (x == NULL)
		return;
	json_decref(x->missing);
	json_decref(x->warnings);
	titre_stmts_free(x);
	free(x);
}

/* The stored file, or the titres to record; see titre.h. */
int
titre_prepare(sqlite3 *db, const struct titre_conf *conf,
    const struct period *p, int64_t now, struct titre_file *f,
    struct titre_job **job, int *status, char **cause)
{
	struct titre_job	*x;
	sqlite3_stmt		*st;
	const char		*pstatus = NULL;
	size_t			 i;

	memset(f, 0, sizeof(*f));
	*job = NULL;
	if (titre_stored(db, p->p_label, f))
		return (0);
	st = store_prepare(db, "SELECT status FROM billing_periods WHERE "
	    "period = ?");
	sqlite3_bind_text(st, 1, p->p_label, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		pstatus = strcmp((const char *)sqlite3_column_text(st, 0),
		    "closed") == 0 ? "closed" : "draft";
	sqlite3_finalize(st);
	if (pstatus == NULL || strcmp(pstatus, "closed") != 0) {
		*status = pstatus == NULL ? 404 : BILLING_ECONFLICT;
		xasprintf(cause, pstatus == NULL ? "period %s has no "
		    "statements" : "period %s is not closed: titres are "
		    "issued from closed statements only", p->p_label);
		return (-1);
	}

	x = xcalloc(1, sizeof(*x));
	x->db = db;
	x->conf_copy = *conf;
	x->conf = &x->conf_copy;
	x->p_copy = *p;
	x->p = &x->p_copy;
	x->exer = p->p_year;
	x->missing = json_array();
	x->warnings = json_array();
	titre_maps_parse(x);
	titre_load(x);
	for (i = 0; i < x->ns; i++)
		titre_plan(x, i);
	titre_check(x);
	if (json_array_size(x->missing) > 0) {
		*status = TITRE_EINCOMPLETE;
		xasprintf(cause, "the titres of %s cannot be issued: %zu "
		    "things are missing", p->p_label,
		    json_array_size(x->missing));
		f->tf_missing = json_incref(x->missing);
		goto fail;
	}
	if (titre_render(x, now, f, status, cause) == -1)
		goto fail;
	/* The statements stay in memory no longer than the file needs. */
	sqlite3_finalize(x->st_left);
	x->st_left = NULL;
	x->db = NULL;
	*job = x;
	return (0);
fail:
	free(f->tf_content);
	free(f->tf_name);
	json_decref(f->tf_summary);
	f->tf_content = f->tf_name = NULL;
	f->tf_summary = NULL;
	titre_job_free(x);
	return (-1);
}

/* Record a prepared file; see titre.h. */
int
titre_commit(sqlite3 *db, struct titre_job *x, const char *who, int64_t now,
    struct titre_file *f, int *status, char **cause)
{
	int64_t	 seq, next, bord[2], cumul[2];
	int	 k, same;

	x->db = db;
	/* What the numbers were worked out from must still be so. */
	titre_number_base(x, &seq, &next, bord, cumul);
	same = seq == x->seq && next == x->first_titre;
	for (k = 0; k < 2; k++)
		same = same && bord[k] == x->bord[k] && cumul[k] +
		    x->bcents[k] == x->cumul[k];
	if (!same) {
		*status = BILLING_ECONFLICT;
		xasprintf(cause, "titres of %s: other titres were numbered "
		    "meanwhile; export again", x->p->p_label);
		return (-1);
	}
	if (titre_record(x, f, who, now, cause) == -1) {
		*status = BILLING_EINTERNAL;
		return (-1);
	}
	f->tf_new = 1;
	return (0);
}

/* The PES file of a closed period, in one transaction; see titre.h. */
int
titre_export(sqlite3 *db, const struct titre_conf *conf,
    const struct period *p, const char *who, int64_t now,
    struct titre_file *f, int *status, char **cause)
{
	struct titre_job	*x;
	int			 rv;

	if (titre_prepare(db, conf, p, now, f, &x, status, cause) == -1)
		return (-1);
	if (x == NULL)
		return (0);
	if ((rv = titre_commit(db, x, who, now, f, status, cause)) == -1) {
		json_t *missing = f->tf_missing;

		f->tf_missing = NULL;
		titre_file_clear(f);
		f->tf_missing = missing;
	}
	titre_job_free(x);
	return (rv);
}

/* Free what a titre_file holds. */
void
titre_file_clear(struct titre_file *f)
{
	free(f->tf_content);
	free(f->tf_name);
	json_decref(f->tf_summary);
	json_decref(f->tf_missing);
	memset(f, 0, sizeof(*f));
}

/* The [accounting] section of the controller's configuration. */
static void
titre_conf_get(struct titre_conf *c)
{
	const struct ctl_conf	*k = &ctl->conf;

	memset(c, 0, sizeof(*c));
	c->tc_siret = k->acc_siret;
	c->tc_poste = k->acc_poste;
	c->tc_poste_label = k->acc_poste_label;
	c->tc_collectivity = k->acc_collectivity;
	c->tc_budget = k->acc_budget;
	c->tc_budget_label = k->acc_budget_label;
	c->tc_products = k->acc_products;
	c->tc_lines = k->acc_lines;
	c->tc_fonction = k->acc_fonction;
	c->tc_object = k->acc_object;
	c->tc_signed = k->acc_signed;
	c->tc_first_bordereau = k->acc_first_bordereau;
	c->tc_first_titre = k->acc_first_titre;
}

/* A PES export under way: read and written on the pool, recorded after. */
struct titre_run {
	uv_work_t		 r_work;
	struct api_defer	*r_defer;
	char			*r_path;	/* the database */
	struct titre_conf	 r_conf;
	struct period		 r_p;
	int			 r_json;	/* the summary, not the file */
	int64_t			 r_now;
	/* Set by the worker. */
	struct titre_file	 r_f;
	struct titre_job	*r_job;
	int			 r_rv;
	int			 r_status;
	char			*r_cause;
	uint64_t		 r_ms;		/* on the pool */
};

/* One export at a time: each numbers from what the last one recorded. */
static int	titre_running;

/* On the thread pool: the stored file, or a new one (one snapshot). */
static void
titre_work_cb(uv_work_t *w)
{
	struct titre_run	*r = w->data;
	sqlite3			*db;
	uint64_t		 t0 = util_mono_ms();

	r->r_rv = -1;
	r->r_status = BILLING_EINTERNAL;
	if (store_reader(r->r_path, &db, &r->r_cause) == -1)
		return;
	if (store_exec(db, "BEGIN", &r->r_cause) == 0) {
		r->r_rv = titre_prepare(db, &r->r_conf, &r->r_p, r->r_now,
		    &r->r_f, &r->r_job, &r->r_status, &r->r_cause);
		store_exec(db, "COMMIT", NULL);
	}
	store_reader_done(db);
	r->r_ms = util_mono_ms() - t0;
}

static void
titre_reply_error(struct titre_run *r)
{
	json_t	*err;

	if (r->r_status == TITRE_EINCOMPLETE) {
		err = json_pack("{s:{s:s,s:s,s:O}}", "error", "code",
		    "incomplete", "message", r->r_cause, "missing",
		    r->r_f.tf_missing);
		api_defer_reply_json(r->r_defer, 422, err);
		return;
	}
	if (r->r_status == BILLING_EINTERNAL)
		log_warnx("billing: titres of %s: %s", r->r_p.p_label,
		    r->r_cause);
	api_defer_reply_error(r->r_defer, r->r_status, r->r_status == 404 ?
	    "not_found" : r->r_status == BILLING_ECONFLICT ? "conflict" :
	    "internal", "%s", r->r_status == BILLING_EINTERNAL ? "issuing "
	    "the titres failed" : r->r_cause);
}

/* Back on the loop thread: record a new file, then answer. */
static void
titre_after_cb(uv_work_t *w, int wstatus)
{
	struct titre_run	*r = w->data;
	struct titre_file	*f = &r->r_f;
	struct api_req		*req = api_defer_req(r->r_defer);
	const struct api_principal *who = api_principal(req);
	const char		*name = who != NULL ? who->ap_name :
				    "controller";
	char			 obj[64], disp[160];
	uint64_t		 t0 = util_mono_ms();

	titre_running = 0;
	if (wstatus == UV_ECANCELED) {
		api_defer_reply_error(r->r_defer, 503, "busy", "the export was "
		    "cancelled: the controller is stopping");
		goto out;
	}
	if (r->r_rv == -1) {
		titre_reply_error(r);
		goto out;
	}
	if (r->r_job != NULL) {
		if (store_begin(ctl->db) == -1) {
			api_defer_reply_error(r->r_defer, 503, "busy", "the "
			    "database is busy");
			goto out;
		}
		free(r->r_cause);
		r->r_cause = NULL;
		snprintf(obj, sizeof(obj), "statements/%s", r->r_p.p_label);
		if (titre_commit(ctl->db, r->r_job, name, util_now(), f,
		    &r->r_status, &r->r_cause) == -1) {
			store_rollback(ctl->db);
			titre_reply_error(r);
			goto out;
		}
		if (audit_record(req, "statement.pes", obj, json_pack(
		    "{s:s,s:O,s:O,s:O,s:O}", "file", f->tf_name, "sha256",
		    json_object_get(f->tf_summary, "sha256"), "bordereaux",
		    json_object_get(f->tf_summary, "bordereaux"),
		    "ordinary_cents", json_object_get(f->tf_summary,
		    "ordinary_cents"), "reduced_cents", json_object_get(
		    f->tf_summary, "reduced_cents"))) == -1 ||
		    store_commit(ctl->db) == -1) {
			store_rollback(ctl->db);
			api_defer_reply_error(r->r_defer, 500, "internal",
			    "recording the titres failed");
			goto out;
		}
		log_notice("billing: %s issued the titres of %s: %s (%zu "
		    "bytes, worked out in %llu ms on the thread pool, "
		    "recorded in %llu ms)", name, r->r_p.p_label, f->tf_name,
		    f->tf_len, (unsigned long long)r->r_ms,
		    (unsigned long long)(util_mono_ms() - t0));
	}
	api_defer_set_header(r->r_defer, "X-Opsn-Pes-File", f->tf_name);
	api_defer_set_header(r->r_defer, "X-Opsn-Sha256", json_string_value(
	    json_object_get(f->tf_summary, "sha256")));
	if (r->r_json) {
		json_object_set_new(f->tf_summary, "new",
		    json_boolean(f->tf_new));
		api_defer_reply_json(r->r_defer, 200,
		    json_incref(f->tf_summary));
		goto out;
	}
	snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"",
	    f->tf_name);
	api_defer_set_header(r->r_defer, "Content-Disposition", disp);
	api_defer_reply_raw(r->r_defer, 200, "application/xml; "
	    "charset=ISO-8859-1", f->tf_content, f->tf_len);
	f->tf_content = NULL;	/* the reply has it */
out:
	titre_job_free(r->r_job);
	titre_file_clear(f);
	free(r->r_cause);
	free(r->r_path);
	free(r);
}

/*
 * GET /v1/billing-periods/{period}/pes: the period's titres as a PES V2
 * file (Accept: application/xml, the default), or what it holds
 * (Accept: application/json). The first call numbers and records them;
 * every later one returns the same file. Read and written on the thread
 * pool; only the recording is on the loop thread.
 */
void
titre_route_pes(struct api_req *req)
{
	const char		*accept = api_header(req, "accept");
	const char		*path;
	struct titre_run	*r;
	struct period		 p;
	char			*cause = NULL;
	int			 rv;

	if (period_parse(api_param(req, "period"), &p, &cause) == -1) {
		api_reply_error(req, 400, "bad_parameter", "%s", cause);
		free(cause);
		return;
	}
	if (titre_running) {
		api_set_header(req, "Retry-After", "5");
		api_reply_error(req, 409, "busy", "titres are being issued; try "
		    "again once that is done");
		return;
	}
	r = xcalloc(1, sizeof(*r));
	r->r_p = p;
	r->r_json = accept != NULL && strstr(accept, "application/json") !=
	    NULL && strstr(accept, "xml") == NULL;
	r->r_now = util_now();
	titre_conf_get(&r->r_conf);
	path = sqlite3_db_filename(ctl->db, "main");
	r->r_path = xstrdup(path != NULL ? path : "");
	r->r_work.data = r;
	r->r_defer = api_defer(req);
	if ((rv = uv_queue_work(ctl->loop, &r->r_work, titre_work_cb,
	    titre_after_cb)) != 0) {
		api_defer_reply_error(r->r_defer, 503, "busy", "the export could "
		    "not start: %s", uv_strerror(rv));
		free(r->r_path);
		free(r);
		return;
	}
	titre_running = 1;
}
