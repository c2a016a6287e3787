/*
 * Inventory for HELLO: cpus, memory, disk of the data folder, and for a
 * hypervisor the libvirt and QEMU versions. libvirt calls block, so they
 * run on the uv thread pool.
 */
#include <sys/socket.h>
#include <sys/statvfs.h>

#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "agent.h"

struct inventory_work {
	uv_work_t	 w;
	struct agent	*a;
	void		(*done)(struct agent *);
	unsigned long	 libvirt;
	unsigned long	 qemu;
	char		*cause;
};

static void
inventory_quiet(void *arg, virErrorPtr err)
{
	/* Errors are read with virGetLastErrorMessage where they matter. */
}

static void
inventory_work_cb(uv_work_t *w)
{
	struct inventory_work	*iw = w->data;
	virConnectPtr		 vc;

	if ((vc = virConnectOpenReadOnly(iw->a->conf.libvirt_uri)) == NULL) {
		xasprintf(&iw->cause, "%s: %s", iw->a->conf.libvirt_uri,
		    virGetLastErrorMessage());
		return;
	}
	if (virConnectGetLibVersion(vc, &iw->libvirt) == -1)
		iw->libvirt = 0;
	if (virConnectGetVersion(vc, &iw->qemu) == -1)
		iw->qemu = 0;
	virConnectClose(vc);
}

static void
inventory_after_cb(uv_work_t *w, int status)
{
	struct inventory_work	*iw = w->data;

	if (iw->cause != NULL) {
		log_warnx("inventory: libvirt: %s", iw->cause);
		free(iw->cause);
	}
	iw->a->inv.libvirt_version = iw->libvirt;
	iw->a->inv.qemu_version = iw->qemu;
	iw->done(iw->a);
	free(iw);
}

/*
 * The host's fully qualified name (a mail backend's certificate and MX
 * records name it): the canonical name of gethostname()'s, when the
 * latter has no dot. Once at start, before the link: /etc/hosts or the
 * resolver answers quickly, and nothing else waits on the loop yet.
 */
static void
inventory_hostname(struct agent *a)
{
	struct addrinfo	 hints, *res = NULL;

	if (gethostname(a->hostname, sizeof(a->hostname)) != 0) {
		a->hostname[0] = '\0';
		return;
	}
	if (strchr(a->hostname, '.') != NULL)
		return;
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_CANONNAME;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(a->hostname, NULL, &hints, &res) == 0 && res != NULL &&
	    res->ai_canonname != NULL && strchr(res->ai_canonname, '.') !=
	    NULL)
		strlcpy(a->hostname, res->ai_canonname, sizeof(a->hostname));
	if (res != NULL)
		freeaddrinfo(res);
}

/* Fill a->inv, then call done on the loop thread. */
void
inventory_collect(struct agent *a, void (*done)(struct agent *))
{
	struct inventory_work	*iw;
	struct statvfs		 sv;

	opsn__inventory__init(&a->inv);
	a->inv.cpus = uv_available_parallelism();
	a->inv.memory_bytes = uv_get_total_memory();
	if (statvfs(a->conf.data_dir, &sv) == 0)
		a->inv.disk_bytes = (uint64_t)sv.f_blocks * sv.f_frsize;
	inventory_hostname(a);
	a->inv.hostname = a->hostname;
	if (strcmp(a->conf.role, "hypervisor") != 0) {
		done(a);
		return;
	}
	virSetErrorFunc(NULL, inventory_quiet);
	iw = xcalloc(1, sizeof(*iw));
	iw->w.data = iw;
	iw->a = a;
	iw->done = done;
	uv_queue_work(a->loop, &iw->w, inventory_work_cb, inventory_after_cb);
}
