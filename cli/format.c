/*
 * Human-readable output: aligned tables, "field: value" listings, sizes and
 * ages. Nothing here touches the network or the settings, so the unit tests
 * can link it alone.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define FORMAT_GAP	2	/* spaces between columns */
#define FORMAT_MIB	((uint64_t)1 << 20)

static char	*format_cell(const struct format_col *, json_t *);
static void	 format_pad(FILE *, size_t);

/*
 * Strings come from the controller, and some (versions, addresses) from the
 * node agents before that: never let one write escape sequences to the
 * operator's terminal.
 */
char *
format_clean(const char *s)
{
	char	*out, *p;

	out = xstrdup(s);
	for (p = out; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	return (out);
}

size_t
format_width(const char *s)
{
	size_t	 n = 0;

	for (; *s != '\0'; s++) {
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	}
	return (n);
}

void
format_bytes(uint64_t n, char *buf, size_t len)
{
	static const char	 units[] = "KMGTPE";
	uint64_t		 div = 1, tenths;
	size_t			 u;

	if (n < 1024) {
		snprintf(buf, len, "%" PRIu64 "B", n);
		return;
	}
	/* The first unit where the value as printed stays below 1024. */
	for (u = 0; u < sizeof(units) - 1; u++) {
		div *= 1024;
		tenths = (n / div) * 10 + ((n % div) * 10 + div / 2) / div;
		if (tenths < 10235 || u == sizeof(units) - 2)
			break;
	}
	if (tenths >= 1000 || tenths % 10 == 0)
		snprintf(buf, len, "%" PRIu64 "%c", (tenths + 5) / 10,
		    units[u]);
	else
		snprintf(buf, len, "%" PRIu64 ".%" PRIu64 "%c", tenths / 10,
		    tenths % 10, units[u]);
}

/*
 * Binary units only, as disks and memory are counted: "2G" is 2 GiB. A
 * bare number is bytes.
 */
int
format_parse_size(const char *s, uint64_t *out, char **cause)
{
	static const char	 units[] = "KMGTPE";
	const char		*u;
	char			*end;
	unsigned long long	 n;
	uint64_t		 mul = 1;

	*cause = NULL;
	/* strtoull would take blanks and a sign. */
	if (*s < '0' || *s > '9') {
		xasprintf(cause, "'%s' is not a size (e.g. 512M, 2G, 1T)", s);
		return (-1);
	}
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno != 0) {
		xasprintf(cause, "'%s' is too large", s);
		return (-1);
	}
	if (*end != '\0') {
		if ((u = strchr(units, *end)) == NULL || (end[1] != '\0' &&
		    strcmp(end + 1, "i") != 0 && strcmp(end + 1, "iB") != 0)) {
			xasprintf(cause, "'%s': unknown unit '%s' (use K, M, "
			    "G or T)", s, end);
			return (-1);
		}
		mul = (uint64_t)1 << (10 * (u - units + 1));
	}
	/* The API takes signed 64-bit numbers. */
	if (n > (uint64_t)INT64_MAX / mul) {
		xasprintf(cause, "'%s' is too large", s);
		return (-1);
	}
	*out = (uint64_t)n * mul;
	return (0);
}

int
format_parse_mib(const char *s, uint64_t *mib, char **cause)
{
	uint64_t	 bytes;

	if (format_parse_size(s, &bytes, cause) == -1)
		return (-1);
	if (bytes % FORMAT_MIB != 0) {
		xasprintf(cause, "'%s' is not a whole number of MiB (a bare "
		    "number is bytes: give 512M, 2G)", s);
		return (-1);
	}
	*mib = bytes / FORMAT_MIB;
	return (0);
}

