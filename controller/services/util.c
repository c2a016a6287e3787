/*
 * Services: the checks and formats that need no database. Host names and
 * addresses come from operators and from CSV files; password hashes come
 * from other mail systems being migrated. Everything here is strict: what
 * it lets through ends up in Postfix, Dovecot and nginx files.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <crypt.h>
#include <idn2.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "opsn/tlscert.h"
#include "opsn/util.h"
#include "services.h"

#define DKIM_BITS		2048
#define TXT_CHUNK		255
#define B64_CHARS		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" \
				"0123456789+/"
#define CRYPT_CHARS		"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" \
				"abcdefghijklmnopqrstuvwxyz"
#define SHA512_ROUNDS_MIN	5000	/* crypt(3)'s default: no cheaper */
#define ARGON2_MEM_MIN		8192	/* KiB */

char *
services_util_unicode(const char *name)
{
	char	*u = NULL, *out;

	if (strstr(name, "xn--") == NULL ||
	    idn2_to_unicode_8z8z(name, &u, 0) != IDN2_OK) {
		if (u != NULL)
			idn2_free(u);
		return (xstrdup(name));
	}
	out = xstrdup(u);
	idn2_free(u);
	return (out);
}

/* Check an ASCII host name already in lower case; -1 with *cause. */
static int
services_util_ldh(const char *h, char **cause)
{
	const char	*label = h, *p;
	size_t		 len, n = 0, total = strlen(h);
	int		 digits;

	if (total == 0) {
		xasprintf(cause, "the host name is empty");
		return (-1);
	}
	if (total > SERVICES_HOST_MAX) {
		xasprintf(cause, "the host name has %zu characters, more than "
		    "%d", total, SERVICES_HOST_MAX);
		return (-1);
	}
	for (;;) {
		p = strchr(label, '.');
		len = p != NULL ? (size_t)(p - label) : strlen(label);
		if (len == 0) {
			xasprintf(cause, "'%s' has an empty label", h);
			return (-1);
		}
		if (len > SERVICES_LABEL_MAX) {
			xasprintf(cause, "label '%.*s...' of '%s' is longer than "
			    "%d characters", 16, label, h, SERVICES_LABEL_MAX);
			return (-1);
		}
		if (label[0] == '-' || label[len - 1] == '-') {
			xasprintf(cause, "label '%.*s' starts or ends with '-'",
			    (int)len, label);
			return (-1);
		}
		digits = 1;
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)label[i];

			if (!(islower(c) || isdigit(c) || c == '-')) {
				xasprintf(cause, "'%s' holds '%c': a host name "
				    "has letters, digits, '-' and dots only",
				    h, isprint(c) ? c : '?');
				return (-1);
			}
			if (!isdigit(c))
				digits = 0;
		}
		n++;
		if (p == NULL)
			break;
		label = p + 1;
	}
	if (n < 2) {
		xasprintf(cause, "'%s' is not a full domain name (it needs a "
		    "dot, like mairie-agassac.fr)", h);
		return (-1);
	}
	if (digits) {
		xasprintf(cause, "'%s' ends with an all-digit label: an "
		    "address is not a host name", h);
		return (-1);
	}
	return (0);
}

