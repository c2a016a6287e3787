/*
 * The audit trail's hash chain and its signed checkpoints (see
 * include/opsn/trail.h): what the controller writes and checks, and what
 * opsnctl checks offline from an export.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/trail.h"
#include "opsn/util.h"

struct trail_cp {
	int64_t		 cp_count;
	int64_t		 cp_at;
	char		 cp_hash[65];
};

struct trail_check {
	EVP_PKEY	*tc_key;
	struct trail_cp	*tc_cps;
	size_t		 tc_ncps;
	size_t		 tc_next;	/* the first checkpoint not reached */
	int		 tc_sorted;
	int64_t		 tc_expect;	/* the next record's id */
	char		 tc_prev[65];
	int64_t		 tc_records;
	int64_t		 tc_matched;
	int64_t		 tc_anchored;
	int64_t		 tc_first_bad;
	char		*tc_why;
};

/* Fields joined by the ASCII unit separator, which none contains. */
void
trail_hash(const struct trail_record *r, char out[65])
{
	EVP_MD_CTX	*md = EVP_MD_CTX_new();
	unsigned char	 h[32];
	unsigned int	 len = sizeof(h);
	char		 head[48];
	const char	*fields[] = { r->tr_token, r->tr_role, r->tr_action,
	    r->tr_object, r->tr_summary, r->tr_request_id, r->tr_prev };
	size_t		 i;

	if (md == NULL)
		fatalx("trail: out of memory");
	snprintf(head, sizeof(head), "%lld\x1f%lld", (long long)r->tr_id,
	    (long long)r->tr_at);
	EVP_DigestInit_ex(md, util_sha256(), NULL);
	EVP_DigestUpdate(md, head, strlen(head));
	for (i = 0; i < nitems(fields); i++) {
		EVP_DigestUpdate(md, "\x1f", 1);
		EVP_DigestUpdate(md, fields[i], strlen(fields[i]));
	}
	EVP_DigestFinal_ex(md, h, &len);
	EVP_MD_CTX_free(md);
	util_hex(h, sizeof(h), out);
}

/* The text a checkpoint signs: versioned, one field a line. */
char *
trail_checkpoint_text(int64_t count, const char *hash, int64_t at)
{
	char	*s;

	xasprintf(&s, "opsn audit checkpoint 1\ncount %lld\nhash %s\nat %lld\n",
	    (long long)count, hash, (long long)at);
	return (s);
}

/* A check signed by key (the caller keeps it alive until the end). */
struct trail_check *
trail_check_new(EVP_PKEY *key)
{
	struct trail_check	*c = xcalloc(1, sizeof(*c));

	c->tc_key = key;
	c->tc_expect = 1;
	return (c);
}

