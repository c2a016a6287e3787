/* Configuration: defaults, types, bounds, and errors that name file:line. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "opsn/config.h"
#include "opsn/util.h"

struct conf {
	char	*listen;
	char	*role;
	char	*token;
	int64_t	 workers;
	int64_t	 timeout_ms;
	int	 verbose;
};

static const struct cfg_option opts[] = {
	{ "main", "listen", CFG_STRING, offsetof(struct conf, listen),
	  "127.0.0.1:8443", 0, 0, NULL, 0, "listen", "address" },
	{ "main", "role", CFG_ENUM, offsetof(struct conf, role),
	  "hypervisor", 0, 0, "hypervisor|mail|web", 0, "role", "role" },
	{ "main", "token", CFG_STRING, offsetof(struct conf, token),
	  NULL, 0, 0, NULL, 1, NULL, "secret" },
	{ "main", "workers", CFG_INT, offsetof(struct conf, workers),
	  "4", 1, 64, NULL, 0, NULL, "workers" },
	{ "timers", "timeout", CFG_DURATION, offsetof(struct conf, timeout_ms),
	  "30s", 100, 3600000, NULL, 0, NULL, "timeout" },
	{ "timers", "verbose", CFG_BOOL, offsetof(struct conf, verbose),
	  "no", 0, 0, NULL, 0, NULL, "verbose" },
};
static const struct cfg_table table = { opts, nitems(opts) };

static char *
write_tmp(const char *text, size_t len)
{
	char	*path = xstrdup("/tmp/opsn-test-config-XXXXXX");
	int	 fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return (path);
}

static int
load_bytes(const char *text, size_t len, struct conf *c, char **cause,
    char **pathp)
{
	char	*path = write_tmp(text, len);
	int	 rv;

	cfg_defaults(&table, c);
	rv = cfg_load(&table, c, path, cause);
	unlink(path);
	*pathp = path;
	return (rv);
}

static int
load_text(const char *text, struct conf *c, char **cause, char **pathp)
{
	return (load_bytes(text, strlen(text), c, cause, pathp));
}

static void
config_defaults_apply(void **state)
{
	struct conf	 c = { 0 };

	cfg_defaults(&table, &c);
	assert_string_equal(c.listen, "127.0.0.1:8443");
	assert_int_equal(c.workers, 4);
	assert_int_equal(c.timeout_ms, 30000);
	assert_int_equal(c.verbose, 0);
	assert_null(c.token);
	cfg_free(&table, &c);
}

static void
config_file_sets_every_type(void **state)
{
	struct conf	 c = { 0 };
	char		*cause = NULL, *path;

	assert_int_equal(load_text("# comment\n[main]\nlisten = [::1]:9000\n"
	    "role = web\nworkers = 8\ntoken = s3cret\n\n[timers]\n"
	    "timeout = 500ms\nverbose = yes\n", &c, &cause, &path), 0);
	assert_string_equal(c.listen, "[::1]:9000");
	assert_string_equal(c.role, "web");
	assert_int_equal(c.workers, 8);
	assert_int_equal(c.timeout_ms, 500);
	assert_int_equal(c.verbose, 1);
	free(path);
	cfg_free(&table, &c);
}

static void
expect_error_bytes(const char *text, size_t len, int line, const char *what)
{
	struct conf	 c = { 0 };
	char		*cause = NULL, *path, *want;

	assert_int_equal(load_bytes(text, len, &c, &cause, &path), -1);
	assert_non_null(cause);
	xasprintf(&want, "%s:%d: ", path, line);
	if (strncmp(cause, want, strlen(want)) != 0)
		fail_msg("cause '%s' does not start with '%s'", cause, want);
	if (strstr(cause, what) == NULL)
		fail_msg("cause '%s' does not mention '%s'", cause, what);
	free(want);
	free(cause);
	free(path);
	cfg_free(&table, &c);
}

static void
expect_error(const char *text, int line, const char *what)
{
	expect_error_bytes(text, strlen(text), line, what);
}

static void
config_errors_name_file_and_line(void **state)
{
	expect_error("[main]\nlisten = x:1\n\nworkers = many\n", 4,
	    "not a whole number");
	expect_error("[main]\nworkers = 65\n", 2, "out of range");
	expect_error("[main]\nworkers = 0\n", 2, "out of range");
	expect_error("[main]\n\n\nrole = dns\n", 4, "not one of");
	expect_error("[main]\nlisten = a:1\n[nope]\nx = 1\n", 4,
	    "unknown section");
	expect_error("[main]\nlistne = a:1\n", 2, "unknown option 'listne'");
	expect_error("[timers]\ntimeout = soon\n", 2, "not a duration");
	expect_error("[timers]\ntimeout = 10ms\n", 2, "out of range");
	expect_error("[timers]\nverbose = maybe\n", 2, "yes or no");
	expect_error("listen = a:1\n", 1, "outside a [section]");
	expect_error("[main]\nthis line has no equals sign\n", 2, "syntax");
	/* inih would take it as more of 'listen' (found by fuzz_config). */
	expect_error("[main]\nlisten = a:1\n  more ; codn\n", 3,
	    "starts with a blank");
	expect_error("[main]\nlisten = a:1\n\tworkers = 2\n", 3,
	    "continue option 'listen'");
	/* Every blank inih skips, not only space and tab (fuzz_config). */
	expect_error("[main]\nlisten = a:1\n\f\fworkers ;= 2\n", 3,
	    "starts with a blank");
	expect_error("[main]\nlisten = a:1\n\vworkers = 2\n", 3,
	    "starts with a blank");
	expect_error("[main]\nlisten = a:1\n\rworkers = 2\n", 3,
	    "starts with a blank");
}

