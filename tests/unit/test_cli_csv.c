/*
 * opsnctl's CSV reader and the member records built from it: what a
 * spreadsheet writes (quotes, BOM, CRLF, ',' or ';') must read as the
 * operator sees it, and a flaw must name its line before anything is sent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "opsn/util.h"
#include "cli.h"

#define HEADER	"insee;siren;name;population;kind"

/* Parse s, which must succeed. */
static void
parse_ok(const char *s, struct csv *csv)
{
	char	*cause = NULL;

	if (csv_parse("t.csv", s, strlen(s), csv, &cause) == -1)
		fail_msg("csv_parse: %s", cause);
	assert_null(cause);
}

/* Parse s, which must fail; the reason, to free. */
static char *
parse_fails(const char *s, size_t len)
{
	struct csv	 csv;
	char		*cause = NULL;

	assert_int_equal(csv_parse("t.csv", s, len, &csv, &cause), -1);
	assert_non_null(cause);
	assert_int_equal(csv.cv_nrows, 0);
	return (cause);
}

/* Build records from s, which must fail; the reason, to free. */
static char *
records_fail(const char *s)
{
	json_t	*records = (json_t *)1;
	char	*cause = NULL;

	assert_int_equal(import_csv_records("m.csv", s, strlen(s), &records,
	    &cause), -1);
	assert_null(records);
	assert_non_null(cause);
	return (cause);
}

static void
csv_quoted_fields_keep_separators_quotes_and_newlines(void **state)
{
	struct csv	 csv;

	(void)state;
	parse_ok(HEADER "\n"
	    "31001;\"213100019\";\"Agassac; \"\"le\"\" village\";115;commune\n"
	    "31002;;\"Aignes\nsur deux lignes\";;commune\n"
	    "31003;;\"\";1;commune\n", &csv);
	assert_int_equal(csv.cv_sep, ';');
	assert_int_equal(csv.cv_nrows, 4);
	assert_int_equal(csv.cv_rows[1].cr_n, 5);
	assert_string_equal(csv.cv_rows[1].cr_fields[1], "213100019");
	assert_string_equal(csv.cv_rows[1].cr_fields[2],
	    "Agassac; \"le\" village");
	assert_string_equal(csv.cv_rows[2].cr_fields[2],
	    "Aignes\nsur deux lignes");
	assert_string_equal(csv.cv_rows[2].cr_fields[1], "");
	assert_string_equal(csv.cv_rows[3].cr_fields[2], "");
	/* A record starts on its first line; the next one counts both. */
	assert_int_equal(csv.cv_rows[2].cr_line, 3);
	assert_int_equal(csv.cv_rows[3].cr_line, 5);
	csv_free(&csv);
}

static void
csv_skips_the_utf8_bom_and_reads_crlf_and_commas(void **state)
{
	struct csv	 csv;

	(void)state;
	parse_ok("\xef\xbb\xbfinsee,siren,name,population,kind\r\n"
	    "31001,213100019,\"Agassac, Haute-Garonne\",115,commune\r\n"
	    "\r\n"
	    "31002,213100027,Aignes,283,commune", &csv);
	assert_int_equal(csv.cv_sep, ',');
	assert_int_equal(csv.cv_nrows, 3);
	assert_string_equal(csv.cv_rows[0].cr_fields[0], "insee");
	assert_string_equal(csv.cv_rows[1].cr_fields[2],
	    "Agassac, Haute-Garonne");
	/* No '\r' left at the end of a line's last field. */
	assert_string_equal(csv.cv_rows[1].cr_fields[4], "commune");
	/* The blank line 3 is no record but still a line. */
	assert_int_equal(csv.cv_rows[2].cr_line, 4);
	assert_string_equal(csv.cv_rows[2].cr_fields[4], "commune");
	csv_free(&csv);
}

static void
csv_an_unclosed_quote_names_the_line_it_opens_on(void **state)
{
	const char	*s = HEADER "\n31001;;Agassac;1;commune\n"
			    "31002;;\"Aignes;1;commune\n31003;;A;1;commune\n";
	char		*cause;

	(void)state;
	cause = parse_fails(s, strlen(s));
	assert_string_equal(cause, "t.csv:3: field 3: the quote opened here "
	    "is never closed");
	free(cause);
}

static void
csv_text_after_a_closing_quote_is_refused(void **state)
{
	const char	*s = HEADER "\n31001;;\"Agassac\"x;1;commune\n";
	char		*cause;

	(void)state;
	cause = parse_fails(s, strlen(s));
	assert_non_null(strstr(cause, "t.csv:2: field 3: text after the "
	    "closing quote"));
	free(cause);
}

