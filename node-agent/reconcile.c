/*
 * The reconcile decisions of the hypervisor agent. One round gives the
 * operations to run now, in order; the agent runs them, reads the domain
 * again and asks again until the answer is { REC_NONE }. Waiting (for a
 * graceful shutdown, for a restart hold) is the answer { REC_NONE } too.
 */
#include <stdio.h>
#include <string.h>

#include "opsn/util.h"
#include "reconcile.h"

static const char *const rec_names[] = {
	[REC_NONE] = "none",
	[REC_CREATE_DISK] = "create_disk",
	[REC_DEFINE] = "define",
	[REC_START] = "start",
	[REC_RESUME] = "resume",
	[REC_SHUTDOWN] = "shutdown",
	[REC_DESTROY] = "destroy",
	[REC_UNDEFINE] = "undefine",
	[REC_DELETE_DISK] = "delete_disk",
	[REC_SET_VCPUS_MEMORY] = "set_vcpus_memory",
	[REC_REBOOT] = "reboot",
};

static void
rec_add(struct rec_action *a, enum rec_op op)
{
	if (a->ra_n < REC_MAX_OPS)
		a->ra_ops[a->ra_n++] = op;
}

/* The VM must go: stop it at once, forget it, free its disk. */
static void
rec_remove(const struct rec_observed *o, struct rec_action *a)
{
	switch (o->ro_state) {
	case REC_ABSENT:
		if (o->ro_disk)
			rec_add(a, REC_DELETE_DISK);
		return;
	case REC_RUNNING:
	case REC_PAUSED:
	case REC_CRASHED:
		rec_add(a, REC_DESTROY);
		/* FALLTHROUGH */
	case REC_SHUTOFF:
		rec_add(a, REC_UNDEFINE);
		/* Not conditional: a disk we did not see must not leak. */
		rec_add(a, REC_DELETE_DISK);
		return;
	}
}

static int
rec_sized(const struct rec_desired *d, const struct rec_observed *o)
{
	return (d->rd_vcpus == o->ro_vcpus &&
	    d->rd_memory_mib == o->ro_memory_mib);
}

/* Decide the operations that bring observed towards desired. */
void
reconcile_decide(const struct rec_desired *d, const struct rec_observed *o,
    struct rec_action *a)
{
	int	 run = d->rd_power == REC_POWER_RUNNING;

	memset(a, 0, sizeof(*a));
	if (!d->rd_present)
		rec_remove(o, a);
	else if (d->rd_power == REC_POWER_PARKED) {
		/*
		 * Its disk goes to another node: no domain may start it
		 * here, and the disk must stay (even one not seen yet).
		 */
		if (o->ro_state != REC_ABSENT && o->ro_state != REC_SHUTOFF)
			rec_add(a, REC_DESTROY);
		if (o->ro_state != REC_ABSENT)
			rec_add(a, REC_UNDEFINE);
	} else switch (o->ro_state) {
	case REC_ABSENT:
		/*
		 * A disk without a domain is one a crash left between the two
		 * steps: keep it, the guest may have written to it.
		 */
		if (!o->ro_disk)
			rec_add(a, REC_CREATE_DISK);
		rec_add(a, REC_DEFINE);
		if (run)
			rec_add(a, REC_START);
		break;
	case REC_SHUTOFF:
		if (!rec_sized(d, o))
			rec_add(a, REC_SET_VCPUS_MEMORY);
		if (run && !o->ro_start_held)
			rec_add(a, REC_START);
		break;
	case REC_RUNNING:
		if (!run) {
			if (!o->ro_shutdown_sent)
				rec_add(a, REC_SHUTDOWN);
			else if (o->ro_shutdown_expired)
				rec_add(a, REC_DESTROY);
		} else if (d->rd_reboot_seq > o->ro_reboot_seq)
			rec_add(a, REC_REBOOT);
		/* New vCPUs or memory wait until the VM is stopped. */
		break;
	case REC_PAUSED:
		/* A paused guest cannot answer the ACPI power button. */
		rec_add(a, run ? REC_RESUME : REC_DESTROY);
		break;
	case REC_CRASHED:
		rec_add(a, REC_DESTROY);
		if (run && !o->ro_start_held)
			rec_add(a, REC_START);
		break;
	}
	if (a->ra_n == 0)
		rec_add(a, REC_NONE);
}

/* Does the action list contain op? */
int
reconcile_has(const struct rec_action *a, enum rec_op op)
{
	size_t	 i;

	for (i = 0; i < a->ra_n; i++)
		if (a->ra_ops[i] == op)
			return (1);
	return (0);
}

/* The name of an operation ("create_disk", ...). */
const char *
reconcile_op_name(enum rec_op op)
{
	if ((size_t)op >= nitems(rec_names) || rec_names[op] == NULL)
		return ("?");
	return (rec_names[op]);
}

/* An action list as text ("create_disk,define,start") into buf. */
void
reconcile_format(const struct rec_action *a, char *buf, size_t len)
{
	size_t	 i, off = 0;
	int	 n;

	if (len == 0)
		return;
	*buf = '\0';
	for (i = 0; i < a->ra_n && off < len; i++) {
		n = snprintf(buf + off, len - off, "%s%s", i > 0 ? "," : "",
		    reconcile_op_name(a->ra_ops[i]));
		if (n < 0)
			return;
		off += (size_t)n;
	}
}
