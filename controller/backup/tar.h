/*
 * The backup module's own: what a backup archive holds, and the tar
 * (ustar) writer and reader (blocking: thread pool or the offline
 * restore only).
 */
#ifndef OPSN_BACKUP_TAR_H
#define OPSN_BACKUP_TAR_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define TAR_NAME_MAX	101

/* Members: BACKUP_MEMBER_DIR/opsn.db, the files below, the manifest last. */
#define BACKUP_MEMBER_DIR	"opsn-backup"
#define BACKUP_MANIFEST		"manifest.json"
#define BACKUP_CONF_MEMBER	"controller.conf"
#define BACKUP_FORMAT		1

struct backup_file {
	const char	*bf_name;	/* in the data folder */
	int		 bf_mode;
	int		 bf_required;
};
extern const struct backup_file backup_files[];	/* NULL-terminated */

struct tar {
	int		 t_fd;
	char		*t_path;
	EVP_MD_CTX	*t_md;		/* the whole file's hash */
	uint64_t	 t_off;
	uint64_t	 t_left;	/* reading: bytes left in the member */
	uint64_t	 t_skip;	/* ... to the next header */
	int		 t_errno;	/* writing: why it failed (ENOSPC) */
};

/* Writing: create, add members, finish (sync) and close. */
int	tar_create(struct tar *, const char *path, char **cause);
int	tar_put_mem(struct tar *, const char *name, int mode, const void *,
	    size_t, char sha[65], char **cause);
int	tar_put_file(struct tar *, const char *name, int mode,
	    const char *path, uint64_t *size, char sha[65], char **cause);
int	tar_finish(struct tar *, char sha[65], uint64_t *size, char **cause);

/* Reading: each member's header, then its data to a file or to memory. */
int	tar_open(struct tar *, const char *path, char **cause);
int	tar_next(struct tar *, char name[TAR_NAME_MAX], uint64_t *size,
	    int *mode, char **cause);
int	tar_extract(struct tar *, const char *dest, int mode, char sha[65],
	    char **cause);
int	tar_read_mem(struct tar *, size_t max, char **out, size_t *len,
	    char **cause);
/* After tar_next() said 0: the whole file's SHA-256 (every byte read). */
int	tar_end(struct tar *, char sha[65], char **cause);
void	tar_close(struct tar *);

#endif
