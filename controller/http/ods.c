/*
 * OpenDocument spreadsheets for finance. The archive is written with
 * libzip into memory: "mimetype" first, stored uncompressed and without an
 * extra field (ODF 1.2 part 3, 3.3, so that tools find the type at byte
 * 38), then the manifest, content.xml (the cells), styles.xml, meta.xml
 * and settings.xml (the frozen header rows).
 *
 * Cell types follow what finance does with them: codes (INSEE, SIREN,
 * SIRET, statement and titre numbers) are text, so 01001 keeps its zero;
 * quantities are float cells; amounts are currency cells in EUR with two
 * decimals, their value written from integer cents; dates are date cells.
 * Column widths come from the longest cell of each column.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zip.h>

#include "opsn/util.h"
#include "http.h"

/* 1980-01-01T00:00Z, the first instant a ZIP archive can date. */
#define ODS_ZIP_EPOCH	315532800

#define ODS_WIDTH_MIN	12	/* column widths in millimetres */
#define ODS_WIDTH_MAX	90

struct ods_sheet {
	char		*os_name;
	struct obuf	 os_header;	/* the header row, if any */
	struct obuf	 os_rows;
	size_t		*os_width;	/* longest cell per column, characters */
	size_t		 os_ncols;
	size_t		 os_col;	/* the next cell's column */
	int		 os_inrow;
};

struct ods {
	struct ods_sheet *o_sheets;
	size_t		  o_n;
	int64_t		  o_time;
};

static const char ods_ns[] =
    "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" "
    "xmlns:style=\"urn:oasis:names:tc:opendocument:xmlns:style:1.0\" "
    "xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" "
    "xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" "
    "xmlns:number=\"urn:oasis:names:tc:opendocument:xmlns:"
    "datastyle:1.0\" "
    "xmlns:fo=\"urn:oasis:names:tc:opendocument:xmlns:"
    "xsl-fo-compatible:1.0\" "
    "xmlns:meta=\"urn:oasis:names:tc:opendocument:xmlns:meta:1.0\" "
    "xmlns:config=\"urn:oasis:names:tc:opendocument:xmlns:config:1.0\" "
    "xmlns:dc=\"http://purl.org/dc/elements/1.1/\" office:version=\"1.2\"";

/* A new, empty spreadsheet. */
struct ods *
ods_new(void)
{
	struct ods	*o;

	o = xcalloc(1, sizeof(*o));
	o->o_time = ODS_ZIP_EPOCH;
	return (o);
}

/* Free a spreadsheet. */
void
ods_free(struct ods *o)
{
	size_t	 i;

	if (o == NULL)
		return;
	for (i = 0; i < o->o_n; i++) {
		free(o->o_sheets[i].os_name);
		obuf_free(&o->o_sheets[i].os_header);
		obuf_free(&o->o_sheets[i].os_rows);
		free(o->o_sheets[i].os_width);
	}
	free(o->o_sheets);
	free(o);
}

/* The archive's file times. */
void
ods_set_time(struct ods *o, int64_t t)
{
	o->o_time = t < ODS_ZIP_EPOCH ? ODS_ZIP_EPOCH : t;
}

/*
 * Append text as the content of a text:p: markup escaped, invalid UTF-8
 * replaced, and the white space ODF would collapse kept (runs of spaces
 * as text:s, tabs and line breaks as elements). The number of characters.
 */
