/*
 * The operator's calendar: one time zone for the whole controller
 * ([operator] tz, default Europe/Paris), so that metering's usage days and
 * billing's statement periods always start at the same local midnight,
 * for an OPSN in Paris as for one in La Réunion or Guyane.
 *
 * The zone's UTC offsets are read once, at start, from the system's
 * zoneinfo through localtime_r() (with TZ set while the table is built,
 * before any other thread runs), into a table of transitions from 1970 to
 * 2200. Everything after that is pure arithmetic on the table: safe on the
 * thread pool, and never touching the environment again.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opsn/util.h"
#include "core.h"

#define CAL_FIRST_YEAR	1970
#define CAL_LAST_YEAR	2200
#define CAL_TZ_MAX	64

/* From cal_at[i] on (UTC seconds), local time is UTC + cal_off[i]. */
struct cal_change {
	int64_t	 cc_at;
	int32_t	 cc_off;
};

static struct {
	char			 tz[CAL_TZ_MAX + 1];
	struct cal_change	*changes;
	size_t			 n;
} cal;

/* A zone name the system's zoneinfo has (no path tricks). */
int
calendar_tz_ok(const char *tz)
{
	struct stat	 sb;
	char		*path;
	const char	*p;
	int		 ok;

	if (*tz == '\0' || strlen(tz) > CAL_TZ_MAX || *tz == '/' ||
	    strstr(tz, "..") != NULL)
		return (0);
	for (p = tz; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr("/_-+", *p) == NULL)
			return (0);
	xasprintf(&path, "/usr/share/zoneinfo/%s", tz);
	ok = stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
	free(path);
	return (ok);
}

static int32_t
calendar_libc_offset(int64_t t)
{
	struct tm	 tm;
	time_t		 tt = (time_t)t;

	localtime_r(&tt, &tm);
	return ((int32_t)tm.tm_gmtoff);
}

static void
calendar_add(int64_t at, int32_t off, size_t *cap)
{
	if (cal.n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		cal.changes = xrealloc(cal.changes, *cap *
		    sizeof(*cal.changes));
	}
	cal.changes[cal.n].cc_at = at;
	cal.changes[cal.n].cc_off = off;
	cal.n++;
}

/*
 * Use zone tz from now on. Call it before any thread runs (it sets TZ for
 * the time it reads the zone, then puts the process's own back).
 */
int
calendar_init(const char *tz, char **cause)
{
	const char	*old;
	char		*saved = NULL;
	int64_t		 t, end, lo, hi, mid;
	int32_t		 off, o;
	size_t		 cap = 0;
	struct tm	 tm;

	if (!calendar_tz_ok(tz)) {
		xasprintf(cause, "time zone '%.64s' is not in the system's "
		    "zoneinfo (install tzdata, or name a zone such as "
		    "Europe/Paris or Indian/Reunion)", tz);
		return (-1);
	}
	if ((old = getenv("TZ")) != NULL)
		saved = xstrdup(old);
	setenv("TZ", tz, 1);
	tzset();
	free(cal.changes);
	cal.changes = NULL;
	cal.n = 0;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = CAL_LAST_YEAR + 1 - 1900;
	tm.tm_mday = 1;
	end = (int64_t)timegm(&tm);
	t = 0;
	off = calendar_libc_offset(t);
	calendar_add(INT64_MIN, off, &cap);
	/* Zones change at most a few times a year: a day's step finds each. */
	for (t = 43200; t < end; t += 43200) {
		if ((o = calendar_libc_offset(t)) == off)
			continue;
		for (lo = t - 43200, hi = t; hi - lo > 1; ) {
			mid = lo + (hi - lo) / 2;
			if (calendar_libc_offset(mid) == off)
				lo = mid;
			else
				hi = mid;
		}
		calendar_add(hi, o, &cap);
		off = o;
	}
	if (saved != NULL) {
		setenv("TZ", saved, 1);
		free(saved);
	} else
		unsetenv("TZ");
	tzset();
	strlcpy(cal.tz, tz, sizeof(cal.tz));
	return (0);
}

/* The zone in use. */
const char *
calendar_tz(void)
{
	return (cal.tz);
}

/* The index of the last change at or before t. */
static size_t
calendar_index(int64_t t)
{
	size_t	 lo = 0, hi = cal.n, mid;

	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		if (cal.changes[mid].cc_at <= t)
			lo = mid;
		else
			hi = mid;
	}
	return (lo);
}

/* Seconds east of UTC at instant t. */
int64_t
calendar_offset(int64_t t)
{
	return (cal.n == 0 ? 0 : cal.changes[calendar_index(t)].cc_off);
}

/*
 * The UTC instant of local midnight on y-m-d: the first instant whose
 * local date is that day. Where a zone's clocks jump over midnight, the
 * day starts at the jump.
 */
int64_t
calendar_midnight(int y, int m, int d)
{
	struct tm	 tm;
	int64_t		 local, t1, t2, o1, o2;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	local = (int64_t)timegm(&tm);
	/* With the offset of the day before. */
	o1 = calendar_offset(local - 86400);
	t1 = local - o1;
	if ((o2 = calendar_offset(t1)) == o1)
		return (t1);
	/* A change came in between: with the new offset. */
	t2 = local - o2;
	if (calendar_offset(t2) == o2)
		return (t2);
	/* Midnight does not exist that day: the jump starts it. */
	return (cal.changes[calendar_index(t1)].cc_at);
}

/* The local calendar fields of instant t. */
void
calendar_local(int64_t t, struct tm *tm)
{
	time_t	 l = (time_t)(t + calendar_offset(t));

	gmtime_r(&l, tm);
}

/* The local midnight that starts the day holding t. */
int64_t
calendar_day(int64_t t)
{
	struct tm	 tm;

	calendar_local(t, &tm);
	return (calendar_midnight(tm.tm_year + 1900, tm.tm_mon + 1,
	    tm.tm_mday));
}

/* The local midnight that starts the month holding t. */
int64_t
calendar_month(int64_t t)
{
	struct tm	 tm;

	calendar_local(t, &tm);
	return (calendar_midnight(tm.tm_year + 1900, tm.tm_mon + 1, 1));
}