int
format_parse_count(const char *s, int64_t min, int64_t max, int64_t *out,
    char **cause)
{
	char		*end;
	long long	 n;

	*cause = NULL;
	errno = 0;
	n = strtoll(s, &end, 10);
	/* strtoll would take blanks, a sign and an empty string. */
	if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 || n < min ||
	    n > max) {
		xasprintf(cause, "'%s' is not a whole number from %" PRId64
		    " to %" PRId64, s, min, max);
		return (-1);
	}
	*out = (int64_t)n;
	return (0);
}

void
format_in(int64_t then, int64_t now, char *buf, size_t len)
{
	int64_t	 d = then - now;

	/* Rounded up: a token made for 90d says "in 90d", not "in 89d". */
	if (d < 60)
		snprintf(buf, len, "in %" PRId64 "s", d < 1 ? 0 : d);
	else if (d < 3600)
		snprintf(buf, len, "in %" PRId64 "m", (d + 59) / 60);
	else if (d < 86400)
		snprintf(buf, len, "in %" PRId64 "h", (d + 3599) / 3600);
	else
		snprintf(buf, len, "in %" PRId64 "d", (d + 86399) / 86400);
}

void
format_ago(int64_t then, int64_t now, char *buf, size_t len)
{
	int64_t	 d = now - then;

	if (d < 1)
		snprintf(buf, len, "just now");
	else if (d < 60)
		snprintf(buf, len, "%" PRId64 "s ago", d);
	else if (d < 3600)
		snprintf(buf, len, "%" PRId64 "m ago", d / 60);
	else if (d < 86400)
		snprintf(buf, len, "%" PRId64 "h ago", d / 3600);
	else
		snprintf(buf, len, "%" PRId64 "d ago", d / 86400);
}

