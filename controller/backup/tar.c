/*
 * A backup is a POSIX tar (ustar) file, so that `tar tvf` lists it and
 * `tar xf` opens it without opsn. Only regular files, written in one
 * pass with the SHA-256 of each member and of the whole file; sizes of
 * 8 GiB and more use the base-256 encoding GNU tar reads.
 *
 * These run on the thread pool (blocking I/O); nothing here touches the
 * loop or the store.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "opsn/util.h"
#include "tar.h"

#define TAR_BLOCK	512
#define TAR_CHUNK	(1 << 20)

struct tar_hdr {
	char	name[100];
	char	mode[8];
	char	uid[8];
	char	gid[8];
	char	size[12];
	char	mtime[12];
	char	chksum[8];
	char	typeflag;
	char	linkname[100];
	char	magic[6];
	char	version[2];
	char	uname[32];
	char	gname[32];
	char	devmajor[8];
	char	devminor[8];
	char	prefix[155];
	char	pad[12];
};

static void
tar_hex(EVP_MD_CTX *md, char out[65])
{
	unsigned char	 h[32];
	unsigned int	 len = sizeof(h);

	EVP_DigestFinal_ex(md, h, &len);
	util_hex(h, sizeof(h), out);
}

static int
tar_write(struct tar *t, const void *buf, size_t len, char **cause)
{
	const char	*p = buf;
	ssize_t		 n;

	EVP_DigestUpdate(t->t_md, buf, len);
	while (len > 0) {
		if ((n = write(t->t_fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			t->t_errno = errno;
			xasprintf(cause, "writing %s: %s", t->t_path,
			    strerror(errno));
			return (-1);
		}
		p += n;
		len -= (size_t)n;
		t->t_off += (uint64_t)n;
	}
	return (0);
}

/* Zeros up to the next block. */
static int
tar_pad(struct tar *t, char **cause)
{
	static const char	 zero[TAR_BLOCK];
	size_t			 rest = (size_t)(t->t_off % TAR_BLOCK);

	if (rest == 0)
		return (0);
	return (tar_write(t, zero, TAR_BLOCK - rest, cause));
}

static void
tar_octal(char *field, size_t len, uint64_t v)
{
	snprintf(field, len, "%0*llo", (int)len - 1, (unsigned long long)v);
}

static int
tar_header(struct tar *t, const char *name, int mode, uint64_t size,
    char **cause)
{
	struct tar_hdr	 h;
	unsigned char	*b = (unsigned char *)&h;
	unsigned	 sum = 0;
	size_t		 i;
	int		 k;

	if (strlen(name) >= sizeof(h.name)) {
		xasprintf(cause, "%s: name too long for tar", name);
		return (-1);
	}
	memset(&h, 0, sizeof(h));
	memcpy(h.name, name, strlen(name));
	tar_octal(h.mode, sizeof(h.mode), (uint64_t)mode & 07777);
	tar_octal(h.uid, sizeof(h.uid), 0);
	tar_octal(h.gid, sizeof(h.gid), 0);
	if (size < 077777777777ULL)
		tar_octal(h.size, sizeof(h.size), size);
	else {
		/* Base-256: the high bit set, then big-endian. */
		h.size[0] = (char)0x80;
		for (k = 11; k >= 4; k--, size >>= 8)
			h.size[k] = (char)(size & 0xff);
	}
	tar_octal(h.mtime, sizeof(h.mtime), (uint64_t)util_now());
	h.typeflag = '0';
	memcpy(h.magic, "ustar", 6);
	memcpy(h.version, "00", 2);
	memcpy(h.uname, "opsn", 4);
	memcpy(h.gname, "opsn", 4);
	memset(h.chksum, ' ', sizeof(h.chksum));
	for (i = 0; i < sizeof(h); i++)
		sum += b[i];
	snprintf(h.chksum, sizeof(h.chksum), "%06o", sum);
	h.chksum[7] = ' ';
	return (tar_write(t, &h, sizeof(h), cause));
}

/* Create path (it must not exist) for writing. */
int
tar_create(struct tar *t, const char *path, char **cause)
{
	memset(t, 0, sizeof(*t));
	t->t_fd = -1;
	if ((t->t_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) == -1) {
		t->t_errno = errno;
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	t->t_path = xstrdup(path);
	t->t_md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(t->t_md, util_sha256(), NULL);
	return (0);
}

/* Add a member from memory; its SHA-256 into sha. */
int
tar_put_mem(struct tar *t, const char *name, int mode, const void *data,
    size_t len, char sha[65], char **cause)
{
	EVP_MD_CTX	*md;

	if (tar_header(t, name, mode, len, cause) == -1 ||
	    tar_write(t, data, len, cause) == -1 || tar_pad(t, cause) == -1)
		return (-1);
	md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, util_sha256(), NULL);
	EVP_DigestUpdate(md, data, len);
	tar_hex(md, sha);
	EVP_MD_CTX_free(md);
	return (0);
}

