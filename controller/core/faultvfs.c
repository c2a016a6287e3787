/*
 * Failing storage, on demand, for the test build only (OPSN_TEST_BUILD):
 * a SQLite VFS that wraps the default one and makes writes or fsyncs fail
 * while the file named by OPSN_TEST_FAULT_FILE says so:
 *
 *	write	every xWrite fails (SQLITE_IOERR_WRITE)
 *	fsync	every xSync fails (SQLITE_IOERR_FSYNC)
 *	full	every xWrite fails as on a full disk (SQLITE_FULL)
 *	(empty)	nothing fails
 *
 * It becomes the default VFS, so the loop's write connection and the
 * pool's readers go through it. tests/e2e/test_faults.py uses it to check
 * that nothing is acknowledged that was not committed and that the
 * controller recovers without a restart. A release build has none of it.
 */
#ifdef OPSN_TEST_BUILD

#include <sys/stat.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core.h"

enum fault_mode {
	FAULT_NONE,
	FAULT_WRITE,
	FAULT_FSYNC,
	FAULT_FULL,
};

struct fault_file {
	sqlite3_file	 base;
	sqlite3_file	*real;		/* follows this struct */
};

static sqlite3_vfs		 fault_vfs;
static sqlite3_vfs		*fault_real;
static sqlite3_io_methods	 fault_io;
static const char		*fault_path;
static struct timespec		 fault_mtime;
static enum fault_mode		 fault_mode;

static enum fault_mode	 faultvfs_read_mode(void);

/* The mode the control file says, read again when it changed. */
static enum fault_mode
faultvfs_now(void)
{
	static pthread_mutex_t	 lock = PTHREAD_MUTEX_INITIALIZER;
	enum fault_mode		 m;

	pthread_mutex_lock(&lock);
	m = faultvfs_read_mode();
	pthread_mutex_unlock(&lock);
	return (m);
}

static enum fault_mode
faultvfs_read_mode(void)
{
	struct stat	 sb;
	char		 buf[16] = "";
	FILE		*f;

	if (stat(fault_path, &sb) == -1)
		return (fault_mode = FAULT_NONE);
	if (sb.st_mtim.tv_sec == fault_mtime.tv_sec &&
	    sb.st_mtim.tv_nsec == fault_mtime.tv_nsec)
		return (fault_mode);
	fault_mtime = sb.st_mtim;
	if ((f = fopen(fault_path, "r")) != NULL) {
		if (fgets(buf, sizeof(buf), f) == NULL)
			buf[0] = '\0';
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = '\0';
	if (strcmp(buf, "write") == 0)
		fault_mode = FAULT_WRITE;
	else if (strcmp(buf, "fsync") == 0)
		fault_mode = FAULT_FSYNC;
	else if (strcmp(buf, "full") == 0)
		fault_mode = FAULT_FULL;
	else
		fault_mode = FAULT_NONE;
	log_notice("faultvfs: storage faults: %s", *buf ? buf : "none");
	return (fault_mode);
}

#define REAL(f)	(((struct fault_file *)(f))->real)

static int
faultvfs_close(sqlite3_file *f)
{
	return (REAL(f)->pMethods->xClose(REAL(f)));
}

static int
faultvfs_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	return (REAL(f)->pMethods->xRead(REAL(f), buf, n, off));
}

static int
faultvfs_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	switch (faultvfs_now()) {
	case FAULT_WRITE:
		return (SQLITE_IOERR_WRITE);
	case FAULT_FULL:
		return (SQLITE_FULL);
	default:
		return (REAL(f)->pMethods->xWrite(REAL(f), buf, n, off));
	}
}

static int
faultvfs_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return (REAL(f)->pMethods->xTruncate(REAL(f), size));
}

static int
faultvfs_sync(sqlite3_file *f, int flags)
{
	if (faultvfs_now() == FAULT_FSYNC)
		return (SQLITE_IOERR_FSYNC);
	return (REAL(f)->pMethods->xSync(REAL(f), flags));
}

static int
faultvfs_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return (REAL(f)->pMethods->xFileSize(REAL(f), size));
}

static int
faultvfs_lock(sqlite3_file *f, int lock)
{
	return (REAL(f)->pMethods->xLock(REAL(f), lock));
}

static int
faultvfs_unlock(sqlite3_file *f, int lock)
{
	return (REAL(f)->pMethods->xUnlock(REAL(f), lock));
}

static int
faultvfs_check_reserved(sqlite3_file *f, int *out)
{
	return (REAL(f)->pMethods->xCheckReservedLock(REAL(f), out));
}

static int
faultvfs_file_control(sqlite3_file *f, int op, void *arg)
{
	return (REAL(f)->pMethods->xFileControl(REAL(f), op, arg));
}

static int
faultvfs_sector_size(sqlite3_file *f)
{
	return (REAL(f)->pMethods->xSectorSize(REAL(f)));
}

static int
faultvfs_device(sqlite3_file *f)
{
	return (REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)));
}

static int
faultvfs_shm_map(sqlite3_file *f, int page, int size, int extend,
    void volatile **p)
{
	return (REAL(f)->pMethods->xShmMap(REAL(f), page, size, extend, p));
}

static int
faultvfs_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	return (REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags));
}

static void
faultvfs_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int
faultvfs_shm_unmap(sqlite3_file *f, int del)
{
	return (REAL(f)->pMethods->xShmUnmap(REAL(f), del));
}

static int
faultvfs_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **p)
{
	return (REAL(f)->pMethods->xFetch(REAL(f), off, n, p));
}

static int
faultvfs_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return (REAL(f)->pMethods->xUnfetch(REAL(f), off, p));
}

static int
faultvfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
    int *out)
{
	struct fault_file	*ff = (struct fault_file *)f;
	int			 rc;

	ff->real = (sqlite3_file *)(ff + 1);
	memset(ff->real, 0, (size_t)fault_real->szOsFile);
	rc = fault_real->xOpen(fault_real, name, ff->real, flags, out);
	/* Closed through us only if the real file opened. */
	ff->base.pMethods = ff->real->pMethods != NULL ? &fault_io : NULL;
	return (rc);
}

/* Install the VFS as the default when OPSN_TEST_FAULT_FILE is set. */
void
faultvfs_install(void)
{
	static const sqlite3_io_methods io = {
		3, faultvfs_close, faultvfs_read, faultvfs_write,
		faultvfs_truncate, faultvfs_sync, faultvfs_file_size,
		faultvfs_lock, faultvfs_unlock, faultvfs_check_reserved,
		faultvfs_file_control, faultvfs_sector_size, faultvfs_device,
		faultvfs_shm_map, faultvfs_shm_lock, faultvfs_shm_barrier,
		faultvfs_shm_unmap, faultvfs_fetch, faultvfs_unfetch,
	};

	if (fault_real != NULL || (fault_path = getenv(
	    "OPSN_TEST_FAULT_FILE")) == NULL)
		return;
	if ((fault_real = sqlite3_vfs_find(NULL)) == NULL)
		fatalx("faultvfs: no default VFS");
	fault_io = io;
	fault_vfs = *fault_real;
	fault_vfs.zName = "opsn-fault";
	fault_vfs.szOsFile = (int)sizeof(struct fault_file) +
	    fault_real->szOsFile;
	fault_vfs.xOpen = faultvfs_open;
	fault_vfs.pNext = NULL;
	if (sqlite3_vfs_register(&fault_vfs, 1) != SQLITE_OK)
		fatalx("faultvfs: cannot register the VFS");
	log_notice("faultvfs: storage faults on demand from %s", fault_path);
}

#endif /* OPSN_TEST_BUILD */
