/* Placeholder until the hypervisor role lands (being written now). */
#include "agent.h"

static int
hv_init(struct agent *a, char **cause)
{
	return (0);
}

const struct role_ops hv_role = { "hypervisor", hv_init, NULL, NULL, NULL };
