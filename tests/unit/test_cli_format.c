/*
 * opsnctl's human-readable output: sizes, ages, aligned tables. The CLI's
 * objects are not in libopsn, so this test compiles format.c itself.
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

static char *
size_of(uint64_t n)
{
	static char	 buf[32];

	format_bytes(n, buf, sizeof(buf));
	return (buf);
}

static void
format_bytes_prints_one_decimal_below_100(void **state)
{
	(void)state;
	assert_string_equal(size_of(0), "0B");
	assert_string_equal(size_of(1023), "1023B");
	assert_string_equal(size_of(1024), "1K");
	assert_string_equal(size_of(1536), "1.5K");
	assert_string_equal(size_of(16777216000ULL), "15.6G");
	assert_string_equal(size_of(512ULL << 20), "512M");
	assert_string_equal(size_of(107374182400ULL), "100G");
}

static void
format_bytes_never_prints_1024_of_a_unit(void **state)
{
	(void)state;
	assert_string_equal(size_of((1ULL << 20) - 1), "1M");
	assert_string_equal(size_of((1ULL << 30) - (1ULL << 19)), "1G");
	assert_string_equal(size_of(UINT64_MAX), "16E");
}

static void
format_ago_picks_the_largest_unit(void **state)
{
	char	 buf[32];

	(void)state;
	format_ago(1000, 1000, buf, sizeof(buf));
	assert_string_equal(buf, "just now");
	format_ago(1000, 1012, buf, sizeof(buf));
	assert_string_equal(buf, "12s ago");
	format_ago(1000, 1000 + 3 * 60 + 59, buf, sizeof(buf));
	assert_string_equal(buf, "3m ago");
	format_ago(1000, 1000 + 2 * 3600, buf, sizeof(buf));
	assert_string_equal(buf, "2h ago");
	format_ago(1000, 1000 + 4 * 86400, buf, sizeof(buf));
	assert_string_equal(buf, "4d ago");
}

static void
format_in_rounds_a_deadline_up(void **state)
{
	char	 buf[32];

	(void)state;
	/* A 90-day token looked at a second later still says 90 days. */
	format_in(1000 + 90 * 86400, 1001, buf, sizeof(buf));
	assert_string_equal(buf, "in 90d");
	format_in(1000 + 30, 1000, buf, sizeof(buf));
	assert_string_equal(buf, "in 30s");
	format_in(1000 + 61, 1000, buf, sizeof(buf));
	assert_string_equal(buf, "in 2m");
	format_in(1000, 1005, buf, sizeof(buf));
	assert_string_equal(buf, "in 0s");
}

static void
format_parse_mib_wants_whole_mebibytes(void **state)
{
	uint64_t	 mib;
	char		*cause;

	(void)state;
	assert_int_equal(format_parse_mib("8G", &mib, &cause), 0);
	assert_int_equal(mib, 8192);
	assert_int_equal(format_parse_mib("0", &mib, &cause), 0);
	assert_int_equal(mib, 0);
	assert_int_equal(format_parse_mib("1000", &mib, &cause), -1);
	assert_non_null(strstr(cause, "whole number of MiB"));
	free(cause);
	assert_int_equal(format_parse_mib("-1G", &mib, &cause), -1);
	free(cause);
}

static void
format_parse_count_takes_digits_within_bounds(void **state)
{
	int64_t	 n;
	char	*cause;

	(void)state;
	assert_int_equal(format_parse_count("0", 0, 10, &n, &cause), 0);
	assert_int_equal(n, 0);
	assert_int_equal(format_parse_count("11", 0, 10, &n, &cause), -1);
	assert_string_equal(cause, "'11' is not a whole number from 0 to 10");
	free(cause);
	assert_int_equal(format_parse_count(" 1", 0, 10, &n, &cause), -1);
	free(cause);
	assert_int_equal(format_parse_count("", 0, 10, &n, &cause), -1);
	free(cause);
}

static void
format_parse_time_reads_rfc3339_utc(void **state)
{
	int64_t	 t;

	(void)state;
	assert_int_equal(format_parse_time("2026-11-29T19:38:25Z", &t), 0);
	assert_int_equal(t, 1795981105);
	assert_int_equal(format_parse_time("2026-11-29T19:38:25.123Z", &t), 0);
	assert_int_equal(t, 1795981105);
	assert_int_equal(format_parse_time("2026-11-29T20:38:25+01:00", &t),
	    0);
	assert_int_equal(t, 1795981105);
	assert_int_equal(format_parse_time("yesterday", &t), -1);
	assert_int_equal(format_parse_time("2026-11-29T19:38:25", &t), -1);
}

static void
format_parse_size_takes_binary_units_or_bytes(void **state)
{
	uint64_t	 n;
	char		*cause;

	(void)state;
	assert_int_equal(format_parse_size("512M", &n, &cause), 0);
	assert_true(n == 512ULL << 20);
	assert_int_equal(format_parse_size("2G", &n, &cause), 0);
	assert_true(n == 2ULL << 30);
	assert_int_equal(format_parse_size("1TiB", &n, &cause), 0);
	assert_true(n == 1ULL << 40);
	assert_int_equal(format_parse_size("4096", &n, &cause), 0);
	assert_true(n == 4096);
}