/* Add a member copied from a file; its size and SHA-256 out. */
int
tar_put_file(struct tar *t, const char *name, int mode, const char *path,
    uint64_t *size, char sha[65], char **cause)
{
	struct stat	 sb;
	EVP_MD_CTX	*md = NULL;
	char		*buf = NULL;
	uint64_t	 left;
	ssize_t		 n;
	int		 fd, rv = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &sb) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		goto out;
	}
	*size = (uint64_t)sb.st_size;
	if (tar_header(t, name, mode, *size, cause) == -1)
		goto out;
	md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, util_sha256(), NULL);
	buf = xmalloc(TAR_CHUNK);
	for (left = *size; left > 0; left -= (uint64_t)n) {
		n = read(fd, buf, left < TAR_CHUNK ? (size_t)left : TAR_CHUNK);
		if (n <= 0) {
			xasprintf(cause, "%s: %s", path, n == 0 ?
			    "shorter than it was" : strerror(errno));
			goto out;
		}
		EVP_DigestUpdate(md, buf, (size_t)n);
		if (tar_write(t, buf, (size_t)n, cause) == -1)
			goto out;
	}
	if (tar_pad(t, cause) == -1)
		goto out;
	tar_hex(md, sha);
	rv = 0;
out:
	EVP_MD_CTX_free(md);
	free(buf);
	if (fd != -1)
		close(fd);
	return (rv);
}

/* End the archive, sync it to disk; the whole file's SHA-256 and size. */
int
tar_finish(struct tar *t, char sha[65], uint64_t *size, char **cause)
{
	static const char	 zero[2 * TAR_BLOCK];

	if (tar_write(t, zero, sizeof(zero), cause) == -1)
		return (-1);
	if (fsync(t->t_fd) == -1) {
		t->t_errno = errno;
		xasprintf(cause, "syncing %s: %s", t->t_path, strerror(errno));
		return (-1);
	}
	tar_hex(t->t_md, sha);
	*size = t->t_off;
	return (0);
}

