/*
 * The compute module: images, plans, VMs and their placement. Its agent
 * messages are the hypervisor range: observed state, image downloads,
 * console bytes.
 */
#include <string.h>

#include "opsn/frame.h"
#include "opsn/util.h"
#include "core/core.h"
#include "compute.h"
#include "vms.h"

/* h2o keeps a request body in memory (or a temporary file past 32 MiB). */
#define COMPUTE_MAX_UPLOAD	((size_t)4 << 30)
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
	  "Upload one part (disk, kernel, initrd), checked against its SHA-256",
	  COMPUTE_MAX_UPLOAD },
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
};

/* Hypervisor messages. */
static void
compute_agent_msg(int64_t node_id, uint16_t type, const uint8_t *p,
    size_t len)
{
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
	}
}

static const struct ctl_msg_range compute_msgs[] = {
	{ MSG_RANGE_HV_MIN, MSG_RANGE_HV_MAX, compute_agent_msg },
};

/* Level-triggered: a (re)connected hypervisor gets its whole state. */
static void
compute_agent_hello(int64_t node_id, const char *roles)
{
	if (strstr(roles, "hypervisor") != NULL)
		vms_push(node_id);
}

/* VMs by observed state, for GET /metrics. */
static void
compute_metrics(struct prom *pr)
{
	sqlite3_stmt	*st;

	prom_family(pr, "opsn_vms", "gauge", "VMs by observed state.");
	st = store_prepare(ctl->db, "SELECT obs_state, count(*) FROM vms "
	    "GROUP BY obs_state ORDER BY obs_state");
	while (sqlite3_step(st) == SQLITE_ROW)
		prom_sample(pr, "opsn_vms", "state",
		    (const char *)sqlite3_column_text(st, 0),
		    (double)sqlite3_column_int64(st, 1));
	sqlite3_finalize(st);
	unknown_metrics(pr);
}

const struct ctl_module compute_module = {
	.m_name = "compute",
	.m_routes = compute_routes,
	.m_nroutes = nitems(compute_routes),
	.m_msgs = compute_msgs,
	.m_nmsgs = nitems(compute_msgs),
	.m_hello = compute_agent_hello,
	.m_metrics = compute_metrics,
	.m_restored = unknown_restored,
};