static int
trail_fail(struct trail_check *c, int64_t bad, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
trail_fail(struct trail_check *c, int64_t bad, const char *fmt, ...)
{
	va_list	 ap;

	if (c->tc_why == NULL) {
		va_start(ap, fmt);
		xvasprintf(&c->tc_why, fmt, ap);
		va_end(ap);
		c->tc_first_bad = bad;
	}
	return (-1);
}

/* A checkpoint whose signature does not verify fails the whole check. */
int
trail_check_checkpoint(struct trail_check *c, int64_t count, const char *hash,
    int64_t at, const char *sig)
{
	struct trail_cp	*cp;
	char		*text, when[32];
	int		 ok;

	if (c->tc_why != NULL)
		return (-1);
	util_time_fmt(at, when, sizeof(when));
	if (count < 0 || strlen(hash) != (count > 0 ? 64 : 0))
		return (trail_fail(c, count, "the checkpoint of %s is "
		    "malformed", when));
	text = trail_checkpoint_text(count, hash, at);
	ok = pki_verify_b64(c->tc_key, text, strlen(text), sig) == 0;
	free(text);
	if (!ok)
		return (trail_fail(c, count, "the checkpoint of %s (record "
		    "%lld) is not signed by the trail's key", when,
		    (long long)count));
	c->tc_cps = xrealloc(c->tc_cps, (c->tc_ncps + 1) *
	    sizeof(*c->tc_cps));
	cp = &c->tc_cps[c->tc_ncps++];
	cp->cp_count = count;
	cp->cp_at = at;
	strlcpy(cp->cp_hash, hash, sizeof(cp->cp_hash));
	c->tc_sorted = 0;
	return (0);
}

static int
trail_cp_cmp(const void *a, const void *b)
{
	const struct trail_cp	*x = a, *y = b;

	return (x->cp_count < y->cp_count ? -1 : x->cp_count > y->cp_count);
}

/*
 * Compare the chain, hash at record count, with the checkpoints that sign
 * that many records. A rewrite happened after the last checkpoint that
 * still matched.
 */
static int
trail_match(struct trail_check *c, int64_t count, const char *hash)
{
	struct trail_cp	*cp;
	char		 when[32];

	if (!c->tc_sorted) {
		if (c->tc_ncps > 1)
			qsort(c->tc_cps, c->tc_ncps, sizeof(*c->tc_cps),
			    trail_cp_cmp);
		c->tc_sorted = 1;
	}
	for (; c->tc_next < c->tc_ncps && (cp = &c->tc_cps[c->tc_next])->
	    cp_count <= count; c->tc_next++) {
		if (cp->cp_count < count)
			continue;	/* only before the first record */
		if (strcmp(cp->cp_hash, hash) != 0) {
			util_time_fmt(cp->cp_at, when, sizeof(when));
			return (trail_fail(c, c->tc_anchored + 1, "records "
			    "%lld to %lld are not what the checkpoint of %s "
			    "signed: the trail was rewritten",
			    (long long)c->tc_anchored + 1, (long long)count,
			    when));
		}
		c->tc_matched++;
		c->tc_anchored = count;
	}
	return (0);
}

/* The next record of the trail, in id order. */
int
trail_check_record(struct trail_check *c, const struct trail_record *r)
{
	struct trail_record	 h = *r;
	char			 hash[65];

	if (c->tc_why != NULL)
		return (-1);
	if (c->tc_expect == 1 && trail_match(c, 0, "") == -1)
		return (-1);
	if (r->tr_id != c->tc_expect)
		return (trail_fail(c, c->tc_expect, "record %lld is missing",
		    (long long)c->tc_expect));
	if (strcmp(r->tr_prev, c->tc_prev) != 0)
		return (trail_fail(c, r->tr_id, "record %lld does not follow "
		    "record %lld", (long long)r->tr_id, (long long)r->tr_id -
		    1));
	h.tr_prev = c->tc_prev;
	trail_hash(&h, hash);
	if (strcmp(hash, r->tr_hash) != 0)
		return (trail_fail(c, r->tr_id, "record %lld was modified",
		    (long long)r->tr_id));
	strlcpy(c->tc_prev, hash, sizeof(c->tc_prev));
	c->tc_expect++;
	c->tc_records++;
	return (trail_match(c, r->tr_id, hash));
}

/* Every checkpoint must have been reached: none signs more records. */
int
trail_check_end(struct trail_check *c, struct trail_result *res)
{
	struct trail_cp	*cp;
	char		 when[32];

	if (c->tc_why == NULL && c->tc_expect == 1)
		trail_match(c, 0, "");
	if (c->tc_why == NULL && c->tc_next < c->tc_ncps) {
		cp = &c->tc_cps[c->tc_ncps - 1];
		util_time_fmt(cp->cp_at, when, sizeof(when));
		trail_fail(c, c->tc_records + 1, "the checkpoint of %s signs "
		    "%lld records but the trail holds %lld: records were "
		    "deleted", when, (long long)cp->cp_count,
		    (long long)c->tc_records);
	}
	res->tr_records = c->tc_records;
	res->tr_checkpoints = c->tc_matched;
	res->tr_anchored = c->tc_anchored;
	res->tr_first_bad = c->tc_first_bad;
	strlcpy(res->tr_head, c->tc_prev, sizeof(res->tr_head));
	res->tr_why = c->tc_why;
	c->tc_why = NULL;
	return (res->tr_why == NULL ? 0 : -1);
}

void
trail_check_free(struct trail_check *c)
{
	if (c == NULL)
		return;
	free(c->tc_cps);
	free(c->tc_why);
	free(c);
}
