/*
 * The operator's calendar (controller/core/calendar.c): local midnights
 * and offsets in the zones an OPSN may work in, checked against the C
 * library's own reading of the system's zoneinfo, day by day.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"

/* What mktime() says local midnight of y-m-d is, with TZ set to tz. */
static int64_t
libc_midnight(int y, int m, int d, int *ambiguous)
{
	struct tm	 tm, back;
	time_t		 t, prev;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	tm.tm_isdst = -1;
	t = mktime(&tm);
	/* A midnight that happens twice (clocks back over it): skip. */
	prev = t - 3600;
	localtime_r(&prev, &back);
	*ambiguous = back.tm_mday == d && back.tm_hour == 23;
	return ((int64_t)t);
}

static void
agree_with_libc(const char *tz, int from, int to)
{
	char	*cause = NULL;
	int	 y, m, d, amb, checked = 0;
	int64_t	 ours, theirs;
	static const int dim[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31,
	    30, 31 };

	if (calendar_init(tz, &cause) == -1)
		fail_msg("%s", cause);
	assert_string_equal(calendar_tz(), tz);
	setenv("TZ", tz, 1);
	tzset();
	for (y = from; y <= to; y++)
		for (m = 1; m <= 12; m++)
			for (d = 1; d <= dim[m - 1]; d++) {
				if (m == 2 && d == 29 && !(y % 4 == 0 &&
				    (y % 100 != 0 || y % 400 == 0)))
					continue;
				theirs = libc_midnight(y, m, d, &amb);
				if (amb)
					continue;
				ours = calendar_midnight(y, m, d);
				if (ours != theirs)
					fail_msg("%s %04d-%02d-%02d: %lld, libc "
					    "%lld", tz, y, m, d, (long long)ours,
					    (long long)theirs);
				assert_int_equal(calendar_day(ours + 3600),
				    ours);
				checked++;
			}
	unsetenv("TZ");
	tzset();
	assert_true(checked > 300 * (to - from));
}

static void
paris_midnights_agree_with_libc(void **state)
{
	agree_with_libc("Europe/Paris", 1975, 2060);
}

/* An OPSN overseas: La Réunion, Guyane, Nouvelle-Calédonie, Saint-Pierre. */
static void
overseas_midnights_agree_with_libc(void **state)
{
	agree_with_libc("Indian/Reunion", 1990, 2040);
	agree_with_libc("America/Cayenne", 1990, 2040);
	agree_with_libc("Pacific/Noumea", 1990, 2040);
	agree_with_libc("America/Miquelon", 1990, 2040);
}

/* Chile's clocks jump from 00:00 to 01:00: the day starts at the jump. */
static void
a_day_without_midnight_starts_at_the_jump(void **state)
{
	char	*cause = NULL;
	struct tm tm;

	agree_with_libc("America/Santiago", 2015, 2030);
	assert_int_equal(calendar_init("America/Santiago", &cause), 0);
	/* 2026-09-06: 00:00 -04 becomes 01:00 -03 (04:00Z). */
	calendar_local(calendar_midnight(2026, 9, 6), &tm);
	assert_int_equal(tm.tm_mday, 6);
	assert_int_equal(tm.tm_hour, 1);
}

static void
months_start_at_local_midnight(void **state)
{
	char	*cause = NULL;

	assert_int_equal(calendar_init("Europe/Paris", &cause), 0);
	/* 2026-10-31T23:30Z is 1 November 00:30 in Paris (CET). */
	assert_int_equal(calendar_month(1793489400LL), 1793487600LL);
	assert_int_equal(calendar_offset(1782856800LL), 7200);
	assert_int_equal(calendar_init("Indian/Reunion", &cause), 0);
	/* The same instant is 1 November 03:30 in La Réunion (+04). */
	assert_int_equal(calendar_month(1793489400LL), 1793476800LL);
}

static void
unknown_zones_are_refused(void **state)
{
	char	*cause = NULL;

	assert_int_equal(calendar_init("Mars/Olympus", &cause), -1);
	assert_non_null(strstr(cause, "Mars/Olympus"));
	free(cause);
	cause = NULL;
	assert_int_equal(calendar_init("../../etc/passwd", &cause), -1);
	free(cause);
	assert_false(calendar_tz_ok("/etc/localtime"));
	assert_true(calendar_tz_ok("UTC"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(paris_midnights_agree_with_libc),
		cmocka_unit_test(overseas_midnights_agree_with_libc),
		cmocka_unit_test(a_day_without_midnight_starts_at_the_jump),
		cmocka_unit_test(months_start_at_local_midnight),
		cmocka_unit_test(unknown_zones_are_refused),
	};

	log_init("test_ctl_calendar", LOG_LEVEL_WARN, NULL);
	return (cmocka_run_group_tests_name("calendar", tests, NULL, NULL));
}
