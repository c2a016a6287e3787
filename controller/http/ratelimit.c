/*
 * Request rates per caller: a token bucket per token (or node) name that
 * fills at `rate` a second up to `burst`. Names are kept in a small hash
 * table; a bucket back to full is as good as none and is dropped when the
 * table grows, so a flood of distinct names cannot grow it without bound
 * (only authenticated callers reach it).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/util.h"
#include "internal.h"

#define RL_BUCKETS	1024
#define RL_PRUNE_AT	4096	/* entries before full buckets are dropped */

struct rl_entry {
	struct rl_entry	*e_next;
	double		 e_tokens;
	uint64_t	 e_ms;		/* last refill */
	char		 e_name[];
};

static struct {
	double		 rate, burst;	/* rate <= 0: no limit */
	struct rl_entry	*tab[RL_BUCKETS];
	size_t		 n;
	size_t		 prune_at;	/* entries before the next prune */
} rl;

static size_t
ratelimit_hash(const char *s)
{
	size_t	 h = 5381;

	while (*s != '\0')
		h = h * 33 + (unsigned char)*s++;
	return (h % RL_BUCKETS);
}

static void
ratelimit_refill(struct rl_entry *e, uint64_t now)
{
	if (now > e->e_ms) {
		e->e_tokens += (double)(now - e->e_ms) * rl.rate / 1000.0;
		if (e->e_tokens > rl.burst)
			e->e_tokens = rl.burst;
	}
	e->e_ms = now;
}

/* Drop the buckets that are full again: their callers are idle. */
static void
ratelimit_prune(uint64_t now)
{
	struct rl_entry	**ep, *e;
	size_t		 i;

	for (i = 0; i < RL_BUCKETS; i++) {
		for (ep = &rl.tab[i]; (e = *ep) != NULL; ) {
			ratelimit_refill(e, now);
			if (e->e_tokens >= rl.burst) {
				*ep = e->e_next;
				free(e);
				rl.n--;
			} else
				ep = &e->e_next;
		}
	}
}

/* Set the rate (requests a second, <= 0: none) and the burst. */
void
ratelimit_configure(double rate, double burst)
{
	ratelimit_clear();
	rl.rate = rate;
	rl.burst = burst < 1 ? 1 : burst;
}

/* Take one request from name's bucket (see internal.h). */
int
ratelimit_take(const char *name, uint64_t now, unsigned *retry)
{
	struct rl_entry	*e;
	size_t		 h, len;

	if (rl.rate <= 0)
		return (0);
	h = ratelimit_hash(name);
	for (e = rl.tab[h]; e != NULL; e = e->e_next)
		if (strcmp(e->e_name, name) == 0)
			break;
	if (e == NULL) {
		if (rl.n >= rl.prune_at) {
			ratelimit_prune(now);
			/* Many callers at once: do not scan on every one. */
			rl.prune_at = rl.n >= RL_PRUNE_AT / 2 ? 2 * rl.n :
			    RL_PRUNE_AT;
		}
		len = strlen(name);
		e = xmalloc(sizeof(*e) + len + 1);
		memcpy(e->e_name, name, len + 1);
		e->e_tokens = rl.burst;
		e->e_ms = now;
		e->e_next = rl.tab[h];
		rl.tab[h] = e;
		rl.n++;
	}
	ratelimit_refill(e, now);
	if (e->e_tokens >= 1) {
		e->e_tokens -= 1;
		return (0);
	}
	*retry = (unsigned)ceil((1 - e->e_tokens) / rl.rate);
	if (*retry == 0)
		*retry = 1;
	return (-1);
}

/* Forget every bucket. */
void
ratelimit_clear(void)
{
	struct rl_entry	*e;
	size_t		 i;

	for (i = 0; i < RL_BUCKETS; i++) {
		while ((e = rl.tab[i]) != NULL) {
			rl.tab[i] = e->e_next;
			free(e);
		}
	}
	rl.n = 0;
	rl.prune_at = RL_PRUNE_AT;
}
