/*
 * CSV text as spreadsheets write it (RFC 4180): fields separated by ';' or
 * ',', quoted with '"' when they hold one, a quote doubled inside quotes,
 * rows ended by CRLF, LF or CR, a UTF-8 byte order mark ignored. The file
 * comes from an operator's hands, so every flaw is reported with its line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define CSV_BOM		"\xef\xbb\xbf"

/* A field being read, grown as needed. */
struct csv_field {
	char	*cf_data;
	size_t	 cf_len;
	size_t	 cf_cap;
};

static char	 csv_separator(const char *, size_t);
static void	 csv_put(struct csv_field *, char);
static void	 csv_end_field(struct csv_row *, struct csv_field *);
static void	 csv_end_row(struct csv *, struct csv_row *, size_t, int);

/*
 * ';' unless the header line has a ',' (outside quotes) and no ';': French
 * spreadsheets write ';', others ','.
 */
static char
csv_separator(const char *p, size_t len)
{
	size_t	 i;
	int	 quoted = 0, comma = 0;

	for (i = 0; i < len && (quoted || (p[i] != '\n' && p[i] != '\r'));
	    i++) {
		if (p[i] == '"')
			quoted = !quoted;
		else if (!quoted && p[i] == ';')
			return (';');
		else if (!quoted && p[i] == ',')
			comma = 1;
	}
	return (comma ? ',' : ';');
}

static void
csv_put(struct csv_field *f, char c)
{
	if (f->cf_len + 1 >= f->cf_cap) {
		f->cf_cap = f->cf_cap == 0 ? 64 : f->cf_cap * 2;
		f->cf_data = xrealloc(f->cf_data, f->cf_cap);
	}
	f->cf_data[f->cf_len++] = c;
}

/* Move the field into the row (the row owns it) and start a new one. */
static void
csv_end_field(struct csv_row *row, struct csv_field *f)
{
	row->cr_fields = xrealloc(row->cr_fields, (row->cr_n + 1) *
	    sizeof(*row->cr_fields));
	row->cr_fields[row->cr_n++] = xstrndup(f->cf_data != NULL ?
	    f->cf_data : "", f->cf_len);
	f->cf_len = 0;
}

/*
 * Move the row into csv, unless it is an empty line (nothing, not even
 * ""): a blank line is no record.
 */
static void
csv_end_row(struct csv *csv, struct csv_row *row, size_t line, int quoted)
{
	size_t	 i;

	if (row->cr_n == 1 && row->cr_fields[0][0] == '\0' && !quoted) {
		for (i = 0; i < row->cr_n; i++)
			free(row->cr_fields[i]);
		free(row->cr_fields);
	} else {
		csv->cv_rows = xrealloc(csv->cv_rows, (csv->cv_nrows + 1) *
		    sizeof(*csv->cv_rows));
		row->cr_line = line;
		csv->cv_rows[csv->cv_nrows++] = *row;
	}
	memset(row, 0, sizeof(*row));
}

int
csv_parse(const char *name, const char *text, size_t len, struct csv *csv,
    char **cause)
{
	struct csv_field f;
	struct csv_row	 row;
	const char	*p = text, *end;
	size_t		 line = 1, start = 1, qline = 0, i;
	int		 quoted = 0, fq = 0, rq = 0, ret = -1;
	char		 c;

	*cause = NULL;
	memset(csv, 0, sizeof(*csv));
	memset(&f, 0, sizeof(f));
	memset(&row, 0, sizeof(row));
	if (len >= 3 && memcmp(p, CSV_BOM, 3) == 0) {
		p += 3;
		len -= 3;
	}
	end = p + len;
	csv->cv_sep = csv_separator(p, len);

	while (p < end) {
		c = *p++;
		if (c == '\0') {
			xasprintf(cause, "%s:%zu: a NUL byte: this is not a "
			    "text file", name, line);
			goto out;
		}
		if (quoted) {
			if (c != '"') {
				if (c == '\n' || (c == '\r' && (p == end ||
				    *p != '\n')))
					line++;
				csv_put(&f, c);
				continue;
			}
			if (p < end && *p == '"') {
				csv_put(&f, '"');
				p++;
				continue;
			}
			quoted = 0;
			/* The closing quote ends the field. */
			if (p < end && *p != csv->cv_sep && *p != '\n' &&
			    *p != '\r') {
				xasprintf(cause, "%s:%zu: field %zu: text after "
				    "the closing quote (write a quote inside "
				    "quotes as \"\")", name, line,
				    row.cr_n + 1);
				goto out;
			}
			continue;
		}
		/* A quote opens a field only as its first character. */
		if (c == '"' && f.cf_len == 0 && !fq) {
			quoted = fq = rq = 1;
			qline = line;
			continue;
		}
		if (c == csv->cv_sep) {
			csv_end_field(&row, &f);
			fq = 0;
			continue;
		}
		if (c == '\r' || c == '\n') {
			if (c == '\r' && p < end && *p == '\n')
				p++;
			csv_end_field(&row, &f);
			csv_end_row(csv, &row, start, rq);
			fq = rq = 0;
			start = ++line;
			continue;
		}
		csv_put(&f, c);
	}
	if (quoted) {
		xasprintf(cause, "%s:%zu: field %zu: the quote opened here is "
		    "never closed", name, qline, row.cr_n + 1);
		goto out;
	}
	/* A last line without its newline. */
	if (f.cf_len > 0 || row.cr_n > 0 || fq) {
		csv_end_field(&row, &f);
		csv_end_row(csv, &row, start, rq);
	}
	ret = 0;
out:
	if (ret == -1) {
		csv_free(csv);
		for (i = 0; i < row.cr_n; i++)
			free(row.cr_fields[i]);
		free(row.cr_fields);
	}
	free(f.cf_data);
	return (ret);
}

void
csv_free(struct csv *csv)
{
	size_t	 r, i;

	if (csv == NULL)
		return;
	for (r = 0; r < csv->cv_nrows; r++) {
		for (i = 0; i < csv->cv_rows[r].cr_n; i++)
			free(csv->cv_rows[r].cr_fields[i]);
		free(csv->cv_rows[r].cr_fields);
	}
	free(csv->cv_rows);
	memset(csv, 0, sizeof(*csv));
}
