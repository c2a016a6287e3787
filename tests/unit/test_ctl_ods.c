/*
 * The OpenDocument spreadsheet writer: the archive layout ODF readers
 * rely on (mimetype first, stored, at byte 38), typed cells (codes stay
 * text, amounts are currency values written from cents, dates are dates),
 * escaping and accents, the frozen header rows, and well-formed XML
 * (checked with xmllint).
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
#include <zip.h>

#include "opsn/util.h"
#include "http/http.h"

/* One member of an archive held in memory, NUL-terminated. */
static char *
unzip_member(const char *zipb, size_t ziplen, const char *name)
{
	zip_source_t	*src;
	zip_t		*za;
	zip_file_t	*zf;
	zip_stat_t	 st;
	zip_error_t	 err;
	char		*b;

	zip_error_init(&err);
	src = zip_source_buffer_create(zipb, ziplen, 0, &err);
	assert_non_null(src);
	za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err);
	assert_non_null(za);
	if (zip_stat(za, name, 0, &st) == -1) {
		zip_close(za);
		return (NULL);
	}
	b = xmalloc(st.size + 1);
	zf = zip_fopen(za, name, 0);
	assert_non_null(zf);
	assert_int_equal(zip_fread(zf, b, st.size), (zip_int64_t)st.size);
	b[st.size] = '\0';
	zip_fclose(zf);
	zip_close(za);
	zip_error_fini(&err);
	return (b);
}

/* Is the text well-formed XML? (xmllint --noout) */
static int
xml_well_formed(const char *text)
{
	char	 path[] = "/tmp/opsn-ods-XXXXXX", cmd[128];
	int	 fd, rc;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	snprintf(cmd, sizeof(cmd), "xmllint --noout %s", path);
	rc = system(cmd);
	unlink(path);
	return (rc == 0);
}

static struct ods *
sample(void)
{
	static const char *const head[] = { "insee", "member", "quantity",
	    "total", "from" };
	struct ods	*o;

	o = ods_new();
	ods_sheet(o, "summary");
	ods_header(o, head, nitems(head));
	ods_row(o);
	ods_text(o, "01001");
	ods_text(o, "L'Abergement-Cl\xc3\xa9menciat");
	assert_int_equal(ods_number(o, "1234.5678"), 0);
	ods_cents(o, 11436);
	assert_int_equal(ods_date(o, "2026-11-01"), 0);
	ods_row(o);
	ods_text(o, "2A004");
	ods_text(o, "Ajaccio <&> \"quotes\"  two spaces");
	ods_int(o, 42);
	ods_cents(o, -1250);
	ods_empty(o);
	ods_sheet(o, "lines");
	ods_row(o);
	ods_text(o, "no header here");
	return (o);
}

static void
archive_starts_with_a_stored_mimetype(void **state)
{
	struct ods	*o = sample();
	char		*zipb = NULL, *cause = NULL;
	size_t		 len = 0, ml = strlen(ODS_MIMETYPE);
	const unsigned char *u;

	(void)state;
	assert_int_equal(ods_finish(o, &zipb, &len, &cause), 0);
	ods_free(o);
	u = (const unsigned char *)zipb;
	assert_true(len > 38 + ml);
	assert_memory_equal(zipb, "PK\x03\x04", 4);
	/* Method 0 (stored), name length 8, no extra field. */
	assert_int_equal(u[8] | u[9] << 8, 0);
	assert_int_equal(u[26] | u[27] << 8, 8);
	assert_int_equal(u[28] | u[29] << 8, 0);
	assert_memory_equal(zipb + 30, "mimetype", 8);
	assert_memory_equal(zipb + 38, ODS_MIMETYPE, ml);
	free(zipb);
}

