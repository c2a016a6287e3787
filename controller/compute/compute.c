/*
 * The compute module: images, plans, VMs and their placement. Its agent
 * messages are the hypervisor range: observed state, image downloads,
 * console bytes.
 */
#include <string.h>

#include "opsn/frame.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "compute.h"
#include "vms.h"

/* An image part (as declared), sent in parts and stored on disk. */
#define COMPUTE_MAX_UPLOAD	((size_t)1 << 42)
#define VM_OWNER	"sql:SELECT tenant_id FROM vms WHERE uuid = :vm OR " \
			"name = :vm"

static const struct api_route compute_routes[] = {
	{ "POST", "/v1/images", "images.write",
	  API_PLATFORM, NULL, images_create,
	  "Declare an image: the SHA-256 and size of its disk, kernel, initrd" },
	{ "GET", "/v1/images", "images.read",
	  API_MEMBER, NULL, images_list, "List images" },
	{ "GET", "/v1/images/{name}", "images.read",
	  API_MEMBER, NULL, images_get,
	  "Show one image" },
	{ "PUT", "/v1/images/{name}/{part}", "images.write",
	  API_PLATFORM, NULL, images_upload,
	  "Upload one part (disk, kernel, initrd), checked against its SHA-256;"
	  " over one request's limit, in parts (Content-Range)",
	  COMPUTE_MAX_UPLOAD, API_BODY_FILE },
	{ "GET", "/v1/images/{name}/{part}", "images.download",
	  API_PLATFORM, NULL, images_download,
	  "Download one part (agents, with their node certificate; Range)" },
	{ "POST", "/v1/vms", "vms.write",
	  API_MEMBER, "body:tenant", vms_create,
	  "Create a VM on a node" },
	{ "GET", "/v1/vms", "vms.read",
	  API_MEMBER, "query:tenant", vms_list, "List VMs (node, limit, cursor)" },
	{ "GET", "/v1/vms/{vm}", "vms.read",
	  API_MEMBER, VM_OWNER, vms_get,
	  "Show a VM, desired and observed" },
	{ "POST", "/v1/vms/{vm}/start", "vms.write",
	  API_MEMBER, VM_OWNER, vms_start, "Start a VM" },
	{ "POST", "/v1/vms/{vm}/stop", "vms.write",
	  API_MEMBER, VM_OWNER, vms_stop, "Stop a VM" },
	{ "POST", "/v1/vms/{vm}/reboot", "vms.write",
	  API_MEMBER, VM_OWNER, vms_reboot,
	  "Reboot a running VM" },
	{ "DELETE", "/v1/vms/{vm}", "vms.write",
	  API_MEMBER, VM_OWNER, vms_delete,
	  "Delete a VM, its domain and its disk" },
	{ "PATCH", "/v1/vms/{vm}", "vms.write",
	  API_MEMBER, VM_OWNER, vms_resize,
	  "Resize a VM (vcpus, memory_mib); applied while it is stopped" },
	{ "GET", "/v1/vms/{vm}/console", "vms.read",
	  API_MEMBER, VM_OWNER, vms_console,
	  "The tail of a VM's serial console (offset)" },
	{ "GET", "/v1/unknown-vms", "vms.read",
	  API_PLATFORM, NULL, unknown_list,
	  "VMs nodes hold that the controller does not know (after a restore)" },
	{ "DELETE", "/v1/unknown-vms/{id}", "vms.write",
	  API_PLATFORM, NULL, unknown_delete,
	  "Let a node delete a VM it holds that the controller does not know" },
	{ "POST", "/v1/plans", "vms.write",
	  API_PLATFORM, NULL, plans_create, "Add a plan" },
	{ "GET", "/v1/plans", "vms.read",
	  API_MEMBER, NULL, plans_list, "List plans" },
	{ "GET", "/v1/nodes/{node}/placement", "nodes.read",
	  API_PLATFORM, NULL, nodeops_get,
	  "A hypervisor's capacity, ratios, reserve, tags, claims, migrations" },
	{ "PATCH", "/v1/nodes/{node}/placement", "nodes.write",
	  API_PLATFORM, NULL, nodeops_set,
	  "Set a hypervisor's ratios (\"1.5\"), host reserve and tags" },
	{ "POST", "/v1/nodes/{node}/cordon", "nodes.write",
	  API_PLATFORM, NULL, nodeops_cordon,
	  "Take a hypervisor out of placement" },
	{ "POST", "/v1/nodes/{node}/uncordon", "nodes.write",
	  API_PLATFORM, NULL, nodeops_uncordon,
	  "Put a hypervisor back into placement (ends a drain)" },
	{ "POST", "/v1/nodes/{node}/drain", "nodes.write",
	  API_PLATFORM, NULL, nodeops_drain,
	  "Move every VM elsewhere by cold migration; ends cordoned" },
	{ "POST", "/v1/nodes/{node}/evacuate", "nodes.write",
	  API_PLATFORM, NULL, nodeops_evacuate,
	  "Rebuild a fenced (off) node's VMs elsewhere from their images" },
	{ "GET", "/v1/cluster/capacity", "nodes.read",
	  API_PLATFORM, NULL, nodeops_capacity,
	  "VMs of each plan that fit, N+1, empty nodes (plan)" },
	{ "POST", "/v1/cluster/rebalance", "nodes.write",
	  API_PLATFORM, NULL, nodeops_rebalance,
	  "Moves that lower the imbalance score (dry_run, max_moves)" },
	{ "POST", "/v1/groups", "vms.write",
	  API_PLATFORM, NULL, groups_create,
	  "Add an anti-affinity group (policy)" },
	{ "GET", "/v1/groups", "vms.read",
	  API_PLATFORM, NULL, groups_list, "List anti-affinity groups" },
	{ "DELETE", "/v1/groups/{group}", "vms.write",
	  API_PLATFORM, NULL, groups_delete,
	  "Delete an anti-affinity group without VMs" },
};

