/*
 * The hypervisor's metering source: one virConnectGetAllDomainStats per
 * interval on a read-only connection of our own, on the thread pool (the
 * hypervisor role's connection and its event thread are left alone).
 * Only domains whose opsn metadata names this node are sampled.
 *
 * Counters are sent raw with the identity of the QEMU process that holds
 * them ("pid:start time"), so the controller can tell a restarted or
 * moved VM from one that kept running. cpu.time is read only while the
 * domain runs (libvirt reports nonsense for a shut-off domain).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "domxml.h"
#include "meter.h"

#define METER_PID_DIR	"/var/run/libvirt/qemu"

/* Thread pool only, one collection at a time (meter.c sees to it). */
static virConnectPtr	 mhv_conn;

static void
mhv_quiet(void *arg, virErrorPtr err)
{
}

/* The QEMU pid of a running domain, from libvirt's pid file; 0 if none. */
static long long
mhv_pid(const char *name)
{
	char		 path[PATH_MAX], buf[32];
	ssize_t		 n;
	int		 fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s.pid", METER_PID_DIR,
	    name) >= sizeof(path))
		return (0);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return (0);
	buf[n] = '\0';
	return (strtoll(buf, NULL, 10));
}

/* Start time of a process in clock ticks after boot (field 22), or 0. */
static unsigned long long
mhv_starttime(long long pid)
{
	char			 path[64], buf[1024], *p;
	unsigned long long	 v = 0;
	ssize_t			 n;
	int			 fd, i;

	snprintf(path, sizeof(path), "/proc/%lld/stat", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return (0);
	buf[n] = '\0';
	/* The command may hold spaces and parentheses: start after the last. */
	if ((p = strrchr(buf, ')')) == NULL)
		return (0);
	for (i = 2; i < 22 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	if (p != NULL)
		v = strtoull(p + 1, NULL, 10);
	return (v);
}

/* The system's boot time (unix seconds), from /proc/stat. */
static long long
mhv_btime(void)
{
	static long long	 btime;
	FILE			*f;
	char			 line[256];

	if (btime != 0)
		return (btime);
	if ((f = fopen("/proc/stat", "re")) == NULL)
		return (0);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "btime %lld", &btime) == 1)
			break;
	fclose(f);
	return (btime);
}

static unsigned long long
mhv_ull(virDomainStatsRecordPtr r, const char *name)
{
	unsigned long long	 v = 0;

	if (virTypedParamsGetULLong(r->params, r->nparams, name, &v) != 1)
		v = 0;
	return (v);
}

static unsigned int
mhv_uint(virDomainStatsRecordPtr r, const char *name)
{
	unsigned int	 v = 0;

	if (virTypedParamsGetUInt(r->params, r->nparams, name, &v) != 1)
		v = 0;
	return (v);
}

/* 1 when the domain is ours (*tenant set, caller frees), 0 otherwise. */
static int
mhv_ours(virDomainPtr dom, const char *node, char **tenant)
{
	struct domxml_meta	 m;
	char			*xml, *why = NULL, uuid[VIR_UUID_STRING_BUFLEN];
	int			 ours;

	xml = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, DOMXML_NS,
	    0);
	if (xml == NULL)
		return (0);
	memset(&m, 0, sizeof(m));
	if (domxml_meta_parse(xml, &m, &why) == -1) {
		free(why);
		free(xml);
		return (0);
	}
	free(xml);
	ours = strcmp(m.dm_node, node) == 0 && virDomainGetUUIDString(dom,
	    uuid) == 0 && strcmp(m.dm_id, uuid) == 0;
	if (ours)
		*tenant = xstrdup(m.dm_tenant);
	domxml_meta_free(&m);
	return (ours);
}