static size_t
ods_para(struct obuf *ob, const char *text)
{
	const unsigned char	*s = (const unsigned char *)text, *run, *next;
	size_t			 chars = 0, spaces;
	int			 start = 1;

	for (run = s; *s != '\0'; ) {
		next = s;
		if (*s >= 0x80 && obuf_utf8(&next) != OBUF_BAD_UTF8) {
			s = next;
			chars++;
			start = 0;
			continue;
		}
		if (*s >= 0x20 && *s < 0x80 && strchr(" &<>\"'", *s) == NULL) {
			s++;
			chars++;
			start = 0;
			continue;
		}
		obuf_add(ob, run, (size_t)(s - run));
		if (*s == ' ') {
			for (spaces = 0; s[spaces] == ' '; spaces++)
				;
			chars += spaces;
			s += spaces;
			if (!start) {
				obuf_str(ob, " ");
				spaces--;
			}
			if (spaces == 1)
				obuf_str(ob, "<text:s/>");
			else if (spaces > 1)
				obuf_printf(ob, "<text:s text:c=\"%zu\"/>",
				    spaces);
		} else if (*s == '\t' || *s == '\n') {
			obuf_str(ob, *s == '\t' ? "<text:tab/>" :
			    "<text:line-break/>");
			s++;
			chars++;
		} else if (*s >= 0x80) {
			/* Not UTF-8: the replacement character. */
			obuf_str(ob, "\xef\xbf\xbd");
			s++;
			chars++;
		} else if (*s < 0x20) {
			s++;		/* XML 1.0 cannot carry it */
		} else {
			char	 one[2] = { (char)*s, '\0' };

			obuf_xml(ob, one);
			s++;
			chars++;
		}
		start = 0;
		run = s;
	}
	obuf_add(ob, run, (size_t)(s - run));
	return (chars);
}

static struct ods_sheet *
ods_cur(struct ods *o)
{
	if (o->o_n == 0)
		ods_sheet(o, "Sheet1");
	return (&o->o_sheets[o->o_n - 1]);
}

/* Start a sheet. */
void
ods_sheet(struct ods *o, const char *name)
{
	struct ods_sheet	*sh;
	char			*p;

	o->o_sheets = xrealloc(o->o_sheets, (o->o_n + 1) *
	    sizeof(*o->o_sheets));
	sh = &o->o_sheets[o->o_n++];
	memset(sh, 0, sizeof(*sh));
	sh->os_name = xstrdup(*name != '\0' ? name : "Sheet");
	for (p = sh->os_name; *p != '\0'; p++)
		if (strchr("[]*?:/\\'", *p) != NULL)
			*p = '_';
}

static void
ods_end_row(struct ods_sheet *sh)
{
	if (!sh->os_inrow)
		return;
	obuf_str(&sh->os_rows, "</table:table-row>\n");
	sh->os_inrow = 0;
}

/* Start a row. */
void
ods_row(struct ods *o)
{
	struct ods_sheet	*sh = ods_cur(o);

	ods_end_row(sh);
	obuf_str(&sh->os_rows, "<table:table-row>");
	sh->os_inrow = 1;
	sh->os_col = 0;
}

/* Note a cell's width in its column and return the buffer to write into. */
static struct obuf *
ods_cell(struct ods *o, size_t chars)
{
	struct ods_sheet	*sh = ods_cur(o);

	if (!sh->os_inrow)
		ods_row(o);
	if (sh->os_col >= sh->os_ncols) {
		sh->os_width = xrealloc(sh->os_width, (sh->os_col + 1) *
		    sizeof(*sh->os_width));
		while (sh->os_ncols <= sh->os_col)
			sh->os_width[sh->os_ncols++] = 0;
	}
	if (chars > sh->os_width[sh->os_col])
		sh->os_width[sh->os_col] = chars;
	sh->os_col++;
	return (&sh->os_rows);
}

/* The header row. */
void
ods_header(struct ods *o, const char *const *titles, size_t n)
{
	struct ods_sheet	*sh = ods_cur(o);
	struct obuf		 cell = { 0 };
	size_t			 i, chars;

	obuf_free(&sh->os_header);
	obuf_str(&sh->os_header, "<table:table-header-rows><table:table-row>");
	for (i = 0; i < n; i++) {
		chars = ods_para(&cell, titles[i]);
		obuf_printf(&sh->os_header, "<table:table-cell table:style-name="
		    "\"ceH\" office:value-type=\"string\"><text:p>%s</text:p>"
		    "</table:table-cell>", cell.ob_b);
		obuf_free(&cell);
		if (i >= sh->os_ncols) {
			sh->os_width = xrealloc(sh->os_width, (i + 1) *
			    sizeof(*sh->os_width));
			sh->os_width[sh->os_ncols++] = 0;
		}
		/* Bold and a filter arrow's room. */
		if (chars + 2 > sh->os_width[i])
			sh->os_width[i] = chars + 2;
	}
	obuf_str(&sh->os_header, "</table:table-row></table:table-header-rows>\n");
}

