// The operator's dashboard: nodes by state with the capacity their VMs
// hold, VMs by state, provisioning changes pending or failed, metering lag
// and spool warnings per node.

import * as api from "../api.js";
import { h, fill, table, section, badge, link } from "../dom.js";
import { t, tOr, fmtInt, fmtBytes, fmtAgo, fmtDuration, fmtTime,
    fmtPercent } from "../i18n.js";
import { can } from "../app.js";

// Spool warnings: a node whose oldest unacknowledged sample is older than
// this, or that dropped samples, is shown as a warning.
const LAG_WARN_SECONDS = 600;

export const NODE_STATE_KIND = { ready: "ok", enrolling: "info",
    cordoned: "warn", draining: "warn", unreachable: "bad", fenced: "bad",
    retired: "muted" };

export function nodeState(s) {
	return badge(NODE_STATE_KIND[s] || "info", tOr("node.state." + s, s));
}

export function vmState(s) {
	const kind = { running: "ok", stopped: "muted", shutoff: "muted",
	    error: "bad", failed: "bad", pending: "info", creating: "info" }[s];
	return badge(kind || "info", tOr("vm.state." + s, s));
}

// "2 / 16 vCPU" with a bar; the bar is decoration, the text says it all.
export function usedOf(used, total, fmt) {
	const frac = total > 0 ? Math.min(1, used / total) : 0;
	const bar = h("span", { class: "meter", "aria-hidden": "true" },
	    h("span", { class: ["fill", frac > 0.9 ? "hot" : null] }));
	bar.firstChild.style.width = (frac * 100).toFixed(1) + "%";
	return h("span", { class: "used" }, `${fmt(used)} / ${fmt(total)}`,
	    total > 0 ? ` (${fmtPercent(frac)})` : "", bar);
}

// The Prometheus text of /metrics, per node: spool lag, samples waiting,
// samples dropped.
export function spoolByNode(text) {
	const out = {};
	const re = /^opsn_meter_spool_(lag_seconds|samples|dropped_total)\{node="([^"]*)"\} ([0-9.eE+-]+)$/gm;
	let m;
	while ((m = re.exec(text)) !== null) {
		out[m[2]] = out[m[2]] || {};
		out[m[2]][m[1]] = Number(m[3]);
	}
	return out;
}

// What the VMs placed on each node hold: vcpus, memory_mib, disk_bytes.
export function allocations(vms) {
	const a = {};
	for (const v of vms) {
		if (!v.node)
			continue;
		const n = a[v.node] = a[v.node] || { vcpus: 0, memory_mib: 0,
		    disk_bytes: 0, vms: 0 };
		n.vcpus += v.vcpus || 0;
		n.memory_mib += v.memory_mib || 0;
		n.disk_bytes += v.disk_bytes || 0;
		n.vms++;
	}
	return a;
}

function countBy(items, key) {
	const c = {};
	for (const i of items) {
		const k = key(i);
		c[k] = (c[k] || 0) + 1;
	}
	return Object.entries(c).sort((a, b) => b[1] - a[1]);
}