static void
mhv_record(virDomainStatsRecordPtr r, const char *node, int64_t now_ms,
    uint32_t interval_ms, struct meter_list *l)
{
	virDomainPtr		 dom = r->dom;
	virDomainInfo		 info;
	virDomainBlockInfo	 bi;
	Opsn__Sample		*s;
	char			 uuid[VIR_UUID_STRING_BUFLEN], key[64];
	char			*tenant = NULL;
	const char		*name;
	unsigned int		 i, n;
	int			 state = 0;
	long long		 pid;
	unsigned long long	 start;
	long			 hz;

	if (!mhv_ours(dom, node, &tenant) ||
	    virDomainGetUUIDString(dom, uuid) == -1) {
		free(tenant);
		return;
	}
	s = meter_list_add(l, "vm", uuid, now_ms);
	free(s->tenant);
	s->tenant = tenant;
	s->interval_ms = interval_ms;
	if (virTypedParamsGetInt(r->params, r->nparams, "state.state",
	    &state) != 1)
		state = 0;
	s->state = (uint32_t)state;
	if (virDomainGetInfo(dom, &info) == 0) {
		s->vcpus = info.nrVirtCpu;
		s->memory_mib = info.maxMem / 1024;
		if (state == 0)
			s->state = info.state;
	}
	if ((n = mhv_uint(r, "vcpu.current")) > 0)
		s->vcpus = n;
	if (mhv_ull(r, "balloon.maximum") > 0)
		s->memory_mib = mhv_ull(r, "balloon.maximum") / 1024;
	s->memory_used_mib = mhv_ull(r, "balloon.current") / 1024;
	n = mhv_uint(r, "block.count");
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "block.%u.capacity", i);
		s->disk_bytes += mhv_ull(r, key);
		snprintf(key, sizeof(key), "block.%u.allocation", i);
		s->disk_used_bytes += mhv_ull(r, key);
	}
	/* A shut-off domain may come without block stats: ask the disk. */
	if (s->disk_bytes == 0 && virDomainGetBlockInfo(dom, "vda", &bi,
	    0) == 0) {
		s->disk_bytes = bi.capacity;
		s->disk_used_bytes = bi.allocation;
	}
	if (state != VIR_DOMAIN_RUNNING)
		return;
	/* Counters: only while it runs, with the process that holds them. */
	s->has_cpu = 1;
	s->cpu_ns = mhv_ull(r, "cpu.time");
	n = mhv_uint(r, "net.count");
	if (n > 0)
		s->has_net = 1;
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "net.%u.rx.bytes", i);
		s->net_rx_bytes += mhv_ull(r, key);
		snprintf(key, sizeof(key), "net.%u.tx.bytes", i);
		s->net_tx_bytes += mhv_ull(r, key);
	}
	free(s->boot);
	s->boot = NULL;
	if ((name = virDomainGetName(dom)) != NULL &&
	    (pid = mhv_pid(name)) > 0 && (start = mhv_starttime(pid)) > 0) {
		xasprintf(&s->boot, "pid:%lld:%llu", pid, start);
		hz = sysconf(_SC_CLK_TCK);
		if (hz > 0 && mhv_btime() > 0)
			s->boot_started_ms = mhv_btime() * 1000 +
			    (int64_t)(start * 1000 / (unsigned long long)hz);
	} else
		/* No pid file to read (not root?): the domain id changes
		 * with every start, which is nearly as good. */
		xasprintf(&s->boot, "id:%u", virDomainGetID(dom));
}

/* Sample every domain of ours (see meter.h). */
int
meter_hv_collect(const char *uri, const char *node, int64_t now_ms,
    uint32_t interval_ms, struct meter_list *l, char **cause)
{
	virDomainStatsRecordPtr	*recs = NULL;
	int			 n, i;

	if (mhv_conn == NULL) {
		virSetErrorFunc(NULL, mhv_quiet);
		if ((mhv_conn = virConnectOpenReadOnly(uri)) == NULL) {
			xasprintf(cause, "libvirt %s: %s", uri,
			    virGetLastErrorMessage());
			return (-1);
		}
	}
	n = virConnectGetAllDomainStats(mhv_conn, VIR_DOMAIN_STATS_STATE |
	    VIR_DOMAIN_STATS_CPU_TOTAL | VIR_DOMAIN_STATS_BALLOON |
	    VIR_DOMAIN_STATS_VCPU | VIR_DOMAIN_STATS_INTERFACE |
	    VIR_DOMAIN_STATS_BLOCK, &recs, 0);
	if (n < 0) {
		xasprintf(cause, "domain stats: %s", virGetLastErrorMessage());
		meter_hv_close();
		return (-1);
	}
	for (i = 0; i < n; i++)
		mhv_record(recs[i], node, now_ms, interval_ms, l);
	virDomainStatsRecordListFree(recs);
	return (0);
}

/* Close the connection (on the pool, or at exit). */
void
meter_hv_close(void)
{
	if (mhv_conn != NULL)
		virConnectClose(mhv_conn);
	mhv_conn = NULL;
}
