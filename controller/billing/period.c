/*
 * Calendar arithmetic for billing: civil dates as day numbers (pure
 * integer arithmetic, no time zone), periods (a month, a quarter, a year)
 * and the UTC instant of a local midnight in the operator's zone.
 *
 * Days are counted on the calendar, never as 86,400 seconds: the day of a
 * DST change has 23 or 25 hours but weighs one day in a pro rata. Only the
 * usage hours a period holds depend on the zone (the operator's calendar,
 * core/calendar.c): they are the UTC hours from local midnight of its
 * first day to local midnight after its last.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opsn/util.h"
#include "core/core.h"
#include "billing.h"

/* Days since 1970-01-01 (H. Hinnant's days_from_civil). */
int64_t
period_days(int y, int m, int d)
{
	int64_t	 era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (era * 146097 + doe - 719468);
}

/* The civil date of a day number (civil_from_days). */
void
period_civil(int64_t z, int *y, int *m, int *d)
{
	int64_t	 era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

int
period_days_in_month(int y, int m)
{
	static const int dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
	    30, 31 };

	if (m == 2 && period_days_in_year(y) == 366)
		return (29);
	return (dim[m - 1]);
}

int
period_days_in_year(int y)
{
	return ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 366 : 365);
}

/* "YYYY-MM-DD" exactly, a real date from 1900 to 2200. */
int
period_parse_day(const char *s, int64_t *day)
{
	int	 y, m, d, i;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return (-1);
	for (i = 0; i < 10; i++)
		if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
			return (-1);
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	if (y < 1900 || y > 2200 || m < 1 || m > 12 || d < 1 ||
	    d > period_days_in_month(y, m))
		return (-1);
	*day = period_days(y, m, d);
	return (0);
}

void
period_fmt_day(int64_t day, char *buf, size_t len)
{
	int	 y, m, d;

	period_civil(day, &y, &m, &d);
	snprintf(buf, len, "%04d-%02d-%02d", y, m, d);
}

/* "2026-10" (a month), "2026-Q4" (a quarter) or "2026" (a year). */
int
period_parse(const char *s, struct period *p, char **cause)
{
	int	 y, m = 0, q = 0, i;
	size_t	 len = strlen(s);

	memset(p, 0, sizeof(*p));
	for (i = 0; i < 4; i++)
		if (!isdigit((unsigned char)s[i]))
			goto bad;
	y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 +
	    (s[3] - '0');
	if (y < 1970 || y > 2199)
		goto bad;
	if (len == 4) {
		p->p_first = period_days(y, 1, 1);
		p->p_end = period_days(y + 1, 1, 1);
	} else if (len == 7 && s[4] == '-' && s[5] == 'Q' &&
	    s[6] >= '1' && s[6] <= '4') {
		q = s[6] - '0';
		p->p_first = period_days(y, 3 * q - 2, 1);
		p->p_end = q == 4 ? period_days(y + 1, 1, 1) :
		    period_days(y, 3 * q + 1, 1);
	} else if (len == 7 && s[4] == '-' && isdigit((unsigned char)s[5]) &&
	    isdigit((unsigned char)s[6])) {
		m = (s[5] - '0') * 10 + (s[6] - '0');
		if (m < 1 || m > 12)
			goto bad;
		p->p_first = period_days(y, m, 1);
		p->p_end = m == 12 ? period_days(y + 1, 1, 1) :
		    period_days(y, m + 1, 1);
	} else
		goto bad;
	strlcpy(p->p_label, s, sizeof(p->p_label));
	p->p_year = y;
	return (0);
bad:
	xasprintf(cause, "period '%.32s' must be a month (2026-10), a quarter "
	    "(2026-Q4) or a year (2026)", s);
	return (-1);
}

/* Local midnight at the start of each day, in the operator's calendar. */
void
period_utc(const int64_t *days, int64_t *utc, size_t n)
{
	size_t	 i;
	int	 y, m, d;

	for (i = 0; i < n; i++) {
		period_civil(days[i], &y, &m, &d);
		utc[i] = calendar_midnight(y, m, d);
	}
}

/* Months covered by [from, end), in 1/PERIOD_MONTH_DIV. */
int64_t
period_month_fraction(int64_t from, int64_t end)
{
	int64_t	 total = 0, day = from, next;
	int	 y, m, d, dim;

	while (day < end) {
		period_civil(day, &y, &m, &d);
		dim = period_days_in_month(y, m);
		next = day - (d - 1) + dim;	/* first day of next month */
		if (next > end)
			next = end;
		total += (next - day) * (PERIOD_MONTH_DIV / dim);
		day = next;
	}
	return (total);
}
