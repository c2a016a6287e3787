/*
 * The PES V2 writer (Protocole d'Échange Standard, DGFiP, schemas 5.17):
 * a PES_Aller file with a PES_RecetteAller, the titres de recettes an OPSN
 * sends its public accountant (Hélios). Pure: it writes what the plain
 * structs below say, checked against the schema's rules, and knows
 * nothing of statements or the store; controller/billing/titre.c maps
 * statements to these structs and allocates the numbers.
 *
 * The file is ISO-8859-1. Names and addresses follow the postal norm
 * (upper case without accents or punctuation, 38 characters a line); free
 * texts (objects of titres and lines) keep their accents. Amounts are
 * integer cents written as "123.45".
 */
#ifndef OPSN_BILLING_PES_H
#define OPSN_BILLING_PES_H

#include <stddef.h>
#include <stdint.h>

/* TypBord: an ordinary bordereau, or one of annulations/réductions. */
#define PES_BORD_ORDINARY	1
#define PES_BORD_REDUCTION	2

/* CatTiers of the debtors an OPSN bills (NatJur is 09 for all of them). */
#define PES_CAT_REGION		21
#define PES_CAT_DEPARTMENT	22
#define PES_CAT_COMMUNE		23
#define PES_CAT_GROUPEMENT	24
#define PES_CAT_CAISSE_ECOLES	25
#define PES_CAT_CCAS		26
#define PES_CAT_PUBLIC_OTHER	29

#define PES_TEXT_LINE		38	/* characters of a postal line */
#define PES_MAX_CENTS		INT64_C(99999999999999)	/* 14 digits */

/* The file and the OPSN's identity (Enveloppe and EnTetePES). */
struct pes_header {
	const char	*ph_file;	/* NomFic, at most 100 characters */
	const char	*ph_sigle;	/* Emetteur/Sigle: who wrote it */
	const char	*ph_app;	/* Emetteur/Adresse: application, version */
	const char	*ph_date;	/* "YYYY-MM-DD": DteStr and DteBordEm */
	int		 ph_exer;	/* Exer: the fiscal year */
	int		 ph_demat;	/* InfoDematerialisee (to be signed) */
	const char	*ph_idpost;	/* codique of the poste comptable */
	const char	*ph_libpost;	/* its label, or NULL */
	const char	*ph_idcoll;	/* the OPSN's SIRET */
	const char	*ph_codcol;	/* 3 digits */
	const char	*ph_codbud;	/* 2 characters */
	const char	*ph_libcolbud;	/* the budget's label, or NULL */
};

/* The debtor of a titre. */
struct pes_tiers {
	const char	*pt_siret;	/* IdTiers, NatIdTiers 01 */
	int		 pt_cat;	/* CatTiers: PES_CAT_* */
	const char	*pt_ref;	/* RefTiers (opsn's reference), or NULL */
	const char	*pt_name;	/* UTF-8; Nom and ComplNom */
	const char	*pt_line;	/* street: Adr2 */
	const char	*pt_line2;	/* lieu-dit, BP...: Adr3, or NULL */
	const char	*pt_postcode;	/* CP: 5 digits */
	const char	*pt_town;	/* Ville */
};

/* A line of a titre. */
struct pes_line {
	const char	*pl_object;	/* ObjLignePce (UTF-8), or NULL */
	const char	*pl_product;	/* CodProdLoc: 1 to 4 letters/digits */
	const char	*pl_nature;	/* Nature: the revenue account */
	const char	*pl_fonction;	/* Fonction, or NULL */
	int64_t		 pl_cents;	/* MtHT, > 0 */
	/* In a reduction: the titre line it reduces (RattachPiece). */
	int		 pl_orig_exer;
	int64_t		 pl_orig_piece;
	int64_t		 pl_orig_line;
};

/* A titre (pièce): one debtor, one or more lines. */
struct pes_piece {
	int64_t			 pp_id;		/* IdPce: the titre number */
	const char		*pp_object;	/* ObjPce (UTF-8), or NULL */
	struct pes_tiers	 pp_tiers;
	const struct pes_line	*pp_lines;
	size_t			 pp_nlines;
};

struct pes_bordereau {
	int			 pb_type;	/* PES_BORD_* */
	int64_t			 pb_id;		/* IdBord */
	/*
	 * MtCumulAnnuel: the amounts of the fiscal year's bordereaux of this
	 * type, this one included, in cents.
	 */
	int64_t			 pb_cumul;
	const struct pes_piece	*pb_pieces;
	size_t			 pb_npieces;
};

/*
 * Write a PES_Aller file holding the bordereaux into *out (caller frees).
 * MtBordHt and NbrPce are computed. -1 with *cause naming the first field
 * the schema or Hélios would refuse.
 */
int	 pes_write(const struct pes_header *, const struct pes_bordereau *,
	    size_t n, char **out, size_t *len, char **cause);

/*
 * A text in the postal norm: upper case ASCII letters, digits and single
 * spaces; accents dropped (É -> E, Œ -> OE), punctuation as spaces. Into
 * out, truncated to len - 1 bytes: strlen(in) + 1 always holds it all.
 */
void	 pes_postal(const char *in, char *out, size_t len);
/*
 * Split a postal text over two lines of PES_TEXT_LINE characters at a
 * space: line1 gets what fits, line2 the rest (truncated), "" if nothing.
 * Both of at least PES_TEXT_LINE + 1 bytes.
 */
void	 pes_postal_lines(const char *in, char *line1, char *line2);

#endif
