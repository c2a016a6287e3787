/*
 * The audit trail's evidence (lib/trail.c): a chain of records checked
 * against checkpoints signed with a key the database does not hold. A
 * chain rewritten with recomputed hashes, a cut tail, a forged or altered
 * checkpoint: each is caught, and says where.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/trail.h"
#include "opsn/util.h"

#define N	5

static EVP_PKEY	*key, *other;

struct rec {
	char	 summary[32];
	char	 prev[65];
	char	 hash[65];
};

/* Record i as the chain hashes it. */
static void
fill(struct trail_record *tr, int i, const struct rec *r)
{
	memset(tr, 0, sizeof(*tr));
	tr->tr_id = i + 1;
	tr->tr_at = 1000 + i;
	tr->tr_token = "admin";
	tr->tr_role = "admin";
	tr->tr_action = "tenant.update";
	tr->tr_object = "tenant/1";
	tr->tr_summary = r->summary;
	tr->tr_request_id = "req";
	tr->tr_prev = r->prev;
	tr->tr_hash = r->hash;
}

/* A chain of N records; record `at`'s summary is `changed` if given. */
static void
chain(struct rec *r, const char *changed, int at)
{
	struct trail_record	 tr;
	int			 i;

	for (i = 0; i < N; i++) {
		snprintf(r[i].summary, sizeof(r[i].summary), "{\"n\":%d}", i);
		if (changed != NULL && i == at)
			strlcpy(r[i].summary, changed, sizeof(r[i].summary));
		strlcpy(r[i].prev, i > 0 ? r[i - 1].hash : "",
		    sizeof(r[i].prev));
		fill(&tr, i, &r[i]);
		trail_hash(&tr, r[i].hash);
	}
}

static char *
sign(EVP_PKEY *k, int64_t count, const char *hash)
{
	char	*text = trail_checkpoint_text(count, hash, 2000), *sig, *cause;

	sig = pki_sign_b64(k, text, strlen(text), &cause);
	free(text);
	return (sig);
}

/* Check records r against a checkpoint of `count` records of signed. */
static int
check(struct rec *r, size_t n, int64_t count, struct rec *signed_,
    EVP_PKEY *by, struct trail_result *res)
{
	struct trail_check	*c = trail_check_new(key);
	struct trail_record	 tr;
	char			*sig = sign(by, count, signed_[count - 1].hash);
	size_t			 i;
	int			 rv;

	trail_check_checkpoint(c, count, signed_[count - 1].hash, 2000, sig);
	free(sig);
	for (i = 0; i < n; i++) {
		fill(&tr, (int)i, &r[i]);
		if (trail_check_record(c, &tr) == -1)
			break;
	}
	rv = trail_check_end(c, res);
	trail_check_free(c);
	return (rv);
}

static void
an_intact_trail_is_anchored_up_to_its_checkpoint(void **state)
{
	struct rec		 r[N];
	struct trail_result	 res;

	chain(r, NULL, 0);
	assert_int_equal(check(r, N, 3, r, key, &res), 0);
	assert_int_equal(res.tr_records, N);
	assert_int_equal(res.tr_checkpoints, 1);
	assert_int_equal(res.tr_anchored, 3);
	assert_string_equal(res.tr_head, r[N - 1].hash);
	assert_null(res.tr_why);
}

static void
a_chain_rewritten_with_recomputed_hashes_is_caught(void **state)
{
	struct rec		 good[N], bad[N];
	struct trail_result	 res;

	chain(good, NULL, 0);
	chain(bad, "{\"n\":99}", 1);	/* the chain holds, the past changed */
	assert_int_equal(check(bad, N, 3, good, key, &res), -1);
	assert_non_null(strstr(res.tr_why, "rewritten"));
	assert_int_equal(res.tr_first_bad, 1);
	free(res.tr_why);
	/* After the checkpoint, only the chain vouches: not caught yet. */
	chain(bad, "{\"n\":99}", 4);
	assert_int_equal(check(bad, N, 3, good, key, &res), 0);
}

static void
an_edited_record_and_a_cut_tail_are_caught(void **state)
{
	struct rec		 r[N];
	struct trail_result	 res;

	chain(r, NULL, 0);
	strlcpy(r[2].summary, "{}", sizeof(r[2].summary));
	assert_int_equal(check(r, N, 3, r, key, &res), -1);
	assert_int_equal(res.tr_first_bad, 3);
	assert_non_null(strstr(res.tr_why, "modified"));
	free(res.tr_why);
	chain(r, NULL, 0);
	assert_int_equal(check(r, 2, 3, r, key, &res), -1);
	assert_non_null(strstr(res.tr_why, "deleted"));
	assert_int_equal(res.tr_first_bad, 3);
	free(res.tr_why);
}

static void
a_checkpoint_signed_by_another_key_is_refused(void **state)
{
	struct rec		 r[N];
	struct trail_result	 res;

	chain(r, "{\"n\":99}", 1);
	assert_int_equal(check(r, N, 3, r, other, &res), -1);
	assert_non_null(strstr(res.tr_why, "not signed"));
	free(res.tr_why);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
		    an_intact_trail_is_anchored_up_to_its_checkpoint),
		cmocka_unit_test(
		    a_chain_rewritten_with_recomputed_hashes_is_caught),
		cmocka_unit_test(an_edited_record_and_a_cut_tail_are_caught),
		cmocka_unit_test(
		    a_checkpoint_signed_by_another_key_is_refused),
	};
	char	*cause = NULL;

	log_init("test_trail", LOG_LEVEL_ERR, NULL);
	if ((key = pki_key_new(&cause)) == NULL ||
	    (other = pki_key_new(&cause)) == NULL)
		return (1);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