/* The stored form of a host name: lower-case punycode, no final dot. */
int
services_util_host(const char *in, char out[SERVICES_HOST_MAX + 1],
    char **cause)
{
	char	*ace = NULL, *copy = NULL, *u = NULL;
	char	 buf[SERVICES_HOST_MAX + 2];
	size_t	 i, len = strlen(in);
	int	 ascii = 1, rc;

	if (len > 4 * (SERVICES_HOST_MAX + 1)) {
		xasprintf(cause, "the host name is too long");
		return (-1);
	}
	for (i = 0; i < len; i++) {
		if ((unsigned char)in[i] >= 0x80)
			ascii = 0;
		else if ((unsigned char)in[i] <= 0x20 || in[i] == 0x7f) {
			xasprintf(cause, "the host name holds a space or a "
			    "control character");
			return (-1);
		}
	}
	if (!ascii) {
		/* UTS #46 non-transitional mapping: case folded, NFC. */
		rc = idn2_to_ascii_8z(in, &ace, IDN2_NFC_INPUT |
		    IDN2_NONTRANSITIONAL);
		if (rc != IDN2_OK) {
			xasprintf(cause, "'%s' is not a valid internationalised "
			    "host name: %s", in, idn2_strerror(rc));
			return (-1);
		}
		in = copy = xstrdup(ace);
		idn2_free(ace);
		len = strlen(in);
	}
	if (len > SERVICES_HOST_MAX + 1) {
		xasprintf(cause, "the host name has %zu characters (in "
		    "punycode), more than %d", len, SERVICES_HOST_MAX);
		free(copy);
		return (-1);
	}
	for (i = 0; i <= len; i++)
		buf[i] = (char)tolower((unsigned char)in[i]);
	free(copy);
	/* One final dot (an absolute name) is the same name. */
	if (len > 1 && buf[len - 1] == '.')
		buf[--len] = '\0';
	if (services_util_ldh(buf, cause) == -1)
		return (-1);
	/* An A-label given as such must decode to a valid U-label. */
	if (strstr(buf, "xn--") != NULL && 1) {
		rc = idn2_to_unicode_8z8z(buf, &u, 0);
		if (u != NULL)
			idn2_free(u);
		if (rc != IDN2_OK) {
			xasprintf(cause, "'%s' holds a punycode label that does "
			    "not decode: %s", buf, idn2_strerror(rc));
			return (-1);
		}
	}
	memcpy(out, buf, len + 1);
	return (0);
}

/* atext of RFC 5322, as in a dot-atom local part. */
static int
services_util_atext(unsigned char c)
{
	return (isalnum(c) || (c != '\0' && strchr("!#$%&'*+/=?^_`{|}~-",
	    c) != NULL));
}

/* An address into its stored form. */
int
services_util_address(const char *in, int flags,
    char out[SERVICES_ADDR_MAX + 1], char **cause)
{
	const char	*at = strrchr(in, '@');
	char		 local[SERVICES_LOCAL_MAX + 1], host[SERVICES_HOST_MAX + 1];
	char		*why = NULL;
	size_t		 llen, i;

	if (at == NULL) {
		xasprintf(cause, "'%.100s' is not an address (local@domain)",
		    in);
		return (-1);
	}
	llen = (size_t)(at - in);
	if (llen == 0 && !(flags & SERVICES_ADDR_CATCHALL)) {
		xasprintf(cause, "'%.100s' has no local part", in);
		return (-1);
	}
	if (llen > SERVICES_LOCAL_MAX) {
		xasprintf(cause, "the local part of '%.100s' is longer than %d "
		    "characters", in, SERVICES_LOCAL_MAX);
		return (-1);
	}
	for (i = 0; i < llen; i++) {
		unsigned char c = (unsigned char)in[i];

		if (flags & SERVICES_ADDR_EXTERNAL) {
			if (!services_util_atext(c) && c != '.')
				goto badchar;
			local[i] = (char)c;
		} else {
			c = (unsigned char)tolower(c);
			if (!islower(c) && !isdigit(c) && c != '.' && c != '_' &&
			    c != '-')
				goto badchar;
			local[i] = (char)c;
		}
	}
	local[llen] = '\0';
	if (llen > 0 && (local[0] == '.' || local[llen - 1] == '.' ||
	    strstr(local, "..") != NULL)) {
		xasprintf(cause, "the local part of '%.100s' starts or ends "
		    "with a dot, or has two in a row", in);
		return (-1);
	}
	if (!(flags & SERVICES_ADDR_EXTERNAL) && llen > 0 &&
	    (!isalnum((unsigned char)local[0]) ||
	    !isalnum((unsigned char)local[llen - 1]))) {
		xasprintf(cause, "the local part of '%.100s' must start and end "
		    "with a letter or digit", in);
		return (-1);
	}
	if (services_util_host(at + 1, host, &why) == -1) {
		xasprintf(cause, "the domain of '%.100s': %s", in, why);
		free(why);
		return (-1);
	}
	if (llen + 1 + strlen(host) > SERVICES_ADDR_MAX) {
		xasprintf(cause, "'%.100s' is longer than %d characters", in,
		    SERVICES_ADDR_MAX);
		return (-1);
	}
	snprintf(out, SERVICES_ADDR_MAX + 1, "%s@%s", local, host);
	return (0);
badchar:
	if (flags & SERVICES_ADDR_EXTERNAL)
		xasprintf(cause, "the local part of '%.100s' holds a character "
		    "an address cannot have unquoted", in);
	else
		xasprintf(cause, "the local part of '%.100s' may hold only "
		    "letters, digits, '.', '_' and '-'", in);
	return (-1);
}