/* Open an archive for reading; every byte read is hashed (tar_end). */
int
tar_open(struct tar *t, const char *path, char **cause)
{
	memset(t, 0, sizeof(*t));
	if ((t->t_fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	t->t_path = xstrdup(path);
	t->t_md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(t->t_md, util_sha256(), NULL);
	return (0);
}

static int
tar_read_full(struct tar *t, void *buf, size_t len, char **cause)
{
	char	*p = buf;
	ssize_t	 n;

	while (len > 0) {
		if ((n = read(t->t_fd, p, len)) <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			xasprintf(cause, "%s: %s at byte %llu", t->t_path,
			    n == 0 ? "truncated" : strerror(errno),
			    (unsigned long long)t->t_off);
			return (-1);
		}
		EVP_DigestUpdate(t->t_md, p, (size_t)n);
		p += n;
		len -= (size_t)n;
		t->t_off += (uint64_t)n;
	}
	return (0);
}

/* Read (and hash) what is left of the current member. */
static int
tar_skip(struct tar *t, char **cause)
{
	char	 buf[TAR_BLOCK * 8];
	size_t	 n;

	while (t->t_skip > 0) {
		n = t->t_skip < sizeof(buf) ? (size_t)t->t_skip : sizeof(buf);
		if (tar_read_full(t, buf, n, cause) == -1)
			return (-1);
		t->t_skip -= n;
	}
	return (0);
}

/* After the last member: the SHA-256 of the whole file (read to its end). */
int
tar_end(struct tar *t, char sha[65], char **cause)
{
	char	 buf[TAR_BLOCK * 8];
	ssize_t	 n;

	if (tar_skip(t, cause) == -1)
		return (-1);
	while ((n = read(t->t_fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(t->t_md, buf, (size_t)n);
	if (n == -1) {
		xasprintf(cause, "%s: %s", t->t_path, strerror(errno));
		return (-1);
	}
	tar_hex(t->t_md, sha);
	return (0);
}

/*
 * An octal number field: leading blanks, digits, then a NUL, a blank or the
 * field's end (strtoul would read on past the field).
 */
static int
tar_octal_read(const char *f, size_t len, uint64_t *out)
{
	uint64_t	 v = 0;
	size_t		 i = 0;

	while (i < len && f[i] == ' ')
		i++;
	for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v > UINT64_MAX >> 3)
			return (-1);
		v = v << 3 | (uint64_t)(f[i] - '0');
	}
	if (i < len && f[i] != '\0' && f[i] != ' ')
		return (-1);
	*out = v;
	return (0);
}

/*
 * The next member's header: 1 with its name (NUL-terminated), size and
 * mode; 0 at the end of the archive; -1 on a damaged or unsupported one.
 */
int
tar_next(struct tar *t, char name[TAR_NAME_MAX], uint64_t *size, int *mode,
    char **cause)
{
	struct tar_hdr	 h;
	unsigned char	*b = (unsigned char *)&h;
	uint64_t	 sum = 0, want, m = 0;
	size_t		 i;

	if (tar_skip(t, cause) == -1 ||
	    tar_read_full(t, &h, sizeof(h), cause) == -1)
		return (-1);
	for (i = 0; i < sizeof(h) && b[i] == 0; i++)
		;
	if (i == sizeof(h))
		return (0);
	if (tar_octal_read(h.chksum, sizeof(h.chksum), &want) == -1)
		want = UINT64_MAX;
	memset(h.chksum, ' ', sizeof(h.chksum));
	for (i = 0; i < sizeof(h); i++)
		sum += b[i];
	if (sum != want || memcmp(h.magic, "ustar", 5) != 0 ||
	    tar_octal_read(h.mode, sizeof(h.mode), &m) == -1 ||
	    (!((unsigned char)h.size[0] & 0x80) &&
	    tar_octal_read(h.size, sizeof(h.size), size) == -1)) {
		xasprintf(cause, "%s: not a tar file, or damaged at byte %llu",
		    t->t_path, (unsigned long long)(t->t_off - sizeof(h)));
		return (-1);
	}
	if (h.typeflag != '0' && h.typeflag != '\0') {
		xasprintf(cause, "%s: member '%.100s' is not a regular file",
		    t->t_path, h.name);
		return (-1);
	}
	memcpy(name, h.name, sizeof(h.name));
	name[sizeof(h.name)] = '\0';
	if ((unsigned char)h.size[0] & 0x80) {
		for (*size = 0, i = 4; i < 12; i++)
			*size = (*size << 8) | (unsigned char)h.size[i];
	}
	/* Past that, the block count below would wrap around. */
	if (*size > UINT64_MAX / 2) {
		xasprintf(cause, "%s: member '%s' claims %llu bytes",
		    t->t_path, name, (unsigned long long)*size);
		return (-1);
	}
	*mode = (int)(m & 07777);
	t->t_left = *size;
	t->t_skip = (*size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
	return (1);
}

/* Write the current member to dest (created, mode), synced; its SHA-256. */
int
tar_extract(struct tar *t, const char *dest, int mode, char sha[65],
    char **cause)
{
	EVP_MD_CTX	*md = EVP_MD_CTX_new();
	char		*buf = xmalloc(TAR_CHUNK);
	uint64_t	 left = t->t_left;
	size_t		 n;
	ssize_t		 w;
	int		 fd, rv = -1;

	EVP_DigestInit_ex(md, util_sha256(), NULL);
	if ((fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    mode)) == -1) {
		xasprintf(cause, "%s: %s", dest, strerror(errno));
		goto out;
	}
	while (left > 0) {
		n = left < TAR_CHUNK ? (size_t)left : TAR_CHUNK;
		if (tar_read_full(t, buf, n, cause) == -1)
			goto out;
		EVP_DigestUpdate(md, buf, n);
		if ((w = write(fd, buf, n)) != (ssize_t)n) {
			xasprintf(cause, "%s: %s", dest, w == -1 ?
			    strerror(errno) : "short write");
			goto out;
		}
		left -= n;
		t->t_skip -= n;
	}
	if (fsync(fd) == -1) {
		xasprintf(cause, "syncing %s: %s", dest, strerror(errno));
		goto out;
	}
	tar_hex(md, sha);
	t->t_left = 0;
	rv = 0;
out:
	if (fd != -1)
		close(fd);
	EVP_MD_CTX_free(md);
	free(buf);
	return (rv);
}

/* The current member into memory (at most max bytes; NUL-terminated). */
int
tar_read_mem(struct tar *t, size_t max, char **out, size_t *len,
    char **cause)
{
	if (t->t_left > max) {
		xasprintf(cause, "%s: a member of %llu bytes where at most %zu "
		    "are expected", t->t_path, (unsigned long long)t->t_left,
		    max);
		return (-1);
	}
	*len = (size_t)t->t_left;
	*out = xmalloc(*len + 1);
	if (tar_read_full(t, *out, *len, cause) == -1) {
		free(*out);
		*out = NULL;
		return (-1);
	}
	(*out)[*len] = '\0';
	t->t_skip -= *len;
	t->t_left = 0;
	return (0);
}

/* Close (either way); NULL members are fine. */
void
tar_close(struct tar *t)
{
	if (t->t_fd != -1)
		close(t->t_fd);
	t->t_fd = -1;
	EVP_MD_CTX_free(t->t_md);
	t->t_md = NULL;
	free(t->t_path);
	t->t_path = NULL;
}