/* An empty cell. */
void
ods_empty(struct ods *o)
{
	obuf_str(ods_cell(o, 0), "<table:table-cell/>");
}

/* A text cell. */
void
ods_text(struct ods *o, const char *s)
{
	struct obuf	 p = { 0 };
	size_t		 chars;

	chars = ods_para(&p, s != NULL ? s : "");
	obuf_printf(ods_cell(o, chars), "<table:table-cell office:value-type="
	    "\"string\"><text:p>%s</text:p></table:table-cell>",
	    p.ob_b != NULL ? p.ob_b : "");
	obuf_free(&p);
}

/* Is s a decimal number "-123.45" (point, at least one digit)? */
static int
ods_decimal_ok(const char *s)
{
	int	 digits = 0, point = 0;

	if (*s == '-')
		s++;
	for (; *s != '\0'; s++) {
		if (*s == '.' && !point && digits > 0) {
			point = 1;
			continue;
		}
		if (!isdigit((unsigned char)*s))
			return (0);
		digits++;
	}
	return (digits > 0 && (digits < 40));
}

/* A float cell whose value is the decimal string v. */
static void
ods_float(struct ods *o, const char *v)
{
	char	 shown[64], *p;

	/* What a French reader sees before the spreadsheet formats it. */
	strlcpy(shown, v, sizeof(shown));
	if ((p = strchr(shown, '.')) != NULL)
		*p = ',';
	obuf_printf(ods_cell(o, strlen(shown)), "<table:table-cell "
	    "office:value-type=\"float\" office:value=\"%s\"><text:p>%s"
	    "</text:p></table:table-cell>", v, shown);
}

/* A number from an integer. */
void
ods_int(struct ods *o, int64_t v)
{
	char	 buf[32];

	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	ods_float(o, buf);
}

/* A number from a decimal string. */
int
ods_number(struct ods *o, const char *v)
{
	if (!ods_decimal_ok(v)) {
		ods_text(o, v);
		return (-1);
	}
	ods_float(o, v);
	return (0);
}

/* An amount in euros from cents. */
void
ods_cents(struct ods *o, int64_t cents)
{
	char		 v[40], shown[48];
	uint64_t	 a;
	const char	*sign = cents < 0 ? "-" : "";

	/* The magnitude as unsigned: INT64_MIN has no positive twin. */
	a = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
	snprintf(v, sizeof(v), "%s%llu.%02llu", sign,
	    (unsigned long long)(a / 100), (unsigned long long)(a % 100));
	snprintf(shown, sizeof(shown), "%s%llu,%02llu \xe2\x82\xac", sign,
	    (unsigned long long)(a / 100), (unsigned long long)(a % 100));
	obuf_printf(ods_cell(o, strlen(shown)), "<table:table-cell "
	    "table:style-name=\"ceE\" office:value-type=\"currency\" "
	    "office:currency=\"EUR\" office:value=\"%s\"><text:p>%s</text:p>"
	    "</table:table-cell>", v, shown);
}

/* A date cell. */
int
ods_date(struct ods *o, const char *s)
{
	int	 y, m, d, n = 0;
	char	 shown[16];

	if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d,
	    &n) != 3 || n != 10 || !isdigit((unsigned char)s[0]) ||
	    m < 1 || m > 12 || d < 1 || d > 31) {
		ods_text(o, s);
		return (-1);
	}
	snprintf(shown, sizeof(shown), "%02d/%02d/%04d", d, m, y);
	obuf_printf(ods_cell(o, strlen(shown)), "<table:table-cell "
	    "table:style-name=\"ceD\" office:value-type=\"date\" "
	    "office:date-value=\"%s\"><text:p>%s</text:p></table:table-cell>",
	    s, shown);
	return (0);
}

/* The width in millimetres of a column whose longest cell has n chars. */
static int
ods_width_mm(size_t n)
{
	size_t	 mm = 4 + 2 * n;

	if (mm < ODS_WIDTH_MIN)
		mm = ODS_WIDTH_MIN;
	if (mm > ODS_WIDTH_MAX)
		mm = ODS_WIDTH_MAX;
	return ((int)mm);
}

