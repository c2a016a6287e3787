/*
 * libFuzzer target for the placement engine (controller/compute/place.c).
 * Operators send node tags and VMs' required tags through the API: the
 * input's first two NUL-terminated strings are those. The rest drives the
 * engine, two bytes an operation (nodes, states, claims, releases, moves,
 * migrations, plans); after each one the engine's incremental state must
 * still equal a recomputation (place_check) and no node may be claimed
 * past its room by a checked decision.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/place.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The next NUL-terminated string of the input (copied), or "". */
static char *
next_str(const uint8_t **p, size_t *len)
{
	const uint8_t	*nul = memchr(*p, 0, *len);
	size_t		 n = nul != NULL ? (size_t)(nul - *p) : *len;
	char		*s = malloc(n + 1);

	memcpy(s, *p, n);
	s[n] = '\0';
	*p += nul != NULL ? n + 1 : n;
	*len -= nul != NULL ? n + 1 : n;
	return (s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct place		*p = place_new(), *q;
	struct place_node_conf	 c;
	struct place_vm		 vm;
	struct place_plan	 pl;
	struct place_node_info	 ni;
	char			*tags, *req, *cause = NULL;
	int64_t			 vmid = 0, n, at;
	uint8_t			 op, arg;

	tags = next_str(&data, &len);
	req = next_str(&data, &len);
	if (place_tags_ok(tags, PLACE_NODE_TAGS, &cause) == -1) {
		free(cause);
		cause = NULL;
	}
	place_group_set(p, 1, "hard", PLACE_ANTI_HARD, NULL);
	place_group_set(p, 2, "soft", PLACE_ANTI_SOFT, NULL);
	while (len >= 2) {
		op = data[0];
		arg = data[1];
		data += 2;
		len -= 2;
		n = 1 + arg % 8;
		switch (op % 10) {
		case 0:		/* a node, maybe with the fuzzed tags */
			memset(&c, 0, sizeof(c));
			c.cpus = 1 + arg % 16;
			c.memory = 512 << (arg % 6);
			c.disk = (int64_t)(1 + arg % 50) << 30;
			c.cpu_ratio = (int32_t)(arg % 5) * 1000;
			c.reserve_memory = arg % 3 ? 0 : 256;
			c.tags = arg & 1 ? tags : "zone=a";
			if (place_node_set(p, n, "n", &c, &cause) == 0)
				place_node_state(p, n, PLACE_READY);
			break;
		case 1:
			place_node_state(p, n, (enum place_state)(arg % 7));
			break;
		case 2:		/* a claim by decision */
			memset(&vm, 0, sizeof(vm));
			vm.vcpus = 1 + arg % 4;
			vm.memory = 64 << (arg % 4);
			vm.disk = (int64_t)(arg % 3) << 30;
			vm.group = arg % 3;
			vm.require = arg & 8 ? req : NULL;
			if ((at = place_claim(p, ++vmid, &vm, arg & 16 ?
			    PLACE_PACK : PLACE_SPREAD, &cause)) != -1 &&
			    place_node_info(p, at, &ni) == 0 &&
			    (ni.use_vcpus > ni.cap_vcpus ||
			    ni.use_memory > ni.cap_memory ||
			    ni.use_disk > ni.cap_disk))
				abort();	/* a checked claim overcommitted */
			break;
		case 3:
			place_vm_remove(p, 1 + arg % (vmid + 1));
			break;
		case 4:
			place_vm_move(p, 1 + arg % (vmid + 1), n, &cause);
			break;
		case 5:
			place_migrate_begin(p, 1 + arg % (vmid + 1), n, 1,
			    &cause);
			break;
		case 6:
			place_migrate_end(p, 1 + arg % (vmid + 1), arg & 1);
			break;
		case 7:
			if (place_plan_drain(p, n, PLACE_SPREAD, &pl,
			    &cause) == 0)
				place_plan_free(&pl);
			break;
		case 8:
			place_plan_rebalance(p, 3, 0.01, &pl);
			place_plan_free(&pl);
			place_plan_n1(p, PLACE_PACK, &pl);
			place_plan_free(&pl);
			break;
		case 9:
			q = place_clone(p);
			place_node_remove(q, n, &cause);
			place_free(q);
			break;
		}
		free(cause);
		cause = NULL;
		if (place_check(p, &cause) == -1) {
			fprintf(stderr, "place_check: %s\n", cause);
			abort();
		}
	}
	place_free(p);
	free(tags);
	free(req);
	return (0);
}