static void
format_parse_size_rejects_signs_units_and_overflow(void **state)
{
	static const char *const bad[] = {
		"", "-1", " 1G", "+1G", "1GB", "1g", "G", "1.5G", "8E",
		"99999999999999999999",
	};
	uint64_t	 n;
	size_t		 i;
	char		*cause;

	(void)state;
	for (i = 0; i < nitems(bad); i++) {
		assert_int_equal(format_parse_size(bad[i], &n, &cause), -1);
		assert_non_null(cause);
		free(cause);
	}
	/* The largest a signed 64-bit API field holds still parses. */
	assert_int_equal(format_parse_size("8191P", &n, &cause), 0);
}

static const struct format_col test_cols[] = {
	{ "NAME",	"name",		NULL },
	{ "ROLES",	"roles",	NULL },
	{ "MEMORY",	"memory_bytes",	format_size },
	{ "LAST-SEEN",	"last_seen",	format_age },
};

static char *
table_of(const char *json)
{
	json_t	*items;
	char	*out = NULL;
	size_t	 len;
	FILE	*f;

	items = json_loads(json, 0, NULL);
	assert_non_null(items);
	f = open_memstream(&out, &len);
	assert_non_null(f);
	format_table(f, test_cols, nitems(test_cols), items);
	fclose(f);
	json_decref(items);
	return (out);
}

static void
format_table_aligns_columns_without_trailing_blanks(void **state)
{
	char	*out;

	(void)state;
	out = table_of("[{\"name\":\"hv1\",\"roles\":[\"mail\",\"web\"],"
	    "\"memory_bytes\":16777216000,\"last_seen\":null},"
	    "{\"name\":\"hypervisor-long\",\"roles\":[],"
	    "\"memory_bytes\":1024}]");
	assert_string_equal(out,
	    "NAME             ROLES     MEMORY  LAST-SEEN\n"
	    "hv1              mail,web  15.6G   never\n"
	    "hypervisor-long  -         1K      -\n");
	free(out);
}

static void
format_table_counts_utf8_as_one_column(void **state)
{
	char	*out;

	(void)state;
	out = table_of("[{\"name\":\"\xc3\xa9t\xc3\xa9\",\"roles\":[\"web\"],"
	    "\"memory_bytes\":0,\"last_seen\":null}]");
	assert_string_equal(out,
	    "NAME  ROLES  MEMORY  LAST-SEEN\n"
	    "\xc3\xa9t\xc3\xa9   web    0B      never\n");
	free(out);
}

static void
format_table_neutralises_terminal_escapes(void **state)
{
	char	*out;

	(void)state;
	out = table_of("[{\"name\":\"a\\u001b[31mb\",\"roles\":[\"x\\u0007\"],"
	    "\"memory_bytes\":0,\"last_seen\":null}]");
	assert_null(strchr(out, '\033'));
	assert_null(strchr(out, '\007'));
	assert_non_null(strstr(out, "a?[31mb"));
	free(out);
}

static void
format_table_prints_a_dash_for_an_empty_string(void **state)
{
	char	*out;

	(void)state;
	out = table_of("[{\"name\":\"\",\"roles\":[\"web\"],"
	    "\"memory_bytes\":0,\"last_seen\":null}]");
	assert_string_equal(out,
	    "NAME  ROLES  MEMORY  LAST-SEEN\n"
	    "-     web    0B      never\n");
	free(out);
	/* A formatter may look up a member that is not there. */
	out = format_value(NULL);
	assert_string_equal(out, "-");
	free(out);
}

static void
format_table_with_no_items_prints_the_header(void **state)
{
	char	*out;

	(void)state;
	out = table_of("[]");
	assert_string_equal(out, "NAME  ROLES  MEMORY  LAST-SEEN\n");
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(format_bytes_prints_one_decimal_below_100),
		cmocka_unit_test(format_bytes_never_prints_1024_of_a_unit),
		cmocka_unit_test(format_ago_picks_the_largest_unit),
		cmocka_unit_test(format_in_rounds_a_deadline_up),
		cmocka_unit_test(format_parse_mib_wants_whole_mebibytes),
		cmocka_unit_test(
		    format_parse_count_takes_digits_within_bounds),
		cmocka_unit_test(format_parse_time_reads_rfc3339_utc),
		cmocka_unit_test(format_parse_size_takes_binary_units_or_bytes),
		cmocka_unit_test(
		    format_parse_size_rejects_signs_units_and_overflow),
		cmocka_unit_test(
		    format_table_aligns_columns_without_trailing_blanks),
		cmocka_unit_test(format_table_counts_utf8_as_one_column),
		cmocka_unit_test(format_table_neutralises_terminal_escapes),
		cmocka_unit_test(
		    format_table_prints_a_dash_for_an_empty_string),
		cmocka_unit_test(format_table_with_no_items_prints_the_header),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
