/*
 * One-time codes (TOTP, RFC 6238): HMAC-SHA1 over the 30-second step
 * since the epoch, 6 digits, a code of the step before or after accepted
 * for clocks a little apart. Secrets are 20 random bytes, shown to the
 * person as base32 (RFC 4648) for their authenticator app.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "session.h"

#define TOTP_STEP	30
#define TOTP_DIGITS	6
#define TOTP_SKEW	1	/* steps either way */

static const char totp_b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* Base32 of len bytes, without padding (caller frees). */
char *
totp_base32(const unsigned char *p, size_t len)
{
	char		*out = xmalloc((len * 8 + 4) / 5 + 1), *o = out;
	uint32_t	 buf = 0;
	int		 bits = 0;
	size_t		 i;

	for (i = 0; i < len; i++) {
		buf = (buf << 8) | p[i];
		bits += 8;
		while (bits >= 5) {
			*o++ = totp_b32[(buf >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		*o++ = totp_b32[(buf << (5 - bits)) & 31];
	*o = '\0';
	return (out);
}

/*
 * Decode base32 (case, spaces and padding ignored) into out; the number
 * of bytes, or -1 if it is not base32 or does not fit.
 */
int
totp_unbase32(const char *s, unsigned char *out, size_t max)
{
	const char	*c;
	uint32_t	 buf = 0;
	int		 bits = 0;
	size_t		 n = 0;

	for (; *s != '\0'; s++) {
		if (*s == ' ' || *s == '=' || *s == '-')
			continue;
		if ((c = strchr(totp_b32, *s >= 'a' && *s <= 'z' ? *s - 32 :
		    *s)) == NULL || *s == '\0')
			return (-1);
		buf = (buf << 5) | (uint32_t)(c - totp_b32);
		bits += 5;
		if (bits >= 8) {
			if (n == max)
				return (-1);
			out[n++] = (buf >> (bits - 8)) & 0xff;
			bits -= 8;
		}
	}
	return ((int)n);
}

/* A new secret, in base32 (caller frees). */
char *
totp_new_secret(void)
{
	unsigned char	 key[20];
	char		*s;

	util_random(key, sizeof(key));
	s = totp_base32(key, sizeof(key));
	OPENSSL_cleanse(key, sizeof(key));
	return (s);
}

/* The code of one step (RFC 4226's dynamic truncation). */
static uint32_t
totp_code(const unsigned char *key, size_t klen, uint64_t step)
{
	unsigned char	 msg[8], mac[EVP_MAX_MD_SIZE];
	unsigned int	 mlen = 0;
	uint32_t	 bin;
	int		 i, off;

	for (i = 7; i >= 0; i--) {
		msg[i] = step & 0xff;
		step >>= 8;
	}
	if (HMAC(EVP_sha1(), key, (int)klen, msg, sizeof(msg), mac,
	    &mlen) == NULL || mlen < 20)
		fatalx("totp: HMAC-SHA1 failed");
	off = mac[mlen - 1] & 0x0f;
	bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] <<
	    16) | ((uint32_t)mac[off + 2] << 8) | mac[off + 3];
	return (bin % 1000000);
}

/* The 6-digit code of secret at time now, as text (for tests and tools). */
void
totp_at(const char *secret, int64_t now, char out[7])
{
	unsigned char	 key[64];
	int		 n;

	if ((n = totp_unbase32(secret, key, sizeof(key))) <= 0)
		fatalx("totp: bad secret");
	snprintf(out, 7, "%06u", totp_code(key, (size_t)n, (uint64_t)now /
	    TOTP_STEP));
	OPENSSL_cleanse(key, sizeof(key));
}

/*
 * Is code the one of secret at now, give or take a step, and of a step
 * after last (a code is never accepted twice)? 1 with the step in *step,
 * else 0.
 */
int
totp_check(const char *secret, const char *code, int64_t now, int64_t last,
    int64_t *step)
{
	unsigned char	 key[64];
	char		 want[8];
	int64_t		 s, base = now / TOTP_STEP;
	int		 n, ok = 0;

	if (strlen(code) != TOTP_DIGITS || strspn(code, "0123456789") !=
	    TOTP_DIGITS)
		return (0);
	if ((n = totp_unbase32(secret, key, sizeof(key))) <= 0)
		return (0);
	for (s = base - TOTP_SKEW; s <= base + TOTP_SKEW; s++) {
		snprintf(want, sizeof(want), "%06u", totp_code(key, (size_t)n,
		    (uint64_t)s));
		if (s > last && CRYPTO_memcmp(want, code, TOTP_DIGITS) == 0) {
			*step = s;
			ok = 1;
			break;
		}
	}
	OPENSSL_cleanse(key, sizeof(key));
	return (ok);
}