/* Set once the module stopped: frames still in flight are dropped. */
static int	compute_stopped;

/* Hypervisor messages: from a node with the hypervisor role only. */
static void
compute_agent_msg(int64_t node_id, uint16_t type, const uint8_t *p,
    size_t len)
{
	if (compute_stopped)
		return;
	if (!reports_has_role(node_id, "hypervisor")) {
		reports_reject(node_id, type == MSG_CONSOLE_DATA ? "console" :
		    type == MSG_OBSERVED_STATE ? "vm_state" : "hypervisor",
		    "message type %u: the node does not have the hypervisor "
		    "role", type);
		return;
	}
	switch (type) {
	case MSG_OBSERVED_STATE:
		vms_observed(node_id, p, len);
		break;
	case MSG_IMAGE_PROGRESS:
		vms_image_progress(node_id, p, len);
		break;
	case MSG_CONSOLE_DATA:
		vms_console_data(node_id, p, len);
		break;
	case MSG_DISK_SERVER:
	case MSG_MIGRATE_PROGRESS:
		migrate_agent_msg(node_id, type, p, len);
		break;
	}
}

static const struct ctl_msg_range compute_msgs[] = {
	{ MSG_RANGE_HV_MIN, MSG_RANGE_HV_MAX, compute_agent_msg },
};

/* Level-triggered: a (re)connected hypervisor gets its whole state. */
static void
compute_agent_hello(int64_t node_id, const char *roles)
{
	if (compute_stopped || strstr(roles, "hypervisor") == NULL)
		return;
	sched_node_sync(node_id);
	vms_push(node_id);
	migrate_tick();
}

/* A silent node leaves placement; its VMs are shown as unknown. */
static void
compute_agent_gone(int64_t node_id)
{
	sched_node_sync(node_id);
}

/* What placement knows of a node, in its JSON. */
static void
compute_node_json(int64_t node_id, json_t *node)
{
	json_t		*pl;
	const char	*admin;

	if (compute_stopped)
		return;
	if ((pl = nodeops_node_json(node_id)) == NULL)
		return;
	/* The operator's state shows where the connection is fine. */
	admin = json_string_value(json_object_get(pl, "admin"));
	if (admin != NULL && (strcmp(admin, "fenced") == 0 ||
	    (strcmp(admin, "none") != 0 && strcmp(json_string_value(
	    json_object_get(node, "state")), "ready") == 0)))
		json_object_set_new(node, "state", json_string(admin));
	json_object_set_new(node, "placement", pl);
}

static int
compute_init(struct ctl *c, char **cause)
{
	if (sched_init(c, cause) == -1)
		return (-1);
	return (migrate_init(c, cause));
}

static void
compute_stop(void)
{
	compute_stopped = 1;
	migrate_stop();
	sched_stop();
}

/* VMs by observed state, for GET /metrics. */
static void
compute_metrics(struct prom *pr)
{
	sqlite3_stmt	*st;

	prom_family(pr, "opsn_vms", "gauge", "VMs by observed state.");
	st = store_prepare(ctl->db, "SELECT obs_state, count(*) FROM vms "
	    "GROUP BY obs_state ORDER BY obs_state");
	while (store_step(st) == SQLITE_ROW)
		prom_sample(pr, "opsn_vms", "state",
		    (const char *)sqlite3_column_text(st, 0),
		    (double)sqlite3_column_int64(st, 1));
	sqlite3_finalize(st);
	unknown_metrics(pr);
}

const struct ctl_module compute_module = {
	.m_name = "compute",
	.m_init = compute_init,
	.m_stop = compute_stop,
	.m_routes = compute_routes,
	.m_nroutes = nitems(compute_routes),
	.m_msgs = compute_msgs,
	.m_nmsgs = nitems(compute_msgs),
	.m_hello = compute_agent_hello,
	.m_metrics = compute_metrics,
	.m_restored = unknown_restored,
	.m_gone = compute_agent_gone,
	.m_node_json = compute_node_json,
};
