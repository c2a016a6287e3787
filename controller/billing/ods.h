/*
 * An OpenDocument spreadsheet writer (.ods, ODF 1.2) for finance's exports:
 * typed cells so that a spreadsheet keeps codes as text (the INSEE code
 * 01001 stays "01001"), amounts as numbers in euros with two decimals,
 * dates as dates; one sheet per view, each with a header row that stays
 * visible while scrolling. Numbers are written from integers and decimal
 * strings, never through a binary fraction.
 *
 * Cells are written row by row:
 *
 *	o = ods_new();
 *	ods_sheet(o, "summary");
 *	ods_header(o, titles, n);
 *	ods_row(o); ods_text(o, "01001"); ods_cents(o, 11436); ...
 *	ods_finish(o, &zip, &len, &cause);
 *	ods_free(o);
 */
#ifndef OPSN_BILLING_ODS_H
#define OPSN_BILLING_ODS_H

#include <stddef.h>
#include <stdint.h>

#define ODS_MIMETYPE	"application/vnd.oasis.opendocument.spreadsheet"

struct ods;

struct ods	*ods_new(void);
/* Free a spreadsheet (NULL is fine). */
void	 ods_free(struct ods *);
/*
 * The time written as the files' modification time in the archive (Unix
 * seconds); by default 1980-01-01, so the same cells give the same bytes.
 */
void	 ods_set_time(struct ods *, int64_t);
/* Start a sheet; characters a sheet name cannot hold become '_'. */
void	 ods_sheet(struct ods *, const char *name);
/* The sheet's header row: bold text cells, kept visible (frozen). */
void	 ods_header(struct ods *, const char *const *titles, size_t n);
/* Start a row of the current sheet. */
void	 ods_row(struct ods *);
/* Cells, left to right in the current row. */
void	 ods_empty(struct ods *);
/* A text cell (UTF-8; an invalid byte becomes U+FFFD). */
void	 ods_text(struct ods *, const char *);
/* A number cell from an integer. */
void	 ods_int(struct ods *, int64_t);
/*
 * A number cell from a decimal string ("-1234.5678", point as separator).
 * -1 (and a text cell) if the string is not such a decimal.
 */
int	 ods_number(struct ods *, const char *);
/* An amount in euros from integer cents: a currency cell, two decimals. */
void	 ods_cents(struct ods *, int64_t cents);
/* A date cell from "YYYY-MM-DD"; -1 (and a text cell) if not one. */
int	 ods_date(struct ods *, const char *);
/*
 * Write the document: a ZIP archive (mimetype first, stored) into *out
 * (caller frees). -1 with *cause if libzip fails.
 */
int	 ods_finish(struct ods *, char **out, size_t *len, char **cause);

#endif
