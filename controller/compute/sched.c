/*
 * Placement. For now first fit: the first ready hypervisor (by id) whose
 * free vCPUs (with the allocation ratio), memory and disk hold the VM.
 * Called inside the transaction that inserts the VM, so two creations
 * cannot claim the same room.
 */
#include <stdlib.h>
#include <string.h>

#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "vms.h"

#define SCHED_CPU_RATIO	4	/* vCPUs per host CPU */

/* A node for a VM of this size, or -1 with the reason. */
int64_t
sched_place(int64_t vcpus, int64_t mem_mib, int64_t disk, char **cause)
{
	sqlite3_stmt	*st;
	int64_t		 id = -1;
	int		 ready = 0;

	st = store_prepare(ctl->db, "SELECT n.id, n.name, n.cpus * ?1 - "
	    "coalesce(sum(v.vcpus), 0), n.memory_bytes / 1048576 - "
	    "coalesce(sum(v.memory_mib), 0), n.disk_bytes - "
	    "coalesce(sum(v.disk_bytes), 0) FROM nodes n LEFT JOIN vms v ON "
	    "v.node_id = n.id AND v.desired != 'deleted' WHERE n.revoked = 0 "
	    "AND ',' || n.roles || ',' LIKE '%,hypervisor,%' GROUP BY n.id "
	    "ORDER BY n.id");
	sqlite3_bind_int64(st, 1, SCHED_CPU_RATIO);
	while (store_step(st) == SQLITE_ROW) {
		if (!nodes_is_ready(sqlite3_column_int64(st, 0)))
			continue;
		ready++;
		if (sqlite3_column_int64(st, 2) >= vcpus &&
		    sqlite3_column_int64(st, 3) >= mem_mib &&
		    sqlite3_column_int64(st, 4) >= disk) {
			id = sqlite3_column_int64(st, 0);
			break;
		}
	}
	sqlite3_finalize(st);
	if (id == -1)
		xasprintf(cause, ready == 0 ? "no hypervisor is ready" :
		    "no ready hypervisor has %lld vCPUs, %lld MiB of memory "
		    "and %lld bytes of disk free", (long long)vcpus,
		    (long long)mem_mib, (long long)disk);
	return (id);
}
