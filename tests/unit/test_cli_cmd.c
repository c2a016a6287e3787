/*
 * opsnctl's command plumbing that needs no server: usage lines as a user
 * reads them, and options given more than once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "opsn/util.h"
#include "cli.h"

static const struct cli_cmd test_create = {
	{ "vm", "create" }, "--name NAME --node NODE --image IMAGE "
	"--vcpus N --memory SIZE --disk SIZE [--tenant TENANT] "
	"[--nic BRIDGE]... [--stopped] [--wait [--timeout DURATION]]",
	"create a VM on a node",
	{ "name=", "nic=", "wait" }, 0, 0, 0, NULL,
};

static char *
usage_of(const struct cli_cmd *cmd)
{
	char	*out = NULL;
	size_t	 len;
	FILE	*f;

	f = open_memstream(&out, &len);
	assert_non_null(f);
	cli_print_usage(f, cmd);
	fclose(f);
	return (out);
}

static void
usage_wraps_at_80_columns_between_bracket_groups(void **state)
{
	char	*out, *line, *save = NULL;

	(void)state;
	out = usage_of(&test_create);
	assert_string_equal(out,
	    "usage: opsnctl vm create --name NAME --node NODE --image IMAGE "
	    "--vcpus N\n"
	    "                         --memory SIZE --disk SIZE "
	    "[--tenant TENANT]\n"
	    "                         [--nic BRIDGE]... [--stopped]\n"
	    "                         [--wait [--timeout DURATION]]\n");
	for (line = strtok_r(out, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		assert_true(strlen(line) <= 80);
	free(out);
}

static void
usage_keeps_a_short_command_on_one_line(void **state)
{
	static const struct cli_cmd show = {
		{ "vm", "show" }, "VM", "show one VM", { NULL }, 1, 1, 0, NULL,
	};
	char	*out;

	(void)state;
	out = usage_of(&show);
	assert_string_equal(out, "usage: opsnctl vm show VM\n");
	free(out);
}

static void
opt_list_keeps_every_value_in_order(void **state)
{
	const char	*nics[] = { "br0", "br1" }, **l;
	struct cli_call	 call;
	size_t		 n;

	(void)state;
	memset(&call, 0, sizeof(call));
	call.ca_cmd = &test_create;
	call.ca_optv[1] = "br1";
	call.ca_optl[1] = nics;
	call.ca_optn[1] = 2;
	l = cli_opt_list(&call, "nic", &n);
	assert_int_equal(n, 2);
	assert_string_equal(l[0], "br0");
	assert_string_equal(l[1], "br1");
	assert_string_equal(cli_opt(&call, "nic"), "br1");
	/* Not given, and not an option of the command at all. */
	assert_null(cli_opt_list(&call, "name", &n));
	assert_int_equal(n, 0);
	assert_null(cli_opt(&call, "plan"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
		    usage_wraps_at_80_columns_between_bracket_groups),
		cmocka_unit_test(usage_keeps_a_short_command_on_one_line),
		cmocka_unit_test(opt_list_keeps_every_value_in_order),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