static void
ods_content(struct ods *o, struct obuf *ob)
{
	struct ods_sheet	*sh;
	unsigned char		 used[ODS_WIDTH_MAX + 1];
	size_t			 i, c;
	int			 mm;

	obuf_printf(ob, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<office:document-content %s>\n<office:automatic-styles>\n",
	    ods_ns);
	/* One column style per width in use. */
	memset(used, 0, sizeof(used));
	for (i = 0; i < o->o_n; i++) {
		sh = &o->o_sheets[i];
		for (c = 0; c < sh->os_ncols; c++) {
			mm = ods_width_mm(sh->os_width[c]);
			if (used[mm])
				continue;
			used[mm] = 1;
			obuf_printf(ob, "<style:style style:name=\"co%d\" "
			    "style:family=\"table-column\">"
			    "<style:table-column-properties "
			    "fo:break-before=\"auto\" style:column-width="
			    "\"%dmm\"/></style:style>\n", mm, mm);
		}
	}
	obuf_str(ob,
	    "<style:style style:name=\"ta1\" style:family=\"table\">"
	    "<style:table-properties table:display=\"true\" "
	    "style:writing-mode=\"lr-tb\"/></style:style>\n"
	    "<number:currency-style style:name=\"N_EUR0\" "
	    "style:volatile=\"true\" number:language=\"fr\" "
	    "number:country=\"FR\"><number:number number:decimal-places=\"2\" "
	    "number:min-integer-digits=\"1\" number:grouping=\"true\"/>"
	    "<number:text> </number:text><number:currency-symbol "
	    "number:language=\"fr\" number:country=\"FR\">\xe2\x82\xac"
	    "</number:currency-symbol></number:currency-style>\n"
	    "<number:currency-style style:name=\"N_EUR\" number:language="
	    "\"fr\" number:country=\"FR\"><style:text-properties "
	    "fo:color=\"#c9211e\"/><number:text>-</number:text>"
	    "<number:number number:decimal-places=\"2\" "
	    "number:min-integer-digits=\"1\" number:grouping=\"true\"/>"
	    "<number:text> </number:text><number:currency-symbol "
	    "number:language=\"fr\" number:country=\"FR\">\xe2\x82\xac"
	    "</number:currency-symbol><style:map style:condition="
	    "\"value()&gt;=0\" style:apply-style-name=\"N_EUR0\"/>"
	    "</number:currency-style>\n"
	    "<number:date-style style:name=\"N_DATE\" number:language=\"fr\" "
	    "number:country=\"FR\"><number:day number:style=\"long\"/>"
	    "<number:text>/</number:text><number:month number:style="
	    "\"long\"/><number:text>/</number:text><number:year "
	    "number:style=\"long\"/></number:date-style>\n"
	    "<style:style style:name=\"ceH\" style:family=\"table-cell\">"
	    "<style:text-properties fo:font-weight=\"bold\"/></style:style>\n"
	    "<style:style style:name=\"ceE\" style:family=\"table-cell\" "
	    "style:data-style-name=\"N_EUR\"/>\n"
	    "<style:style style:name=\"ceD\" style:family=\"table-cell\" "
	    "style:data-style-name=\"N_DATE\"/>\n"
	    "</office:automatic-styles>\n<office:body>\n"
	    "<office:spreadsheet>\n");
	for (i = 0; i < o->o_n; i++) {
		sh = &o->o_sheets[i];
		ods_end_row(sh);
		obuf_str(ob, "<table:table table:name=\"");
		obuf_xml(ob, sh->os_name);
		obuf_str(ob, "\" table:style-name=\"ta1\">\n");
		for (c = 0; c < sh->os_ncols; c++)
			obuf_printf(ob, "<table:table-column table:style-name="
			    "\"co%d\"/>", ods_width_mm(sh->os_width[c]));
		if (sh->os_ncols == 0)
			obuf_str(ob, "<table:table-column/>");
		obuf_str(ob, "\n");
		if (sh->os_header.ob_len > 0)
			obuf_add(ob, sh->os_header.ob_b, sh->os_header.ob_len);
		if (sh->os_rows.ob_len > 0)
			obuf_add(ob, sh->os_rows.ob_b, sh->os_rows.ob_len);
		else if (sh->os_header.ob_len == 0)
			obuf_str(ob, "<table:table-row><table:table-cell/>"
			    "</table:table-row>\n");
		obuf_str(ob, "</table:table>\n");
	}
	obuf_str(ob, "</office:spreadsheet>\n</office:body>\n"
	    "</office:document-content>\n");
}

