/*
 * libFuzzer target for tariff files: opsnctl turns an INI or JSON file
 * into the API's document (cli/tariff.c, whose reader this harness
 * includes), and the controller checks and normalizes that document
 * (controller/billing/tariff.c) before it is stored; a stored version is
 * read back with the same checks, so normalizing twice must agree.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../cli/tariff.c"
#include "billing/billing.h"
#include "fuzz.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char	*fuzz_path;
static int	 fuzz_null, fuzz_stderr;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_path = fuzz_file("tariff");
	if ((fuzz_null = open("/dev/null", O_WRONLY)) == -1 ||
	    (fuzz_stderr = dup(2)) == -1)
		abort();
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tariff	 t, t2;
	json_t		*doc, *norm, *again;
	char		*cause = NULL;

	fuzz_write(fuzz_path, data, size);
	/* tariff_file() prints why a file is refused: not to the terminal. */
	fflush(stderr);
	dup2(fuzz_null, 2);
	doc = tariff_file(fuzz_path);
	fflush(stderr);
	dup2(fuzz_stderr, 2);
	if (doc == NULL)
		return (0);
	memset(&t, 0, sizeof(t));
	norm = tariff_normalize(doc, &t, &cause);
	free(cause);
	cause = NULL;
	if (norm != NULL) {
		memset(&t2, 0, sizeof(t2));
		if ((again = tariff_normalize(norm, &t2, &cause)) == NULL) {
			fprintf(stdout, "normalized tariff refused: %s\n",
			    cause);
			abort();
		}
		if (!json_equal(norm, again))
			abort();
		json_decref(again);
	}
	free(cause);
	json_decref(norm);
	json_decref(doc);
	return (0);
}