static void
csv_a_nul_byte_is_refused(void **state)
{
	static const char s[] = HEADER "\n31001;;Aga\0ssac;1;commune\n";
	char		*cause;

	(void)state;
	cause = parse_fails(s, sizeof(s) - 1);
	assert_non_null(strstr(cause, "t.csv:2: a NUL byte"));
	free(cause);
}

static void
records_name_their_line_and_omit_empty_codes(void **state)
{
	json_t	*records, *r;
	char	*cause = NULL;
	const char *s = HEADER "\r\n"
	    "31001;213100019; Agassac ;115;commune\r\n"
	    "\r\n"
	    ";200068641;\"CA Le Muretain Agglo\";131668;EPCI\r\n"
	    ";;Office;;other\r\n";

	(void)state;
	if (import_csv_records("m.csv", s, strlen(s), &records, &cause) == -1)
		fail_msg("import_csv_records: %s", cause);
	assert_int_equal(json_array_size(records), 3);
	r = json_array_get(records, 0);
	assert_string_equal(json_string_value(json_object_get(r, "where")),
	    "line 2");
	assert_string_equal(json_string_value(json_object_get(r, "insee")),
	    "31001");
	assert_string_equal(json_string_value(json_object_get(r, "name")),
	    "Agassac");
	assert_int_equal(json_integer_value(json_object_get(r, "population")),
	    115);
	r = json_array_get(records, 1);
	assert_string_equal(json_string_value(json_object_get(r, "where")),
	    "line 4");
	assert_null(json_object_get(r, "insee"));
	assert_string_equal(json_string_value(json_object_get(r, "kind")),
	    "epci");
	r = json_array_get(records, 2);
	assert_null(json_object_get(r, "siren"));
	assert_null(json_object_get(r, "population"));
	json_decref(records);
}

static void
records_refuse_a_wrong_field_count_with_its_line(void **state)
{
	char	*cause;

	(void)state;
	cause = records_fail(HEADER "\n31001;213100019;Agassac;115;commune\n"
	    "\n31002;213100027;Aignes;283\n");
	assert_string_equal(cause, "m.csv:4: fields: 4 instead of 5 "
	    "(separator ';')");
	free(cause);
}

static void
records_refuse_a_population_that_is_no_number(void **state)
{
	char	*cause;

	(void)state;
	cause = records_fail(HEADER "\n31001;213100019;Agassac;1 15;commune\n");
	assert_string_equal(cause, "m.csv:2: population: '1 15' is not a "
	    "whole number");
	free(cause);
	cause = records_fail(HEADER "\n31001;213100019;Agassac;-3;commune\n");
	assert_non_null(strstr(cause, "m.csv:2: population:"));
	free(cause);
}

static void
records_refuse_a_file_without_the_header(void **state)
{
	char	*cause;

	(void)state;
	cause = records_fail("31001;213100019;Agassac;115;commune\n");
	assert_non_null(strstr(cause, "m.csv:1: header: unknown column "
	    "'31001'"));
	free(cause);
	cause = records_fail("insee;siren;name;population\n");
	assert_non_null(strstr(cause, "m.csv:1: header: no 'kind' column"));
	free(cause);
	cause = records_fail(HEADER "\n");
	assert_non_null(strstr(cause, "only the header"));
	free(cause);
}

static void
records_refuse_text_that_is_not_utf8(void **state)
{
	char	*cause;

	(void)state;
	/* "Agassac" with an 'é' in Latin-1, as some spreadsheets save it. */
	cause = records_fail(HEADER "\n31001;213100019;Agass\xe9;115;commune\n");
	assert_string_equal(cause, "m.csv:2: name: not UTF-8 text (save the "
	    "file as UTF-8)");
	free(cause);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
		    csv_quoted_fields_keep_separators_quotes_and_newlines),
		cmocka_unit_test(
		    csv_skips_the_utf8_bom_and_reads_crlf_and_commas),
		cmocka_unit_test(
		    csv_an_unclosed_quote_names_the_line_it_opens_on),
		cmocka_unit_test(csv_text_after_a_closing_quote_is_refused),
		cmocka_unit_test(csv_a_nul_byte_is_refused),
		cmocka_unit_test(records_name_their_line_and_omit_empty_codes),
		cmocka_unit_test(
		    records_refuse_a_wrong_field_count_with_its_line),
		cmocka_unit_test(
		    records_refuse_a_population_that_is_no_number),
		cmocka_unit_test(records_refuse_a_file_without_the_header),
		cmocka_unit_test(records_refuse_text_that_is_not_utf8),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
