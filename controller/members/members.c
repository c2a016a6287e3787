/*
 * The members module: communes, EPCIs and other members, their quotas and
 * status, and their import from Etalab's or a CSV file's records.
 */
#include "opsn/util.h"
#include "core/core.h"
#include "members.h"
#include "tenants.h"

#define MEMBERS_MAX_IMPORT	((size_t)64 << 20)

static const struct api_route members_routes[] = {
	{ "POST", "/v1/tenants", "tenants.write",
	  API_PLATFORM, NULL, tenants_create,
	  "Add a member (commune, EPCI, syndicat, department, other)" },
	{ "GET", "/v1/tenants", "tenants.read",
	  API_MEMBER, "query:tenant", tenants_list,
	  "List members (q: name, INSEE code or SIREN; tenant, kind, status, "
	  "parent, limit, cursor)" },
	{ "POST", "/v1/tenants/import", "tenants.write",
	  API_PLATFORM, NULL, import_tenants,
	  "Import members (Etalab or CSV records), all or nothing",
	  MEMBERS_MAX_IMPORT },
	{ "GET", "/v1/tenants/{tenant}", "tenants.read",
	  API_MEMBER, "path:tenant", tenants_get,
	  "Show a member by id, INSEE code or SIREN (ETag)" },
	{ "PATCH", "/v1/tenants/{tenant}", "tenants.write",
	  API_PLATFORM, NULL, tenants_update,
	  "Change a member's fields or quotas (If-Match)" },
	{ "POST", "/v1/tenants/{tenant}/suspend", "tenants.write",
	  API_PLATFORM, NULL,
	  tenants_suspend, "Suspend a member" },
	{ "POST", "/v1/tenants/{tenant}/withdraw", "tenants.write",
	  API_PLATFORM, NULL,
	  tenants_withdraw, "A member withdraws: history kept, no new service" },
	{ "POST", "/v1/tenants/{tenant}/activate", "tenants.write",
	  API_PLATFORM, NULL,
	  tenants_activate, "Reactivate a suspended member" },
};

const struct ctl_module members_module = {
	.m_name = "members",
	.m_init = tenants_init,
	.m_routes = members_routes,
	.m_nroutes = nitems(members_routes),
};