export async function dashboardPage(root, ctx) {
	const [nodes, vms, backends, failed, metrics] = await Promise.all([
		api.all("/v1/nodes"),
		can("GET", "/v1/vms") ? api.all("/v1/vms") : [],
		can("GET", "/v1/backends") ? api.all("/v1/backends") : [],
		can("GET", "/v1/changes") ? api.get("/v1/changes?failed=1&limit=10")
		    .then((p) => p.items) : [],
		can("GET", "/metrics") ? api.get("/metrics", { raw: true,
		    headers: { Accept: "text/plain" } }).then((r) => r.text())
		    .catch(() => "") : "",
	]);
	const alloc = allocations(vms);
	const spool = spoolByNode(metrics);
	const title = ctx.title(t("dash.title"));

	const nodeCounts = countBy(nodes, (n) => n.state);
	const nodesSec = section(t("dash.nodes"),
	    h("ul", { class: "counts" }, nodeCounts.map(([s, n]) => h("li",
	    nodeState(s), " ", h("strong", fmtInt(n))))),
	    table(t("dash.nodes_caption"), [
		{ label: t("node.name"), cell: (n) => link("/nodes/" +
		    encodeURIComponent(n.name), n.name) },
		{ label: t("node.state"), cell: (n) => nodeState(n.state) },
		{ label: t("node.roles"), cell: (n) => (n.roles || []).map((r) =>
		    t("role.node." + r)).join(", ") },
		{ label: t("node.vcpus"), cell: (n) => usedOf((n.allocated ||
		    alloc[n.name] || {}).vcpus || 0, n.cpus || 0, fmtInt) },
		{ label: t("node.memory"), cell: (n) => usedOf(((n.allocated ||
		    alloc[n.name] || {}).memory_mib || 0) * 1048576,
		    n.memory_bytes || 0, fmtBytes) },
		{ label: t("node.lag"), cell: (n) => spool[n.name] ?
		    fmtDuration(spool[n.name].lag_seconds || 0) : "–", num: true },
		{ label: t("node.last_seen"), cell: (n) => h("time",
		    { datetime: n.last_seen || "", title: fmtTime(n.last_seen) },
		    fmtAgo(n.last_seen)) },
	    ], nodes, { empty: t("dash.no_nodes") }));

	const vmSec = section(t("dash.vms"), vms.length ?
	    h("ul", { class: "counts" }, countBy(vms, (v) => v.observed &&
	    v.observed.state || v.desired).map(([s, n]) => h("li", vmState(s),
	    " ", h("strong", fmtInt(n))))) : h("p", t("dash.no_vms")),
	    h("p", link("/vms", t("dash.all_vms"))));

	const pending = backends.reduce((a, b) => a + (b.pending_changes || 0),
	    0);
	const failedN = backends.reduce((a, b) => a + (b.failed_changes || 0),
	    0);
	const changesSec = section(t("dash.changes"),
	    h("ul", { class: "counts" },
	    h("li", badge(pending ? "info" : "ok", t("change.pending")), " ",
	    h("strong", fmtInt(pending))),
	    h("li", badge(failedN ? "bad" : "ok", t("change.failed")), " ",
	    h("strong", fmtInt(failedN)))),
	    failed.length ? table(t("dash.failed_caption"), [
		{ label: t("change.at"), cell: (c) => fmtTime(c.at) },
		{ label: t("change.node"), cell: (c) => c.node },
		{ label: t("change.object"), cell: (c) => `${tOr("kind." + c.kind, c.kind)} ${c.object}` },
		{ label: t("change.action"), cell: (c) => tOr("action." + c.action, c.action) },
		{ label: t("change.message"), cell: (c) => c.message },
	    ], failed) : null);

	const warnings = [];
	for (const [node, s] of Object.entries(spool)) {
		if ((s.lag_seconds || 0) > LAG_WARN_SECONDS)
			warnings.push(t("dash.warn_lag", { node, lag:
			    fmtDuration(s.lag_seconds) }));
		if ((s.dropped_total || 0) > 0)
			warnings.push(t("dash.warn_dropped", { node, n:
			    fmtInt(s.dropped_total) }));
	}
	for (const n of nodes)
		if (n.state === "unreachable")
			warnings.push(t("dash.warn_unreachable", { node: n.name,
			    ago: fmtAgo(n.last_seen) }));
	const meterSec = section(t("dash.metering"), warnings.length ?
	    h("ul", { class: "warnings" }, warnings.map((w) => h("li",
	    badge("warn", t("dash.warning")), " ", w))) :
	    h("p", badge("ok", t("dash.ok")), " ", t("dash.no_warnings")));

	fill(root, title, h("div", { class: "grid" }, vmSec, changesSec,
	    meterSec), nodesSec);
}