int
services_util_password_ok(const char *pw, size_t len, char **cause)
{
	size_t	 i;

	if (len < SERVICES_PASSWORD_MIN || len > SERVICES_PASSWORD_MAX) {
		xasprintf(cause, "a password has %d to %d characters",
		    SERVICES_PASSWORD_MIN, SERVICES_PASSWORD_MAX);
		return (-1);
	}
	for (i = 0; i < len; i++) {
		if ((unsigned char)pw[i] < 0x20 || pw[i] == 0x7f) {
			xasprintf(cause, "a password may not hold a control "
			    "character or NUL");
			return (-1);
		}
	}
	return (0);
}

/* Length of the run of characters of set at p. */
static size_t
services_util_span(const char *p, const char *set)
{
	return (strspn(p, set));
}

/* "$6$[rounds=N$]salt$hash" with an 86-character hash. */
static int
services_util_sha512(const char *p)
{
	char		*end;
	unsigned long	 rounds;
	size_t		 n;

	if (strncmp(p, "$6$", 3) != 0)
		return (-1);
	p += 3;
	if (strncmp(p, "rounds=", 7) == 0) {
		if (!isdigit((unsigned char)p[7]))
			return (-1);
		rounds = strtoul(p + 7, &end, 10);
		if (*end != '$' || rounds < SHA512_ROUNDS_MIN ||
		    rounds > 999999999UL)
			return (-1);
		p = end + 1;
	}
	n = services_util_span(p, CRYPT_CHARS);
	if (n < 1 || n > 16 || p[n] != '$')
		return (-1);
	p += n + 1;
	n = services_util_span(p, CRYPT_CHARS);
	return (n == 86 && p[n] == '\0' ? 0 : -1);
}

/* "$y$params$salt$hash" (yescrypt) with a 43-character hash. */
static int
services_util_yescrypt(const char *p)
{
	size_t	 n;

	if (strncmp(p, "$y$", 3) != 0)
		return (-1);
	p += 3;
	n = services_util_span(p, CRYPT_CHARS);
	if (n < 1 || p[n] != '$')
		return (-1);
	p += n + 1;
	n = services_util_span(p, CRYPT_CHARS);
	if (n < 1 || p[n] != '$')
		return (-1);
	p += n + 1;
	n = services_util_span(p, CRYPT_CHARS);
	return (n == 43 && p[n] == '\0' ? 0 : -1);
}

