/*
 * libFuzzer target for the backup archive reader (controller/backup/
 * tar.c): `opsn-controller restore` and `backup verify` read a file the
 * operator names, which may be damaged or not a backup at all. Every
 * member is read into memory or skipped, then the whole file's hash;
 * whatever the bytes, a clear error or the members, never a crash or a
 * read out of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backup/tar.h"
#include "fuzz.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char	*fuzz_path;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_path = fuzz_file("backup.tar");
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tar	 t;
	char		 name[TAR_NAME_MAX], sha[65], *cause = NULL, *text;
	uint64_t	 len;
	size_t		 got;
	int		 mode, r, i = 0;

	fuzz_write(fuzz_path, data, size);
	if (tar_open(&t, fuzz_path, &cause) == -1)
		abort();
	while ((r = tar_next(&t, name, &len, &mode, &cause)) == 1) {
		if (strlen(name) >= TAR_NAME_MAX)
			abort();
		/* Every other member is read, as the manifest is. */
		if (i++ % 2 == 0) {
			if (tar_read_mem(&t, 1 << 20, &text, &got, &cause) ==
			    -1)
				break;
			if (got != len || text[got] != '\0')
				abort();
			free(text);
		}
	}
	if (r == 0)
		(void)tar_end(&t, sha, &cause);
	free(cause);
	tar_close(&t);
	return (0);
}
