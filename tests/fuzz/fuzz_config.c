/*
 * libFuzzer target for the configuration parser (lib/config.c over
 * inih): an INI file read against a table with every option type, then
 * printed and read back (what opsn-controller -n and the effective
 * configuration show must load again to the same values).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opsn/config.h"
#include "opsn/util.h"
#include "fuzz.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct fuzz_conf {
	char	*s;
	char	*secret;
	int64_t	 n;
	int	 b;
	int64_t	 ms;
	char	*e;
};

#define C(f) offsetof(struct fuzz_conf, f)
static const struct cfg_option fuzz_opts[] = {
	{ "main", "s", CFG_STRING, C(s), "x", 0, 0, NULL, 0, "s", "a string" },
	{ "main", "secret", CFG_STRING, C(secret), NULL, 0, 0, NULL, 1,
	  NULL, "a secret" },
	{ "main", "n", CFG_INT, C(n), "5", -1000, 1000000, NULL, 0, "n",
	  "a number" },
	{ "other", "b", CFG_BOOL, C(b), "no", 0, 0, NULL, 0, NULL, "a switch" },
	{ "other", "ms", CFG_DURATION, C(ms), "30s", 1, 86400000, NULL, 0,
	  NULL, "a duration" },
	{ "other", "e", CFG_ENUM, C(e), "a", 0, 0, "a|bb|ccc", 0, NULL,
	  "a word" },
};
#undef C
static const struct cfg_table fuzz_table = { fuzz_opts, nitems(fuzz_opts) };

static char	*fuzz_path, *fuzz_path2;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_path = fuzz_file("a.conf");
	fuzz_path2 = fuzz_file("b.conf");
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_conf	 c, c2;
	FILE			*f;
	char			*cause = NULL;

	fuzz_write(fuzz_path, data, size);
	memset(&c, 0, sizeof(c));
	cfg_defaults(&fuzz_table, &c);
	if (cfg_load(&fuzz_table, &c, fuzz_path, &cause) == 0) {
		/* The effective configuration reads back the same. */
		if ((f = fopen(fuzz_path2, "w")) == NULL)
			abort();
		cfg_print(&fuzz_table, &c, f);
		fclose(f);
		memset(&c2, 0, sizeof(c2));
		cfg_defaults(&fuzz_table, &c2);
		free(cause);
		cause = NULL;
		if (cfg_load(&fuzz_table, &c2, fuzz_path2, &cause) == -1) {
			fprintf(stderr, "printed config refused: %s\n", cause);
			abort();
		}
		if (strcmp(c.s, c2.s) != 0 || c.n != c2.n || c.b != c2.b ||
		    c.ms != c2.ms || strcmp(c.e, c2.e) != 0)
			abort();
		cfg_free(&fuzz_table, &c2);
	}
	free(cause);
	cause = NULL;
	/* A flag over the file, as the command line does. */
	if (size > 0 && memchr(data, '\0', size) == NULL) {
		char *v = xstrndup((const char *)data, size > 64 ? 64 : size);

		(void)cfg_set(&fuzz_table, &c, "ms", v, "--ms", &cause);
		free(cause);
		cause = NULL;
		(void)cfg_set(&fuzz_table, &c, "e", v, "--e", &cause);
		free(cause);
		free(v);
	}
	cfg_free(&fuzz_table, &c);
	return (0);
}
