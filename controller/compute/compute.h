/* The compute module: images, plans, VMs and their placement. */
#ifndef OPSN_COMPUTE_H
#define OPSN_COMPUTE_H

extern const struct ctl_module compute_module;

#endif
