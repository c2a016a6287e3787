/*
 * The monitor module: GET /metrics, where every module writes its
 * Prometheus families (struct ctl_module's m_metrics).
 */
#ifndef OPSN_MONITOR_H
#define OPSN_MONITOR_H

struct ctl;
struct prom;

extern const struct ctl_module monitor_module;

/* The whole exposition text into pr (for the route and the tests). */
void	monitor_write(struct ctl *, struct prom *);

#endif