/*
 * fuzz_config: inih stops a line at a NUL byte, and an indented line after
 * it was taken as more of the option above; a line longer than inih's
 * buffer was read as two.
 */
static void
config_refuses_what_inih_would_misread(void **state)
{
	static const char nul[] = "[main]\nlisten = a:1\n\0=\n  b:2\n";
	struct conf	 c = { 0 };
	char		 text[512], *cause = NULL, *path;
	int		 n;

	(void)state;
	expect_error_bytes(nul, sizeof(nul) - 1, 3, "NUL byte");
	/* 199 characters and a newline fit; 200 do not. */
	n = snprintf(text, sizeof(text), "[main]\nlisten = %0190d\n", 7);
	assert_int_equal(n, 7 + 199 + 1);
	assert_int_equal(load_text(text, &c, &cause, &path), 0);
	assert_int_equal(strlen(c.listen), 190);
	free(path);
	cfg_free(&table, &c);
	snprintf(text, sizeof(text), "[main]\nlisten = %0191d\n", 7);
	expect_error(text, 2, "longer than 199 characters");
	snprintf(text, sizeof(text), "[main]\nlisten = %0191d", 7);
	expect_error(text, 2, "longer than 199 characters");
	snprintf(text, sizeof(text), "[main]\nlisten = %0300d\n", 7);
	expect_error(text, 2, "longer than 199 characters");
}

static void
config_missing_file_is_an_error(void **state)
{
	struct conf	 c = { 0 };
	char		*cause = NULL;

	cfg_defaults(&table, &c);
	assert_int_equal(cfg_load(&table, &c, "/nonexistent/opsn.conf",
	    &cause), -1);
	assert_non_null(strstr(cause, "/nonexistent/opsn.conf"));
	free(cause);
	cfg_free(&table, &c);
}

static void
config_flag_overrides_file(void **state)
{
	struct conf	 c = { 0 };
	char		*cause = NULL, *path;
	const struct cfg_option *o;

	assert_int_equal(load_text("[main]\nlisten = 1.2.3.4:1\n", &c, &cause,
	    &path), 0);
	o = cfg_find_flag(&table, "listen");
	assert_non_null(o);
	assert_int_equal(cfg_set(&table, &c, o->co_name, "127.0.0.1:2",
	    "--listen", &cause), 0);
	assert_string_equal(c.listen, "127.0.0.1:2");
	assert_int_equal(cfg_set(&table, &c, "role", "dns", "--role", &cause),
	    -1);
	assert_non_null(strstr(cause, "--role"));
	free(cause);
	free(path);
	cfg_free(&table, &c);
}

static void
config_print_masks_secrets(void **state)
{
	struct conf	 c = { 0 };
	char		*buf = NULL;
	size_t		 len = 0;
	FILE		*f;
	char		*cause = NULL;

	cfg_defaults(&table, &c);
	assert_int_equal(cfg_set(&table, &c, "token", "hunter2", "test",
	    &cause), 0);
	f = open_memstream(&buf, &len);
	cfg_print(&table, &c, f);
	fclose(f);
	assert_null(strstr(buf, "hunter2"));
	assert_non_null(strstr(buf, "token = (secret)"));
	free(buf);
	cfg_free(&table, &c);
}

/* fuzz_config: a value starting with ';' read back as a comment. */
static void
config_print_reads_back(void **state)
{
	struct conf	 c = { 0 }, c2 = { 0 };
	char		*cause = NULL, *path, *path2, *buf = NULL;
	size_t		 len = 0;
	FILE		*f;

	(void)state;
	assert_int_equal(load_text("[main]\nlisten =;first\n", &c, &cause,
	    &path), 0);
	assert_string_equal(c.listen, ";first");
	f = open_memstream(&buf, &len);
	cfg_print(&table, &c, f);
	fclose(f);
	assert_int_equal(load_text(buf, &c2, &cause, &path2), 0);
	assert_string_equal(c2.listen, ";first");
	free(buf);
	free(path);
	free(path2);
	cfg_free(&table, &c);
	cfg_free(&table, &c2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(config_defaults_apply),
		cmocka_unit_test(config_file_sets_every_type),
		cmocka_unit_test(config_errors_name_file_and_line),
		cmocka_unit_test(config_refuses_what_inih_would_misread),
		cmocka_unit_test(config_missing_file_is_an_error),
		cmocka_unit_test(config_flag_overrides_file),
		cmocka_unit_test(config_print_masks_secrets),
		cmocka_unit_test(config_print_reads_back),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
