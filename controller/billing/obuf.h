/*
 * A growable output buffer for the documents billing writes (OpenDocument
 * spreadsheets, PES V2 files): bytes, printf, and XML character data with
 * the five markup characters escaped. Allocation failure is fatal.
 */
#ifndef OPSN_BILLING_OBUF_H
#define OPSN_BILLING_OBUF_H

#include <stddef.h>
#include <stdint.h>

struct obuf {
	char	*ob_b;		/* NUL-terminated once anything was added */
	size_t	 ob_len;
	size_t	 ob_cap;
};

/* Append n bytes. */
void	 obuf_add(struct obuf *, const void *, size_t n);
/* Append a C string. */
void	 obuf_str(struct obuf *, const char *);
/* Append formatted text. */
void	 obuf_printf(struct obuf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
/*
 * Append text as XML character data or attribute value: & < > " ' become
 * entities; characters XML 1.0 cannot carry (controls other than tab,
 * newline and carriage return) are dropped.
 */
void	 obuf_xml(struct obuf *, const char *);
/*
 * Decode the UTF-8 character at *s and move *s past it; an invalid
 * sequence (overlong, surrogate, truncated) gives OBUF_BAD_UTF8 and moves
 * one byte.
 */
#define OBUF_BAD_UTF8	UINT32_MAX
uint32_t obuf_utf8(const unsigned char **s);
/* Give the bytes to the caller (NUL-terminated, "" if empty) and reset. */
char	*obuf_take(struct obuf *, size_t *len);
/* Free the bytes; the buffer may be reused. */
void	 obuf_free(struct obuf *);

#endif
