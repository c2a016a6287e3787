/*
 * A JSON writer for replies built straight from rows: no document tree,
 * one growing buffer. Its output is byte for byte what jansson's
 * json_dumps(JSON_COMPACT) gives for the same document (tests check it),
 * so a reply keeps its bytes whichever way it was built.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "http.h"

/* Room for n more bytes and the final NUL. */
static void
jsonw_grow(struct jsonw *w, size_t n)
{
	if (w->jw_cap == 0)
		w->jw_cap = 16384;
	while (w->jw_len + n + 1 > w->jw_cap)
		w->jw_cap *= 2;
	w->jw_b = xrealloc(w->jw_b, w->jw_cap);
}

static inline void
jsonw_put(struct jsonw *w, const char *s, size_t n)
{
	if (w->jw_len + n + 1 > w->jw_cap)
		jsonw_grow(w, n);
	memcpy(w->jw_b + w->jw_len, s, n);
	w->jw_len += n;
}

static inline void
jsonw_putc(struct jsonw *w, char c)
{
	if (w->jw_len + 2 > w->jw_cap)
		jsonw_grow(w, 1);
	w->jw_b[w->jw_len++] = c;
}

/* A comma before a value that follows another in its container. */
static void
jsonw_sep(struct jsonw *w)
{
	if (w->jw_key) {
		w->jw_key = 0;
		return;
	}
	if (w->jw_depth > 0) {
		if (w->jw_more[w->jw_depth - 1])
			jsonw_putc(w, ',');
		w->jw_more[w->jw_depth - 1] = 1;
	}
}

static void
jsonw_open(struct jsonw *w, char c)
{
	jsonw_sep(w);
	if (w->jw_depth == JSONW_DEPTH)
		fatalx("jsonw: nested deeper than %d", JSONW_DEPTH);
	jsonw_putc(w, c);
	w->jw_more[w->jw_depth++] = 0;
}

static void
jsonw_close(struct jsonw *w, char c)
{
	if (w->jw_depth == 0)
		fatalx("jsonw: closing more than was opened");
	w->jw_depth--;
	jsonw_putc(w, c);
}

void
jsonw_obj(struct jsonw *w)
{
	jsonw_open(w, '{');
}

void
jsonw_obj_end(struct jsonw *w)
{
	jsonw_close(w, '}');
}

void
jsonw_arr(struct jsonw *w)
{
	jsonw_open(w, '[');
}

void
jsonw_arr_end(struct jsonw *w)
{
	jsonw_close(w, ']');
}

/*
 * The length of the valid UTF-8 sequence at s (at most n bytes), or 0 if
 * it is not one (overlong forms and surrogates included, as jansson
 * refuses them).
 */
static size_t
jsonw_utf8(const unsigned char *s, size_t n)
{
	size_t		 len, i;
	unsigned int	 cp;

	if (s[0] < 0x80)
		return (1);
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return (0);
	if (len > n)
		return (0);
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return (0);
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 ||
	    cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
		return (0);
	return (len);
}

/*
 * A string value of n bytes: quotes, backslashes and control characters
 * escaped as jansson escapes them; a byte that is not valid UTF-8 becomes
 * '?' (jansson would refuse the whole string).
 */
