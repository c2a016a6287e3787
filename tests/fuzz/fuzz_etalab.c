/*
 * libFuzzer target for opsnctl's reading of Etalab's
 * decoupage-administratif files (communes.json, epci.json) into member
 * records, with each filter (département, region, EPCI). The reader is
 * file-local to cli/import.c, which this harness includes.
 *
 * Input: byte 0 picks the filter; the rest is communes.json, then, after
 * a line "--", epci.json (both written to a temporary folder).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../cli/import.c"
#include "fuzz.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char	*fuzz_communes, *fuzz_epci;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_communes = fuzz_file("communes.json");
	fuzz_epci = fuzz_file("epci.json");
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct import_filter filters[] = {
		{ NULL, NULL, NULL, NULL, NULL },
		{ "31", NULL, NULL, NULL, NULL },
		{ "2A", NULL, NULL, NULL, NULL },
		{ "971", NULL, NULL, NULL, NULL },
		{ NULL, "76", NULL, NULL, NULL },
		{ NULL, NULL, "243100518", NULL, NULL },
	};
	const struct import_filter *f;
	const uint8_t	*sep;
	json_t		*recs = NULL;
	char		*cause = NULL;
	size_t		 n;

	if (size < 1)
		return (0);
	f = &filters[data[0] % nitems(filters)];
	data++;
	size--;
	sep = memmem(data, size, "\n--\n", 4);
	n = sep != NULL ? (size_t)(sep - data) : size;
	fuzz_write(fuzz_communes, data, n);
	if (sep != NULL)
		fuzz_write(fuzz_epci, sep + 4, size - n - 4);
	else
		fuzz_write(fuzz_epci, (const uint8_t *)"[]", 2);

	if (import_etalab(fuzz_communes, f, &recs, &cause) == 0 &&
	    !json_is_array(recs))
		abort();
	json_decref(recs);
	free(cause);
	recs = NULL;
	cause = NULL;
	/* An EPCI file filtered by département or region (communes.json). */
	if (f->if_epci == NULL && import_etalab_epci(fuzz_epci, f, &recs,
	    &cause) == 0 && !json_is_array(recs))
		abort();
	json_decref(recs);
	free(cause);
	return (0);
}