/* "$argon2id$v=19$m=M,t=T,p=P$salt$hash", base64 without padding. */
static int
services_util_argon2id(const char *p)
{
	unsigned long	 m, t, par;
	int		 used = 0;
	size_t		 n;

	if (strncmp(p, "$argon2id$v=19$", 15) != 0)
		return (-1);
	p += 15;
	if (sscanf(p, "m=%lu,t=%lu,p=%lu$%n", &m, &t, &par, &used) != 3 ||
	    used == 0)
		return (-1);
	if (m < ARGON2_MEM_MIN || m > (1UL << 22) || t < 1 || t > 100 ||
	    par < 1 || par > 64)
		return (-1);
	p += used;
	n = services_util_span(p, B64_CHARS);
	if (n < 11 || p[n] != '$')
		return (-1);
	p += n + 1;
	n = services_util_span(p, B64_CHARS);
	return (n >= 22 && p[n] == '\0' ? 0 : -1);
}

/* The schemes we take, strongest first. */
static const struct {
	const char	*prefix;
	int		(*ok)(const char *);
	const char	*example;
} services_util_schemes[] = {
	{ "{ARGON2ID}",		services_util_argon2id,
	  "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$SALT$HASH" },
	{ "{CRYPT}",		services_util_yescrypt,
	  "{CRYPT}$y$j9T$SALT$HASH" },
	{ "{SHA512-CRYPT}",	services_util_sha512,
	  "{SHA512-CRYPT}$6$SALT$HASH" },
};

int
services_util_hash_ok(const char *h, char **cause)
{
	size_t	 i, len = strlen(h);

	if (len > SERVICES_HASH_MAX) {
		xasprintf(cause, "the password hash is longer than %d "
		    "characters", SERVICES_HASH_MAX);
		return (-1);
	}
	for (i = 0; i < nitems(services_util_schemes); i++) {
		size_t plen = strlen(services_util_schemes[i].prefix);

		if (strncmp(h, services_util_schemes[i].prefix, plen) != 0)
			continue;
		if (services_util_schemes[i].ok(h + plen) == 0)
			return (0);
		/* Never echo the hash: it is a secret too. */
		xasprintf(cause, "the password hash is not a well-formed %s "
		    "hash (expected %s%s)", services_util_schemes[i].prefix,
		    services_util_schemes[i].example, i == 2 ? ", at least "
		    "5000 rounds" : "");
		return (-1);
	}
	xasprintf(cause, "the password hash must be {SHA512-CRYPT}$6$..., "
	    "{CRYPT}$y$... (yescrypt) or {ARGON2ID}$argon2id$...; weaker "
	    "schemes (MD5, SHA256-CRYPT, SSHA, PLAIN...) are refused: have "
	    "the user set a new password instead");
	return (-1);
}

char *
services_util_hash_password(const char *pw, char **cause)
{
	struct crypt_data	*cd;
	char			 salt[CRYPT_GENSALT_OUTPUT_SIZE], *h, *out = NULL;

	if (crypt_gensalt_rn("$6$", 0, NULL, 0, salt, sizeof(salt)) == NULL) {
		xasprintf(cause, "no salt for the password hash");
		return (NULL);
	}
	cd = xcalloc(1, sizeof(*cd));
	h = crypt_r(pw, salt, cd);
	if (h == NULL || h[0] != '$')
		xasprintf(cause, "hashing the password failed");
	else
		xasprintf(&out, "{SHA512-CRYPT}%s", h);
	/* The work area holds the password's traces. */
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return (out);
}

int
services_util_dkim(char **private_pem, char **public_b64, char **cause)
{
	EVP_PKEY	*key;
	BIO		*bio = NULL;
	unsigned char	*der = NULL;
	char		*data, *b64 = NULL, *pem = NULL;
	long		 plen;
	int		 dlen, rv = -1;

	*private_pem = *public_b64 = NULL;
	if ((key = EVP_RSA_gen(DKIM_BITS)) == NULL) {
		xasprintf(cause, "generating an RSA %d key failed", DKIM_BITS);
		return (-1);
	}
	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL,
	    NULL) != 1 || (plen = BIO_get_mem_data(bio, &data)) <= 0) {
		xasprintf(cause, "writing the DKIM key failed");
		goto out;
	}
	pem = xstrndup(data, (size_t)plen);
	if ((dlen = i2d_PUBKEY(key, &der)) <= 0) {
		xasprintf(cause, "encoding the DKIM public key failed");
		goto out;
	}
	b64 = xmalloc(4 * (((size_t)dlen + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)b64, der, dlen);
	*private_pem = pem;
	*public_b64 = b64;
	pem = b64 = NULL;
	rv = 0;
out:
	if (pem != NULL)
		tlscert_free_secret(pem, strlen(pem));
	free(b64);
	OPENSSL_free(der);
	BIO_free(bio);
	EVP_PKEY_free(key);
	return (rv);
}