static void
jsonw_quote(struct jsonw *w, const char *s, size_t n)
{
	static const char	 short_esc[0x20] = {
		['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r',
		['\t'] = 't',
	};
	const unsigned char	*p = (const unsigned char *)s, *end = p + n;
	const unsigned char	*run = p;
	char			 esc[8];
	size_t			 len;

	jsonw_putc(w, '"');
	while (p < end) {
		if (*p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80) {
			p++;
			continue;
		}
		if (*p >= 0x80 && (len = jsonw_utf8(p, end - p)) > 0) {
			p += len;
			continue;
		}
		jsonw_put(w, (const char *)run, p - run);
		if (*p >= 0x80)
			jsonw_putc(w, '?');
		else if (*p == '"' || *p == '\\') {
			jsonw_putc(w, '\\');
			jsonw_putc(w, (char)*p);
		} else if (*p < sizeof(short_esc) && short_esc[*p] != 0) {
			jsonw_putc(w, '\\');
			jsonw_putc(w, short_esc[*p]);
		} else {
			snprintf(esc, sizeof(esc), "\\u%04X", *p);
			jsonw_put(w, esc, 6);
		}
		run = ++p;
	}
	jsonw_put(w, (const char *)run, p - run);
	jsonw_putc(w, '"');
}

/* A key: one of our own names (printable ASCII, no quote or backslash). */
void
jsonw_key(struct jsonw *w, const char *k)
{
	size_t	 n = strlen(k);

	jsonw_sep(w);
	if (w->jw_len + n + 4 > w->jw_cap)
		jsonw_grow(w, n + 3);
	w->jw_b[w->jw_len++] = '"';
	memcpy(w->jw_b + w->jw_len, k, n);
	w->jw_len += n;
	w->jw_b[w->jw_len++] = '"';
	w->jw_b[w->jw_len++] = ':';
	w->jw_key = 1;
}

void
jsonw_str(struct jsonw *w, const char *s)
{
	if (s == NULL) {
		jsonw_null(w);
		return;
	}
	jsonw_sep(w);
	jsonw_quote(w, s, strlen(s));
}

void
jsonw_strn(struct jsonw *w, const char *s, size_t n)
{
	jsonw_sep(w);
	jsonw_quote(w, s, n);
}

void
jsonw_int(struct jsonw *w, int64_t v)
{
	char		 buf[24], *p = buf + sizeof(buf);
	uint64_t	 u = v < 0 ? -(uint64_t)v : (uint64_t)v;

	jsonw_sep(w);
	do {
		*--p = '0' + u % 10;
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	jsonw_put(w, p, (size_t)(buf + sizeof(buf) - p));
}

void
jsonw_bool(struct jsonw *w, int v)
{
	jsonw_sep(w);
	if (v)
		jsonw_put(w, "true", 4);
	else
		jsonw_put(w, "false", 5);
}

void
jsonw_null(struct jsonw *w)
{
	jsonw_sep(w);
	jsonw_put(w, "null", 4);
}

/* A column as it is stored: NULL, an integer, or text. */
void
jsonw_col(struct jsonw *w, sqlite3_stmt *st, int col)
{
	switch (sqlite3_column_type(st, col)) {
	case SQLITE_NULL:
		jsonw_null(w);
		break;
	case SQLITE_INTEGER:
		jsonw_int(w, sqlite3_column_int64(st, col));
		break;
	default:
		jsonw_strn(w, (const char *)sqlite3_column_text(st, col),
		    (size_t)sqlite3_column_bytes(st, col));
		break;
	}
}

/* A column as text, or null. */
void
jsonw_col_text(struct jsonw *w, sqlite3_stmt *st, int col)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		jsonw_null(w);
	else
		jsonw_strn(w, (const char *)sqlite3_column_text(st, col),
		    (size_t)sqlite3_column_bytes(st, col));
}

/* A column as an integer, or null. */
void
jsonw_col_int(struct jsonw *w, sqlite3_stmt *st, int col)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		jsonw_null(w);
	else
		jsonw_int(w, sqlite3_column_int64(st, col));
}

/* Fields of a row, from a table (see http.h). */
void
jsonw_row(struct jsonw *w, sqlite3_stmt *st, const struct jsonw_field *f,
    size_t n)
{
	char	 buf[32];
	size_t	 i;
	int	 skip = 0;

	for (i = 0; i < n; i++) {
		if (skip > 0) {
			if (f[i].jf_type == JW_OBJ || f[i].jf_type == JW_OBJ_IF)
				skip++;
			else if (f[i].jf_type == JW_END)
				skip--;
			continue;
		}
		if (f[i].jf_key != NULL)
			jsonw_key(w, f[i].jf_key);
		switch (f[i].jf_type) {
		case JW_TEXT:
			jsonw_col_text(w, st, f[i].jf_col);
			break;
		case JW_INT:
			jsonw_col_int(w, st, f[i].jf_col);
			break;
		case JW_TIME:
			if (sqlite3_column_type(st, f[i].jf_col) ==
			    SQLITE_NULL) {
				jsonw_null(w);
				break;
			}
			util_time_fmt(sqlite3_column_int64(st, f[i].jf_col),
			    buf, sizeof(buf));
			jsonw_str(w, buf);
			break;
		case JW_OBJ_IF:
			if (sqlite3_column_type(st, f[i].jf_col) ==
			    SQLITE_NULL) {
				jsonw_null(w);
				skip = 1;
				break;
			}
			/* FALLTHROUGH */
		case JW_OBJ:
			jsonw_obj(w);
			break;
		case JW_END:
			jsonw_obj_end(w);
			break;
		}
	}
}

/* A document built with jansson, written compact in its place. */
void
jsonw_json(struct jsonw *w, const json_t *j)
{
	char	*s;

	if ((s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		fatalx("jsonw: json_dumps");
	jsonw_sep(w);
	jsonw_put(w, s, strlen(s));
	free(s);
}

/* Give the text to the caller (malloc()ed, NUL-terminated) and reset. */
char *
jsonw_take(struct jsonw *w, size_t *len)
{
	char	*s = w->jw_b;

	if (w->jw_depth != 0)
		fatalx("jsonw: %d containers left open", w->jw_depth);
	if (s == NULL)
		s = xstrdup("");
	else
		s[w->jw_len] = '\0';	/* jsonw_grow() kept room for it */
	if (len != NULL)
		*len = w->jw_len;
	memset(w, 0, sizeof(*w));
	return (s);
}

/* Free the text (the writer may be reused). */
void
jsonw_free(struct jsonw *w)
{
	free(w->jw_b);
	memset(w, 0, sizeof(*w));
}

/* The text as a jansson document (caller owns), for code that edits it. */
json_t *
jsonw_load(struct jsonw *w)
{
	json_t		*j;
	json_error_t	 err;
	char		*s;
	size_t		 len;

	s = jsonw_take(w, &len);
	if ((j = json_loadb(s, len, 0, &err)) == NULL)
		fatalx("jsonw: our own text does not parse: %s", err.text);
	free(s);
	return (j);
}
