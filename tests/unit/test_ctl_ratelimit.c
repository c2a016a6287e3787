/* Request rates per caller: a token bucket per name (http/ratelimit.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "http/internal.h"

static void
burst_then_rate(void **state)
{
	unsigned	 retry = 0;
	int		 i;

	(void)state;
	ratelimit_configure(2, 5);
	for (i = 0; i < 5; i++)
		assert_int_equal(ratelimit_take("a", 1000, &retry), 0);
	assert_int_equal(ratelimit_take("a", 1000, &retry), -1);
	assert_int_equal(retry, 1);
	/* Another caller has its own bucket. */
	assert_int_equal(ratelimit_take("b", 1000, &retry), 0);
	/* Half a second later one request more (2 a second). */
	assert_int_equal(ratelimit_take("a", 1500, &retry), 0);
	assert_int_equal(ratelimit_take("a", 1500, &retry), -1);
	/* Never more than the burst, however long the pause. */
	for (i = 0; i < 5; i++)
		assert_int_equal(ratelimit_take("a", 900000, &retry), 0);
	assert_int_equal(ratelimit_take("a", 900000, &retry), -1);
	ratelimit_clear();
}

static void
slow_rate_says_how_long_to_wait(void **state)
{
	unsigned	 retry = 0;

	(void)state;
	ratelimit_configure(0.1, 1);
	assert_int_equal(ratelimit_take("a", 0, &retry), 0);
	assert_int_equal(ratelimit_take("a", 0, &retry), -1);
	assert_int_equal(retry, 10);
	assert_int_equal(ratelimit_take("a", 4000, &retry), -1);
	assert_int_equal(retry, 6);
	ratelimit_clear();
}

static void
no_rate_is_no_limit(void **state)
{
	unsigned	 retry;
	int		 i;

	(void)state;
	ratelimit_configure(-1, 1);
	for (i = 0; i < 10000; i++)
		assert_int_equal(ratelimit_take("a", 0, &retry), 0);
	ratelimit_clear();
}

static void
many_callers_do_not_grow_without_bound(void **state)
{
	unsigned	 retry;
	char		 name[32];
	int		 i;

	(void)state;
	ratelimit_configure(1000, 10);
	/* Each name takes one request; idle ones fill up and are dropped. */
	for (i = 0; i < 100000; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		assert_int_equal(ratelimit_take(name, (uint64_t)i * 10,
		    &retry), 0);
	}
	ratelimit_clear();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(burst_then_rate),
		cmocka_unit_test(slow_rate_says_how_long_to_wait),
		cmocka_unit_test(no_rate_is_no_limit),
		cmocka_unit_test(many_callers_do_not_grow_without_bound),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