static void
cells_are_typed_escaped_and_well_formed(void **state)
{
	struct ods	*o = sample();
	char		*zipb = NULL, *cause = NULL, *content, *man, *settings;
	size_t		 len = 0;

	(void)state;
	assert_int_equal(ods_finish(o, &zipb, &len, &cause), 0);
	ods_free(o);
	content = unzip_member(zipb, len, "content.xml");
	man = unzip_member(zipb, len, "META-INF/manifest.xml");
	settings = unzip_member(zipb, len, "settings.xml");
	assert_non_null(content);
	assert_non_null(man);
	assert_non_null(settings);

	/* The INSEE code is a string cell: its leading zero stays. */
	assert_non_null(strstr(content, "office:value-type=\"string\">"
	    "<text:p>01001</text:p>"));
	assert_non_null(strstr(content, "<text:p>2A004</text:p>"));
	/* UTF-8 as is; markup escaped; the second space kept. */
	assert_non_null(strstr(content,
	    "L&apos;Abergement-Cl\xc3\xa9menciat"));
	assert_non_null(strstr(content, "Ajaccio &lt;&amp;&gt; &quot;quotes"
	    "&quot; <text:s/>two spaces"));
	/* Numbers and amounts carry exact values from integers. */
	assert_non_null(strstr(content, "office:value-type=\"float\" "
	    "office:value=\"1234.5678\""));
	assert_non_null(strstr(content, "office:value=\"42\""));
	assert_non_null(strstr(content, "office:value-type=\"currency\" "
	    "office:currency=\"EUR\" office:value=\"114.36\""));
	assert_non_null(strstr(content, "office:value=\"-12.50\""));
	assert_non_null(strstr(content, "office:value-type=\"date\" "
	    "office:date-value=\"2026-11-01\""));
	assert_non_null(strstr(content, "number:decimal-places=\"2\""));
	/* One table per sheet; the header in table-header-rows. */
	assert_non_null(strstr(content, "table:name=\"summary\""));
	assert_non_null(strstr(content, "table:name=\"lines\""));
	assert_non_null(strstr(content, "<table:table-header-rows>"));
	/* The header of "summary" is frozen; "lines" has none. */
	assert_non_null(strstr(settings, "config:name=\"summary\""));
	assert_null(strstr(settings, "config:name=\"lines\""));
	assert_non_null(strstr(settings, "\"VerticalSplitMode\" "
	    "config:type=\"short\">2<"));
	assert_non_null(strstr(man, ODS_MIMETYPE));

	assert_true(xml_well_formed(content));
	assert_true(xml_well_formed(man));
	assert_true(xml_well_formed(settings));
	free(content);
	free(man);
	free(settings);
	free(zipb);
}

static void
same_cells_give_the_same_bytes(void **state)
{
	struct ods	*a = sample(), *b = sample();
	char		*za = NULL, *zb = NULL, *cause = NULL;
	size_t		 la = 0, lb = 0;

	(void)state;
	assert_int_equal(ods_finish(a, &za, &la, &cause), 0);
	assert_int_equal(ods_finish(b, &zb, &lb, &cause), 0);
	assert_int_equal(la, lb);
	assert_memory_equal(za, zb, la);
	ods_free(a);
	ods_free(b);
	free(za);
	free(zb);
}

static void
bad_numbers_and_dates_become_text_and_bad_utf8_is_replaced(void **state)
{
	struct ods	*o;
	char		*zipb = NULL, *cause = NULL, *content;
	size_t		 len = 0;

	(void)state;
	o = ods_new();
	ods_sheet(o, "odd: [names]");
	ods_row(o);
	assert_int_equal(ods_number(o, "1e5"), -1);
	assert_int_equal(ods_number(o, "12,5"), -1);
	assert_int_equal(ods_date(o, "2026-13-01"), -1);
	ods_text(o, "bad \xff byte and a \x01 control");
	ods_cents(o, INT64_MIN);
	assert_int_equal(ods_finish(o, &zipb, &len, &cause), 0);
	ods_free(o);
	content = unzip_member(zipb, len, "content.xml");
	assert_non_null(strstr(content, "table:name=\"odd_ _names_\""));
	assert_non_null(strstr(content, "<text:p>1e5</text:p>"));
	assert_non_null(strstr(content, "<text:p>2026-13-01</text:p>"));
	assert_non_null(strstr(content, "bad \xef\xbf\xbd byte"));
	assert_null(strchr(content, '\x01'));
	assert_non_null(strstr(content,
	    "office:value=\"-92233720368547758.08\""));
	assert_true(xml_well_formed(content));
	free(content);
	free(zipb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(archive_starts_with_a_stored_mimetype),
		cmocka_unit_test(cells_are_typed_escaped_and_well_formed),
		cmocka_unit_test(same_cells_give_the_same_bytes),
		cmocka_unit_test(
		    bad_numbers_and_dates_become_text_and_bad_utf8_is_replaced),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
