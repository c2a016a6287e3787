/*
 * The agent's metering spool: samples are numbered without holes, kept
 * across a restart until acknowledged, and a full spool refuses new ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "meter.h"

static char	 dir[] = "/tmp/opsn-test-spool.XXXXXX";
static char	*path;

static void
add(struct meter_list *l, int n)
{
	int	 i;
	char	 res[32];

	for (i = 0; i < n; i++) {
		snprintf(res, sizeof(res), "vm-%d", i);
		meter_list_add(l, "vm", res, 1795978800000LL + i)->vcpus = 2;
	}
}

static void
spool_numbers_keeps_and_forgets_only_what_was_acked(void **state)
{
	struct meter_spool	 sp;
	struct meter_list	 l = { 0 }, r = { 0 };
	char			*cause = NULL;
	uint64_t		 first, low;
	int64_t			 oldest;
	size_t			 i;

	assert_int_equal(meter_spool_open(&sp, path, 100, 1 << 20, &cause), 0);
	first = sp.sp_next;
	assert_true(first > 1000000000000000ULL);	/* from the clock, in us */
	add(&l, 5);
	assert_int_equal(meter_spool_append(&sp, &l, &cause), 5);
	for (i = 0; i < 5; i++)
		assert_int_equal(l.ml_v[i]->seq, first + i);
	meter_list_clear(&l);
	assert_int_equal(meter_spool_ack(&sp, first + 2, &cause), 0);
	assert_int_equal(sp.sp_count, 2);
	meter_spool_close(&sp);

	/* After a restart: the same two, and numbering goes on. */
	assert_int_equal(meter_spool_open(&sp, path, 100, 1 << 20, &cause), 0);
	assert_int_equal(sp.sp_count, 2);
	assert_int_equal(sp.sp_next, first + 5);
	assert_int_equal(meter_spool_read(&sp, 0, 10, &r, &low, &oldest,
	    &cause), 0);
	assert_int_equal(r.ml_n, 2);
	assert_int_equal(low, first + 3);
	assert_int_equal(r.ml_v[0]->seq, first + 3);
	assert_int_equal(r.ml_v[1]->vcpus, 2);
	assert_string_equal(r.ml_v[1]->resource, "vm-4");
	meter_list_clear(&r);
	meter_spool_close(&sp);
}

static void
full_spool_refuses_new_samples_and_counts_them(void **state)
{
	struct meter_spool	 sp;
	struct meter_list	 l = { 0 };
	char			*cause = NULL;

	assert_int_equal(meter_spool_open(&sp, path, 4, 1 << 20, &cause), 0);
	add(&l, 5);			/* 2 already held: room for 2 */
	assert_int_equal(meter_spool_append(&sp, &l, &cause), 2);
	assert_int_equal(sp.sp_dropped, 3);
	assert_int_equal(l.ml_v[4]->seq, 0);
	assert_int_equal(sp.sp_count, 4);
	meter_list_clear(&l);
	meter_spool_close(&sp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(spool_numbers_keeps_and_forgets_only_what_was_acked),
		cmocka_unit_test(full_spool_refuses_new_samples_and_counts_them),
	};
	char	*cmd;
	int	 rc;

	log_init("test", LOG_LEVEL_ERR, NULL);
	if (mkdtemp(dir) == NULL)
		return (1);
	xasprintf(&path, "%s/spool.db", dir);
	rc = cmocka_run_group_tests_name("meter_spool", tests, NULL, NULL);
	xasprintf(&cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		rc++;
	free(cmd);
	free(path);
	return (rc);
}
