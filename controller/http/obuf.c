/*
 * The output buffer ods.c and pes.c write their XML into.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/util.h"
#include "http.h"

/* Append n bytes. */
void
obuf_add(struct obuf *ob, const void *p, size_t n)
{
	if (ob->ob_len + n + 1 > ob->ob_cap) {
		if (ob->ob_cap == 0)
			ob->ob_cap = 4096;
		while (ob->ob_len + n + 1 > ob->ob_cap)
			ob->ob_cap *= 2;
		ob->ob_b = xrealloc(ob->ob_b, ob->ob_cap);
	}
	if (n > 0)
		memcpy(ob->ob_b + ob->ob_len, p, n);
	ob->ob_len += n;
	ob->ob_b[ob->ob_len] = '\0';
}

/* Append a C string. */
void
obuf_str(struct obuf *ob, const char *s)
{
	obuf_add(ob, s, strlen(s));
}

/* Append formatted text. */
void
obuf_printf(struct obuf *ob, const char *fmt, ...)
{
	va_list	 ap;
	char	 small[256], *s;
	int	 n;

	/* Most cells fit on the stack: no allocation for them. */
	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		obuf_add(ob, small, (size_t)n);
		return;
	}
	va_start(ap, fmt);
	n = xvasprintf(&s, fmt, ap);
	va_end(ap);
	obuf_add(ob, s, (size_t)n);
	free(s);
}

/* Append text escaped for XML; see http.h. */
void
obuf_xml(struct obuf *ob, const char *s)
{
	const char	*run = s, *rep;
	unsigned char	 c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		switch (c) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&apos;";
			break;
		default:
			rep = c < 0x20 && c != '\t' && c != '\n' && c != '\r' ?
			    "" : NULL;
			break;
		}
		if (rep == NULL)
			continue;
		obuf_add(ob, run, (size_t)(s - run));
		obuf_str(ob, rep);
		run = s + 1;
	}
	obuf_add(ob, run, (size_t)(s - run));
}

/* Decode one UTF-8 character; see http.h. */
uint32_t
obuf_utf8(const unsigned char **s)
{
	const unsigned char	*p = *s;
	uint32_t		 cp;
	size_t			 n, i;

	if (p[0] < 0x80) {
		*s = p + 1;
		return (p[0]);
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		goto bad;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			goto bad;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 ||
	    cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
		goto bad;
	*s = p + n;
	return (cp);
bad:
	*s = p + 1;
	return (OBUF_BAD_UTF8);
}

/* Hand the bytes over; see http.h. */
char *
obuf_take(struct obuf *ob, size_t *len)
{
	char	*b;

	if (ob->ob_b == NULL)
		obuf_add(ob, "", 0);
	b = ob->ob_b;
	if (len != NULL)
		*len = ob->ob_len;
	memset(ob, 0, sizeof(*ob));
	return (b);
}

/* Free the bytes. */
void
obuf_free(struct obuf *ob)
{
	free(ob->ob_b);
	memset(ob, 0, sizeof(*ob));
}