/* The view settings: each sheet with a header keeps its first row frozen. */
static void
ods_settings(struct ods *o, struct obuf *ob)
{
	struct ods_sheet	*sh;
	size_t			 i;

	obuf_printf(ob, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<office:document-settings %s>\n<office:settings>\n"
	    "<config:config-item-set config:name=\"ooo:view-settings\">\n"
	    "<config:config-item-map-indexed config:name=\"Views\">\n"
	    "<config:config-item-map-entry>\n"
	    "<config:config-item config:name=\"ViewId\" config:type="
	    "\"string\">view1</config:config-item>\n"
	    "<config:config-item-map-named config:name=\"Tables\">\n",
	    ods_ns);
	for (i = 0; i < o->o_n; i++) {
		sh = &o->o_sheets[i];
		if (sh->os_header.ob_len == 0)
			continue;
		obuf_str(ob, "<config:config-item-map-entry config:name=\"");
		obuf_xml(ob, sh->os_name);
		/* Rows split (the "vertical" split) after row 1, frozen. */
		obuf_str(ob, "\">\n"
		    "<config:config-item config:name=\"HorizontalSplitMode\" "
		    "config:type=\"short\">0</config:config-item>\n"
		    "<config:config-item config:name=\"VerticalSplitMode\" "
		    "config:type=\"short\">2</config:config-item>\n"
		    "<config:config-item config:name=\"HorizontalSplitPosition\""
		    " config:type=\"int\">0</config:config-item>\n"
		    "<config:config-item config:name=\"VerticalSplitPosition\" "
		    "config:type=\"int\">1</config:config-item>\n"
		    "<config:config-item config:name=\"ActiveSplitRange\" "
		    "config:type=\"short\">2</config:config-item>\n"
		    "<config:config-item config:name=\"PositionLeft\" "
		    "config:type=\"int\">0</config:config-item>\n"
		    "<config:config-item config:name=\"PositionRight\" "
		    "config:type=\"int\">0</config:config-item>\n"
		    "<config:config-item config:name=\"PositionTop\" "
		    "config:type=\"int\">0</config:config-item>\n"
		    "<config:config-item config:name=\"PositionBottom\" "
		    "config:type=\"int\">1</config:config-item>\n"
		    "</config:config-item-map-entry>\n");
	}
	obuf_str(ob, "</config:config-item-map-named>\n");
	if (o->o_n > 0) {
		obuf_str(ob, "<config:config-item config:name=\"ActiveTable\" "
		    "config:type=\"string\">");
		obuf_xml(ob, o->o_sheets[0].os_name);
		obuf_str(ob, "</config:config-item>\n");
	}
	obuf_str(ob, "</config:config-item-map-entry>\n"
	    "</config:config-item-map-indexed>\n</config:config-item-set>\n"
	    "</office:settings>\n</office:document-settings>\n");
}

static void
ods_manifest(struct obuf *ob)
{
	static const char *const files[] = { "content.xml", "styles.xml",
	    "meta.xml", "settings.xml" };
	size_t	 i;

	obuf_str(ob, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:"
	    "opendocument:xmlns:manifest:1.0\" manifest:version=\"1.2\">\n"
	    " <manifest:file-entry manifest:full-path=\"/\" "
	    "manifest:version=\"1.2\" manifest:media-type=\"" ODS_MIMETYPE
	    "\"/>\n");
	for (i = 0; i < nitems(files); i++)
		obuf_printf(ob, " <manifest:file-entry manifest:full-path="
		    "\"%s\" manifest:media-type=\"text/xml\"/>\n", files[i]);
	obuf_str(ob, "</manifest:manifest>\n");
}

static void
ods_styles(struct obuf *ob)
{
	obuf_printf(ob, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<office:document-styles %s>\n<office:styles>\n"
	    "<style:default-style style:family=\"table-cell\">"
	    "<style:text-properties fo:language=\"fr\" fo:country=\"FR\"/>"
	    "</style:default-style>\n</office:styles>\n"
	    "</office:document-styles>\n", ods_ns);
}