int
format_parse_time(const char *s, int64_t *out)
{
	struct tm	 tm;
	const char	*p;
	int		 oh, om, sign;

	memset(&tm, 0, sizeof(tm));
	if ((p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return (-1);
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	*out = (int64_t)timegm(&tm);
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
		return (0);
	if ((*p == '+' || *p == '-') && strlen(p) == 6 &&
	    sscanf(p + 1, "%2d:%2d", &oh, &om) == 2) {
		sign = *p == '+' ? 1 : -1;
		*out -= sign * (oh * 3600 + om * 60);
		return (0);
	}
	return (-1);
}

char *
format_value(json_t *v)
{
	char		*s, *item, *out = NULL, *tmp;
	size_t		 i;
	json_t		*e;

	/* Formatters pass members that may be missing, such as a NIC's MAC. */
	if (v == NULL)
		return (xstrdup("-"));
	switch (json_typeof(v)) {
	case JSON_STRING:
		/* An empty cell would shift the eye to the next column. */
		if (json_string_length(v) == 0)
			return (xstrdup("-"));
		return (format_clean(json_string_value(v)));
	case JSON_INTEGER:
		xasprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return (s);
	case JSON_REAL:
		xasprintf(&s, "%g", json_real_value(v));
		return (s);
	case JSON_TRUE:
		return (xstrdup("true"));
	case JSON_FALSE:
		return (xstrdup("false"));
	case JSON_ARRAY:
		json_array_foreach(v, i, e) {
			item = format_value(e);
			if (out == NULL)
				out = item;
			else {
				xasprintf(&tmp, "%s,%s", out, item);
				free(out);
				free(item);
				out = tmp;
			}
		}
		return (out != NULL ? out : xstrdup("-"));
	case JSON_OBJECT:
		s = json_dumps(v, JSON_COMPACT);
		out = format_clean(s != NULL ? s : "{}");
		free(s);
		return (out);
	case JSON_NULL:
	default:
		return (xstrdup("-"));
	}
}

char *
format_size(json_t *v)
{
	char	 buf[32];

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return (format_value(v));
	format_bytes((uint64_t)json_integer_value(v), buf, sizeof(buf));
	return (xstrdup(buf));
}

char *
format_size_exact(json_t *v)
{
	char	 buf[32], *s;

	if (!json_is_integer(v) || json_integer_value(v) < 1024)
		return (format_size(v));
	format_bytes((uint64_t)json_integer_value(v), buf, sizeof(buf));
	xasprintf(&s, "%s (%" JSON_INTEGER_FORMAT " bytes)", buf,
	    json_integer_value(v));
	return (s);
}

char *
format_mib(json_t *v)
{
	char	 buf[32];

	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > (json_int_t)(UINT64_MAX >> 20))
		return (format_value(v));
	format_bytes((uint64_t)json_integer_value(v) << 20, buf, sizeof(buf));
	return (xstrdup(buf));
}

char *
format_age(json_t *v)
{
	char	 buf[32];
	int64_t	 t;

	if (json_is_null(v))
		return (xstrdup("never"));
	if (!json_is_string(v) ||
	    format_parse_time(json_string_value(v), &t) == -1)
		return (format_value(v));
	format_ago(t, util_now(), buf, sizeof(buf));
	return (xstrdup(buf));
}

char *
format_time(json_t *v)
{
	char	 buf[32], *s, *raw;
	int64_t	 t;

	if (json_is_null(v))
		return (xstrdup("never"));
	if (!json_is_string(v) ||
	    format_parse_time(json_string_value(v), &t) == -1)
		return (format_value(v));
	format_ago(t, util_now(), buf, sizeof(buf));
	raw = format_clean(json_string_value(v));
	xasprintf(&s, "%s (%s)", raw, buf);
	free(raw);
	return (s);
}

char *
format_expiry(json_t *v)
{
	char	 buf[32], *s;
	int64_t	 t, now = util_now();

	if (json_is_null(v))
		return (xstrdup("never"));
	if (!json_is_string(v) ||
	    format_parse_time(json_string_value(v), &t) == -1)
		return (format_value(v));
	if (t > now) {
		format_in(t, now, buf, sizeof(buf));
		return (xstrdup(buf));
	}
	format_ago(t, now, buf, sizeof(buf));
	xasprintf(&s, "expired %s", buf);
	return (s);
}

/*
 * A certificate as the controller reports it: "valid until DATE (in 60d)
 * by ISSUER, acme", "failed: the CA's words (next try in 4m)", "pending",
 * "none", "off".
 */
char *
format_cert(json_t *c)
{
	const char	*state, *msg, *src, *issuer;
	char		*s, *until, *next, *tail = NULL;

	if (!json_is_object(c))
		return (format_value(c));
	state = json_string_value(json_object_get(c, "state"));
	msg = json_string_value(json_object_get(c, "message"));
	src = json_string_value(json_object_get(c, "source"));
	issuer = json_string_value(json_object_get(c, "issuer"));
	if (state == NULL)
		return (xstrdup("-"));
	if (json_is_string(json_object_get(c, "next_attempt"))) {
		next = format_expiry(json_object_get(c, "next_attempt"));
		xasprintf(&tail, " (next try %s)", next);
		free(next);
	}
	if (strcmp(state, "valid") == 0) {
		until = format_expiry(json_object_get(c, "not_after"));
		xasprintf(&s, "valid until %s (%s) by %s, %s%s%s",
		    json_string_value(json_object_get(c, "not_after")), until,
		    issuer ? issuer : "?", src ? src : "?",
		    msg && *msg ? "; " : "", msg && *msg ? msg : "");
		free(until);
	} else if (strcmp(state, "failed") == 0)
		xasprintf(&s, "failed: %s%s", msg ? msg : "",
		    tail ? tail : "");
	else
		xasprintf(&s, "%s%s%s", state, msg && *msg ? ": " : "",
		    msg && *msg ? msg : "");
	free(tail);
	tail = format_clean(s);
	free(s);
	return (tail);
}

char *
format_counts(json_t *v)
{
	const char	*k;
	json_t		*e;
	char		*out = NULL, *val, *key, *tmp;

	if (!json_is_object(v))
		return (format_value(v));
	json_object_foreach(v, k, e) {
		val = format_value(e);
		key = format_clean(k);
		xasprintf(&tmp, "%s%s%s %s", out != NULL ? out : "",
		    out != NULL ? ", " : "", val, key);
		free(out);
		free(val);
		free(key);
		out = tmp;
	}
	return (out != NULL ? out : xstrdup("none"));
}

static char *
format_cell(const struct format_col *col, json_t *obj)
{
	json_t	*v;

	v = json_is_object(obj) ? json_object_get(obj, col->fc_key) : NULL;
	if (v == NULL)
		return (xstrdup("-"));
	return (col->fc_fmt != NULL ? col->fc_fmt(v) : format_value(v));
}

static void
format_pad(FILE *f, size_t n)
{
	while (n-- > 0)
		fputc(' ', f);
}

void
format_table(FILE *f, const struct format_col *cols, size_t ncols,
    json_t *items)
{
	size_t	 nrows, r, c, *width;
	char	**cell;

	nrows = json_is_array(items) ? json_array_size(items) : 0;
	width = xcalloc(ncols, sizeof(*width));
	cell = xcalloc((nrows + 1) * ncols, sizeof(*cell));
	for (c = 0; c < ncols; c++)
		cell[c] = xstrdup(cols[c].fc_header);
	for (r = 0; r < nrows; r++) {
		for (c = 0; c < ncols; c++) {
			cell[(r + 1) * ncols + c] = format_cell(&cols[c],
			    json_array_get(items, r));
		}
	}
	for (r = 0; r < (nrows + 1) * ncols; r++) {
		c = r % ncols;
		if (format_width(cell[r]) > width[c])
			width[c] = format_width(cell[r]);
	}
	for (r = 0; r < nrows + 1; r++) {
		for (c = 0; c < ncols; c++) {
			fputs(cell[r * ncols + c], f);
			/* No trailing blanks after the last column. */
			if (c + 1 < ncols)
				format_pad(f, width[c] - format_width(
				    cell[r * ncols + c]) + FORMAT_GAP);
		}
		fputc('\n', f);
	}
	for (r = 0; r < (nrows + 1) * ncols; r++)
		free(cell[r]);
	free(cell);
	free(width);
}

void
format_fields(FILE *f, const struct format_col *cols, size_t ncols,
    json_t *obj)
{
	size_t	 c, w = 0;
	char	*s;

	for (c = 0; c < ncols; c++) {
		if (format_width(cols[c].fc_header) > w)
			w = format_width(cols[c].fc_header);
	}
	for (c = 0; c < ncols; c++) {
		s = format_cell(&cols[c], obj);
		fprintf(f, "%s:", cols[c].fc_header);
		format_pad(f, w - format_width(cols[c].fc_header) + 1);
		fprintf(f, "%s\n", s);
		free(s);
	}
}

void
format_json(FILE *f, json_t *v)
{
	if (v == NULL)
		fputs("null", f);
	else
		json_dumpf(v, f, JSON_INDENT(2) | JSON_ENCODE_ANY);
	fputc('\n', f);
}

/*
 * For each object of list, print fmt with the cleaned string members k1,
 * k2 and k3 ("" when absent; k3 may be NULL).
 */
void
format_each(FILE *f, json_t *list, const char *fmt, const char *k1,
    const char *k2, const char *k3)
{
	const char	*keys[3] = { k1, k2, k3 };
	json_t		*e, *v;
	char		*c[3];
	size_t		 i, k;

	json_array_foreach(list, i, e) {
		for (k = 0; k < 3; k++) {
			v = keys[k] ? json_object_get(e, keys[k]) : NULL;
			c[k] = format_clean(json_is_string(v) ?
			    json_string_value(v) : "");
		}
		fprintf(f, fmt, c[0], c[1], c[2]);
		for (k = 0; k < 3; k++)
			free(c[k]);
	}
}
