/*
 * LD_PRELOAD shim for tests/bench/vms.py: times the hypervisor agent's full
 * resync from outside, without touching node-agent/hv.c.
 *
 * A resync is hv_scan(): on the uv thread pool, virConnectListAllDomains,
 * every domain's metadata and state, then the pool's volumes
 * (virStoragePoolListAllVolumes); back on the loop, the VMs are compared
 * and one full MSG_OBSERVED_STATE frame goes to the controller. This shim
 * writes one line per event to $OPSN_BENCH_SHIM_LOG:
 *
 *   scan_start MONO_NS CPU_NS     entering virConnectListAllDomains
 *   scan_done MONO_NS CPU_NS      leaving virStoragePoolListAllVolumes
 *   observed MONO_NS CPU_NS BYTES SSL_write of an OBSERVED_STATE frame
 *
 * MONO_NS is CLOCK_MONOTONIC, CPU_NS the process's CPU time (all threads).
 * Each SSL_write of the agent starts with a frame header (proto/conn.c
 * writes one queued frame per call): u32 length, u16 version, u16 type.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MSG_OBSERVED_STATE	129

typedef struct _virConnect *virConnectPtr;
typedef struct _virDomain *virDomainPtr;
typedef struct _virStoragePool *virStoragePoolPtr;
typedef struct _virStorageVol *virStorageVolPtr;
typedef struct ssl_st SSL;

int	virConnectListAllDomains(virConnectPtr, virDomainPtr **, unsigned int);
int	virStoragePoolListAllVolumes(virStoragePoolPtr, virStorageVolPtr **,
	    unsigned int);
int	SSL_write(SSL *, const void *, int);

static void
shim_log(const char *what, long extra)
{
	static int	 fd = -2;
	struct timespec	 m, c;
	const char	*path;
	char		 line[160];
	int		 n;

	if (fd == -2) {
		path = getenv("OPSN_BENCH_SHIM_LOG");
		fd = path ? open(path, O_WRONLY | O_CREAT | O_APPEND |
		    O_CLOEXEC, 0644) : -1;
	}
	if (fd == -1)
		return;
	clock_gettime(CLOCK_MONOTONIC, &m);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
	n = snprintf(line, sizeof(line), "%s %lld %lld %ld\n", what,
	    (long long)m.tv_sec * 1000000000LL + m.tv_nsec,
	    (long long)c.tv_sec * 1000000000LL + c.tv_nsec, extra);
	if (n > 0 && write(fd, line, (size_t)n) == -1)
		return;
}

int
virConnectListAllDomains(virConnectPtr c, virDomainPtr **d, unsigned int fl)
{
	static int	(*real)(virConnectPtr, virDomainPtr **, unsigned int);

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "virConnectListAllDomains");
	shim_log("scan_start", 0);
	return (real(c, d, fl));
}

int
virStoragePoolListAllVolumes(virStoragePoolPtr p, virStorageVolPtr **v,
    unsigned int fl)
{
	static int	(*real)(virStoragePoolPtr, virStorageVolPtr **,
			    unsigned int);
	int		 n;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT,
		    "virStoragePoolListAllVolumes");
	n = real(p, v, fl);
	shim_log("scan_done", n);
	return (n);
}

int
SSL_write(SSL *s, const void *buf, int num)
{
	static int	(*real)(SSL *, const void *, int);
	const uint8_t	*b = buf;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "SSL_write");
	if (num >= 16 && ((b[6] << 8) | b[7]) == MSG_OBSERVED_STATE)
		shim_log("observed", num);
	return (real(s, buf, num));
}