static void
ods_meta(struct ods *o, struct obuf *ob)
{
	char	 when[32];

	util_time_fmt(o->o_time, when, sizeof(when));
	/* ODF dates carry no zone designator. */
	when[strcspn(when, "Z")] = '\0';
	obuf_printf(ob, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<office:document-meta %s>\n<office:meta>\n"
	    "<meta:generator>opsn/" OPSN_VERSION "</meta:generator>\n"
	    "<meta:creation-date>%s</meta:creation-date>\n"
	    "</office:meta>\n</office:document-meta>\n", ods_ns, when);
}

/* Write the archive. */
int
ods_finish(struct ods *o, char **out, size_t *len, char **cause)
{
	static const char *const names[] = { "mimetype",
	    "META-INF/manifest.xml", "content.xml", "styles.xml", "meta.xml",
	    "settings.xml" };
	struct obuf	 parts[nitems(names)];
	zip_source_t	*src = NULL, *s;
	zip_t		*za = NULL;
	zip_error_t	 zerr;
	zip_stat_t	 st;
	zip_int64_t	 idx, got;
	char		*buf = NULL;
	size_t		 i;
	int		 rv = -1;

	memset(parts, 0, sizeof(parts));
	obuf_str(&parts[0], ODS_MIMETYPE);
	ods_manifest(&parts[1]);
	ods_content(o, &parts[2]);
	ods_styles(&parts[3]);
	ods_meta(o, &parts[4]);
	ods_settings(o, &parts[5]);

	zip_error_init(&zerr);
	if ((src = zip_source_buffer_create(NULL, 0, 0, &zerr)) == NULL ||
	    (za = zip_open_from_source(src, ZIP_TRUNCATE, &zerr)) == NULL) {
		xasprintf(cause, "ods: %s", zip_error_strerror(&zerr));
		goto out;
	}
	/* The archive's bytes stay in src once za is closed. */
	zip_source_keep(src);
	for (i = 0; i < nitems(names); i++) {
		if ((s = zip_source_buffer(za, parts[i].ob_b, parts[i].ob_len,
		    0)) == NULL || (idx = zip_file_add(za, names[i], s,
		    ZIP_FL_ENC_UTF_8)) < 0) {
			zip_source_free(s);
			xasprintf(cause, "ods: %s: %s", names[i],
			    zip_strerror(za));
			goto out;
		}
		/*
		 * Deflate's fastest level: at national scale the cells are
		 * hundreds of MB of repetitive XML, and the best level would
		 * spend most of the export compressing them.
		 */
		if (zip_set_file_compression(za, (zip_uint64_t)idx, i == 0 ?
		    ZIP_CM_STORE : ZIP_CM_DEFLATE, i == 0 ? 0 : 1) == -1 ||
		    zip_file_set_mtime(za, (zip_uint64_t)idx,
		    (time_t)o->o_time, 0) == -1) {
			xasprintf(cause, "ods: %s: %s", names[i],
			    zip_strerror(za));
			goto out;
		}
	}
	if (zip_close(za) == -1) {
		xasprintf(cause, "ods: %s", zip_strerror(za));
		goto out;
	}
	za = NULL;
	if (zip_source_stat(src, &st) == -1 || zip_source_open(src) == -1) {
		xasprintf(cause, "ods: %s",
		    zip_error_strerror(zip_source_error(src)));
		goto out;
	}
	buf = xmalloc((size_t)st.size + 1);
	got = zip_source_read(src, buf, st.size);
	zip_source_close(src);
	if (got < 0 || (zip_uint64_t)got != st.size) {
		xasprintf(cause, "ods: reading the archive back: %s",
		    zip_error_strerror(zip_source_error(src)));
		goto out;
	}
	buf[st.size] = '\0';
	*out = buf;
	*len = (size_t)st.size;
	buf = NULL;
	rv = 0;
out:
	if (za != NULL)
		zip_discard(za);
	zip_source_free(src);
	zip_error_fini(&zerr);
	free(buf);
	for (i = 0; i < nitems(names); i++)
		obuf_free(&parts[i]);
	return (rv);
}
