/*
 * The metering module: samples in from the agents (ingest.c), hourly
 * rollups (rollup.c), usage and metrics out (usage.c).
 */
#include "opsn/frame.h"
#include "opsn/util.h"
#include "core/core.h"
#include "metering.h"

static const struct ctl_msg_range metering_msgs[] = {
	{ MSG_RANGE_METER_MIN, MSG_RANGE_METER_MAX, metering_agent_msg },
};

const struct ctl_module metering_module = {
	.m_name = "metering",
	.m_init = metering_init,
	.m_routes = metering_routes,
	.m_nroutes = nitems(metering_routes),
	.m_msgs = metering_msgs,
	.m_nmsgs = nitems(metering_msgs),
	.m_hello = metering_agent_hello,
	.m_gone = metering_agent_gone,
	.m_metrics = metering_prom,
};
