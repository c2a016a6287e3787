/*
 * Money as integers: prices in micro-euros, statement amounts in cents.
 * Decimal strings are parsed digit by digit and never through a number
 * type with binary fractions; products use 128-bit integers so that a line
 * is exact until the one rounding to cents, half up.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/util.h"
#include "billing.h"

/* Parse a decimal into micro-units (scale 6) with at most maxdec decimals. */
int
money_parse_micro(const char *s, int maxdec, int negok, int64_t *out,
    char **cause)
{
	const char	*p = s;
	__int128	 v = 0;
	int		 neg = 0, ndig = 0, ndec = 0, point = 0;

	if (*p == '-') {
		if (!negok) {
			xasprintf(cause, "'%.32s' must not be negative", s);
			return (-1);
		}
		neg = 1;
		p++;
	}
	for (; *p != '\0'; p++) {
		if (*p == '.' || *p == ',') {
			if (point || ndig == 0)
				goto bad;
			point = 1;
			continue;
		}
		if (*p < '0' || *p > '9')
			goto bad;
		if (point) {
			if (++ndec > maxdec) {
				xasprintf(cause, "'%.32s' has more than %d "
				    "decimals", s, maxdec);
				return (-1);
			}
		} else
			ndig++;
		v = v * 10 + (*p - '0');
		if (v > (__int128)MONEY_MAX_MICRO * 10)
			goto big;
	}
	if (ndig == 0 || (point && ndec == 0))
		goto bad;
	for (; ndec < 6; ndec++)
		v *= 10;
	if (v > MONEY_MAX_MICRO)
		goto big;
	*out = (int64_t)(neg ? -v : v);
	return (0);
bad:
	xasprintf(cause, "'%.32s' is not a decimal number such as 0.0150",
	    s);
	return (-1);
big:
	xasprintf(cause, "'%.32s' is too large", s);
	return (-1);
}

/* A price: up to 6 decimals of a euro (4 decimals of a cent). */
int
money_parse(const char *s, int negok, struct money *m, char **cause)
{
	return (money_parse_micro(s, 6, negok, &m->micro, cause));
}

/* An amount in euros and cents ("-12.50"). */
int
money_parse_cents(const char *s, struct cents *c, char **cause)
{
	int64_t	 micro;

	if (money_parse_micro(s, 2, 1, &micro, cause) == -1)
		return (-1);
	c->c = micro / MONEY_MICRO_PER_CENT;
	return (0);
}

/* num/den rounded to the nearest integer, halves away from zero. */
int64_t
money_round_div(__int128 num, __int128 den)
{
	if (num < 0)
		return (-(int64_t)((-num * 2 + den) / (den * 2)));
	return ((int64_t)((num * 2 + den) / (den * 2)));
}

/* The amount of qbase/divisor units at price, rounded once to cents. */
int
money_line(int64_t qbase, int64_t divisor, struct money price,
    struct cents *c)
{
	__int128	 num = (__int128)qbase * price.micro;
	__int128	 den = (__int128)divisor * MONEY_MICRO_PER_CENT;
	__int128	 lim = (__int128)MONEY_MAX_CENTS * den;

	/* Checked before the division's result is narrowed to 64 bits. */
	if (divisor <= 0 || num > lim || num < -lim)
		return (-1);
	c->c = money_round_div(num, den);
	return (0);
}

/* a += b; -1 on overflow (a is then unchanged). */
int
money_cents_add(struct cents *a, struct cents b)
{
	int64_t	 r;

	if (__builtin_add_overflow(a->c, b.c, &r))
		return (-1);
	a->c = r;
	return (0);
}

/* Decimal text of v / 10^scale; see billing.h. */
void
money_fmt_scaled(__int128 v, int scale, int mindec, int maxdec, char point,
    char *buf, size_t len)
{
	char		 digits[64], *d;
	__int128	 p10 = 1;
	int		 i, neg = 0, ndec;
	size_t		 n, o = 0;

	if (scale > maxdec) {
		for (i = maxdec; i < scale; i++)
			p10 *= 10;
		v = money_round_div(v, p10);
		scale = maxdec;
	}
	if (v < 0) {
		neg = 1;
		v = -v;
	}
	/* All digits, at least scale + 1 of them, most significant first. */
	d = digits + sizeof(digits);
	*--d = '\0';
	n = 0;
	do {
		*--d = (char)('0' + (int)(v % 10));
		v /= 10;
		n++;
	} while (v > 0 || n < (size_t)scale + 1);
	ndec = scale;
	/* Drop trailing zeros down to mindec decimals. */
	while (ndec > mindec && d[n - 1] == '0') {
		d[--n] = '\0';
		ndec--;
	}
	if (neg && o + 1 < len)
		buf[o++] = '-';
	for (i = 0; (size_t)i < n - (size_t)ndec && o + 1 < len; i++)
		buf[o++] = d[i];
	if ((ndec > 0 || mindec > ndec) && o + 1 < len)
		buf[o++] = point;
	for (; (size_t)i < n && o + 1 < len; i++)
		buf[o++] = d[i];
	for (; ndec < mindec && o + 1 < len; ndec++)
		buf[o++] = '0';
	buf[o] = '\0';
}

/* "12.50" */
void
money_fmt_cents(struct cents c, char point, char *buf, size_t len)
{
	money_fmt_scaled(c.c, 2, 2, 2, point, buf, len);
}

/* "0.015": a price with its decimals, at least two. */
void
money_fmt_price(struct money m, char point, char *buf, size_t len)
{
	money_fmt_scaled(m.micro, 6, 2, 6, point, buf, len);
}

/* A quantity in display units, at most 4 decimals. */
void
money_fmt_quantity(int64_t qbase, int64_t divisor, char point, char *buf,
    size_t len)
{
	money_fmt_scaled(money_round_div((__int128)qbase * 10000, divisor), 4,
	    0, 4, point, buf, len);
}
