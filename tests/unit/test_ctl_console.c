/*
 * The console module's parts that need no server: one-time codes against
 * RFC 6238's own test vectors, login throttling, the password rule, and
 * the folding of members' names for search.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "console/session.h"
#include "members/tenants.h"

/* RFC 6238 appendix B's SHA-1 key, "12345678901234567890", in base32. */
#define RFC_SECRET	"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

static void
totp_matches_the_rfc_6238_vectors(void **state)
{
	/* The RFC's 8-digit codes, of which an app shows the last 6. */
	static const struct {
		int64_t		 t;
		const char	*code;
	} v[] = {
		{ 59, "287082" }, { 1111111109, "081804" },
		{ 1111111111, "050471" }, { 1234567890, "005924" },
		{ 2000000000, "279037" }, { 20000000000LL, "353130" },
	};
	char	 code[7];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		totp_at(RFC_SECRET, v[i].t, code);
		assert_string_equal(code, v[i].code);
	}
}

static void
totp_takes_a_step_either_way_and_never_twice(void **state)
{
	int64_t	 t = 1234567890, step = 0;
	char	 prev[7], now[7], next[7], far[7];

	(void)state;
	totp_at(RFC_SECRET, t - 30, prev);
	totp_at(RFC_SECRET, t, now);
	totp_at(RFC_SECRET, t + 30, next);
	totp_at(RFC_SECRET, t + 90, far);
	assert_int_equal(totp_check(RFC_SECRET, prev, t, 0, &step), 1);
	assert_int_equal(totp_check(RFC_SECRET, next, t, 0, &step), 1);
	assert_int_equal(totp_check(RFC_SECRET, now, t, 0, &step), 1);
	assert_int_equal(step, t / 30);
	/* Used once: refused at the same step, and any before it. */
	assert_int_equal(totp_check(RFC_SECRET, now, t, step, &step), 0);
	assert_int_equal(totp_check(RFC_SECRET, prev, t, t / 30, &step), 0);
	assert_int_equal(totp_check(RFC_SECRET, far, t, 0, &step), 0);
	assert_int_equal(totp_check(RFC_SECRET, "12345", t, 0, &step), 0);
	assert_int_equal(totp_check(RFC_SECRET, "12a456", t, 0, &step), 0);
}

static void
base32_round_trips_and_refuses_other_letters(void **state)
{
	unsigned char	 raw[20], back[32];
	char		*s;
	int		 i;

	(void)state;
	for (i = 0; i < 20; i++)
		raw[i] = (unsigned char)(i * 37 + 11);
	s = totp_base32(raw, sizeof(raw));
	assert_int_equal(strlen(s), 32);
	assert_int_equal(totp_unbase32(s, back, sizeof(back)), 20);
	assert_memory_equal(raw, back, 20);
	free(s);
	/* What a person types: lower case, spaces. */
	assert_int_equal(totp_unbase32("gezd gnbv gy3t qojq", back,
	    sizeof(back)), 10);
	assert_int_equal(totp_unbase32("GEZ1", back, sizeof(back)), -1);
	s = totp_new_secret();
	assert_int_equal(strlen(s), 32);
	free(s);
}

static void
throttle_locks_after_the_free_failures_and_doubles(void **state)
{
	int64_t	 now = 1000000;
	int	 first, i;

	(void)state;
	session_throttle_reset();
	for (i = 0; i < 4; i++)
		assert_int_equal(session_throttle_fail("u:alice", now, 5,
		    &first), 0);
	assert_int_equal(session_throttle_wait("u:alice", now, &first), 0);
	assert_int_equal(session_throttle_fail("u:alice", now, 5, &first), 30);
	assert_int_equal(first, 1);
	assert_int_equal(session_throttle_wait("u:alice", now + 10, &first),
	    20);
	assert_int_equal(first, 1);	/* the first refusal of this lock */
	assert_int_equal(session_throttle_wait("u:alice", now + 11, &first),
	    19);
	assert_int_equal(first, 0);
	/* Each failure past the free ones doubles the lock, up to a cap. */
	assert_int_equal(session_throttle_fail("u:alice", now + 40, 5, &first),
	    60);
	assert_int_equal(session_throttle_fail("u:alice", now + 40, 5, &first),
	    120);
	for (i = 0; i < 10; i++)
		session_throttle_fail("u:alice", now + 40, 5, &first);
	assert_int_equal(session_throttle_wait("u:alice", now + 40, &first),
	    900);
	/* Another key is not touched; a success starts afresh. */
	assert_int_equal(session_throttle_wait("u:bob", now + 40, &first), 0);
	session_throttle_ok("u:alice");
	assert_int_equal(session_throttle_wait("u:alice", now + 40, &first), 0);
	/* Failures long apart are forgotten. */
	for (i = 0; i < 10; i++)
		assert_int_equal(session_throttle_fail("a:10.0.0.1",
		    now + i * 1000, 5,
		    &first), 0);
	session_throttle_reset();
}

static void
passwords_have_twelve_characters_at_least(void **state)
{
	(void)state;
	assert_non_null(users_pw_weak("court"));
	assert_non_null(users_pw_weak("onze carac."));
	assert_null(users_pw_weak("douze carac."));
	/* Characters, not bytes: eleven accented letters are eleven. */
	assert_non_null(users_pw_weak("ééééééééééé"));
	assert_null(users_pw_weak("éééééééééééé"));
}

static void
names_fold_for_search(void **state)
{
	char	 out[128];

	(void)state;
	tenants_fold("Saint-Étienne", out, sizeof(out));
	assert_string_equal(out, "saint etienne");
	tenants_fold("L'Haÿ-les-Roses", out, sizeof(out));
	assert_string_equal(out, "l hay les roses");
	tenants_fold("Œuilly", out, sizeof(out));
	assert_string_equal(out, "oeuilly");
	tenants_fold("Bâgé-Dommartin", out, sizeof(out));
	assert_string_equal(out, "bage dommartin");
	tenants_fold("Saint\xe2\x80\x99" "Andr\xc3\xa9", out, sizeof(out));
	assert_string_equal(out, "saint andre");
	/* Bounded: a short buffer gets a truncated, terminated name. */
	tenants_fold("Saint-Étienne", out, 6);
	assert_string_equal(out, "saint");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(totp_matches_the_rfc_6238_vectors),
		cmocka_unit_test(totp_takes_a_step_either_way_and_never_twice),
		cmocka_unit_test(base32_round_trips_and_refuses_other_letters),
		cmocka_unit_test(throttle_locks_after_the_free_failures_and_doubles),
		cmocka_unit_test(passwords_have_twelve_characters_at_least),
		cmocka_unit_test(names_fold_for_search),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