/* name TTL IN TYPE value, a TXT value quoted in strings of 255 or less. */
char *
services_util_zone_line(const char *name, int ttl, const char *type,
    const char *value)
{
	char	*line, *tmp;
	size_t	 off, len = strlen(value);

	xasprintf(&line, "%s. %d IN %s", name, ttl, type);
	if (strcmp(type, "TXT") != 0) {
		xasprintf(&tmp, "%s %s", line, value);
		free(line);
		return (tmp);
	}
	/* Our values hold no '"' or '\\': nothing to escape. */
	for (off = 0; off < len || off == 0; off += TXT_CHUNK) {
		xasprintf(&tmp, "%s \"%.*s\"", line, (int)(len - off >
		    TXT_CHUNK ? TXT_CHUNK : len - off), value + off);
		free(line);
		line = tmp;
		if (len == 0)
			break;
	}
	return (line);
}

json_t *
services_util_dns(const char *domain, const char *mx, const char *selector,
    const char *dkim_b64)
{
	json_t	*doc;
	char	*name, *value;

	doc = json_pack("{s:s,s:[],s:s}", "domain", domain, "records", "zone",
	    "");
	xasprintf(&value, "10 %s.", mx);
	services_util_dns_add(doc, domain, "MX", value,
	    "mail for the domain goes to its backend");
	free(value);
	services_util_dns_add(doc, domain, "TXT", "v=spf1 mx -all",
	    "SPF: only the MX hosts send the domain's mail");
	xasprintf(&name, "%s._domainkey.%s", selector, domain);
	xasprintf(&value, "v=DKIM1; k=rsa; p=%s", dkim_b64);
	services_util_dns_add(doc, name, "TXT", value,
	    "DKIM: the key that signs the domain's mail");
	free(name);
	free(value);
	xasprintf(&name, "_dmarc.%s", domain);
	xasprintf(&value, "v=DMARC1; p=quarantine; rua=mailto:postmaster@%s",
	    domain);
	services_util_dns_add(doc, name, "TXT", value,
	    "DMARC: quarantine what fails SPF and DKIM");
	free(name);
	free(value);
	return (doc);
}

/* Append a record to a document of services_util_dns (and its zone). */
void
services_util_dns_add(json_t *doc, const char *name, const char *type,
    const char *value, const char *purpose)
{
	char	*line, *zone;

	json_array_append_new(json_object_get(doc, "records"), json_pack(
	    "{s:s,s:s,s:i,s:s,s:s}", "name", name, "type", type, "ttl",
	    SERVICES_DNS_TTL, "value", value, "purpose", purpose));
	line = services_util_zone_line(name, SERVICES_DNS_TTL, type, value);
	xasprintf(&zone, "%s%s\n", json_string_value(json_object_get(doc,
	    "zone")), line);
	json_object_set_new(doc, "zone", json_string(zone));
	free(zone);
	free(line);
}

void
services_util_uuid(char out[37])
{
	unsigned char	 b[16];

	util_random(b, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
	    b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

int
services_util_name_ok(const char *s)
{
	const unsigned char *p;

	if (strlen(s) > SERVICES_NAME_MAX)
		return (0);
	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return (0);
	return (1);
}
