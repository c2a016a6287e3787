/*
 * The running VM a simulated hypervisor reports in a metering sample
 * (2 vCPUs, 2 GiB, a 20 GiB disk of which 3 GiB used), its counters
 * growing with the sequence number. Shared by the benchmark programs.
 */
#ifndef OPSN_BENCH_VMSAMPLE_H
#define OPSN_BENCH_VMSAMPLE_H

#include "metering.pb-c.h"

static inline void
bench_vm_sample(Opsn__Sample *v, uint64_t seq)
{
	v->boot = "pid:1:1";
	v->state = 1;
	v->vcpus = 2;
	v->memory_mib = 2048;
	v->disk_bytes = 20ULL << 30;
	v->disk_used_bytes = 3ULL << 30;
	v->has_cpu = 1;
	v->cpu_ns = seq * 1000000;
	v->has_net = 1;
	v->net_rx_bytes = seq * 1000;
	v->net_tx_bytes = seq * 500;
}

#endif
