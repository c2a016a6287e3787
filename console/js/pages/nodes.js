// Nodes: hypervisors and mail or web backends, their state, capacity and
// what they hold; a one-time join token for a new node; revocation.

import * as api from "../api.js";
import { h, fill, table, link, form, dl, errorBox, buttons, button, confirm,
    section, okBox } from "../dom.js";
import { t, tOr, fmtInt, fmtBytes, fmtTime, fmtAgo, fmtDuration } from "../i18n.js";
import { can, navigate } from "../app.js";
import { nodeState, vmState, usedOf, allocations,
    spoolByNode } from "./dashboard.js";
import { vmRow } from "./vms.js";

export async function nodesPage(root, ctx) {
	const [nodes, vms] = await Promise.all([
		api.all("/v1/nodes"),
		can("GET", "/v1/vms") ? api.all("/v1/vms") : [],
	]);
	const alloc = allocations(vms);
	const parts = [ctx.title(t("nodes.title")), table(t("nodes.title"), [
		{ label: t("node.name"), cell: (n) => link("/nodes/" +
		    encodeURIComponent(n.name), n.name) },
		{ label: t("node.state"), cell: (n) => nodeState(n.state) },
		{ label: t("node.roles"), cell: (n) => (n.roles || []).map((r) =>
		    tOr("role.node." + r, r)).join(", ") },
		{ label: t("node.address"), cell: (n) => n.address || "–" },
		{ label: t("node.vcpus"), cell: (n) => usedOf((alloc[n.name] ||
		    {}).vcpus || 0, n.cpus || 0, fmtInt) },
		{ label: t("node.memory"), cell: (n) => usedOf(((alloc[n.name] ||
		    {}).memory_mib || 0) * 1048576, n.memory_bytes || 0,
		    fmtBytes) },
		{ label: t("node.disk"), cell: (n) => usedOf((alloc[n.name] ||
		    {}).disk_bytes || 0, n.disk_bytes || 0, fmtBytes) },
		{ label: t("node.last_seen"), cell: (n) => fmtAgo(n.last_seen) },
		{ label: t("node.version"), cell: (n) => n.agent_version || "–" },
	], nodes, { empty: t("dash.no_nodes") })];
	if (can("POST", "/v1/node-tokens")) {
		parts.push(section(t("nodes.enrol"), h("p", t("nodes.enrol_intro")),
		    form({
			label: t("nodes.enrol"),
			fields: [{ name: "ttl", label: t("nodes.ttl"), value: "1h",
			    required: true, hint: t("nodes.ttl_hint") }],
			submit: t("nodes.token_submit"),
			async onsubmit(v) {
				const r = await api.post("/v1/node-tokens", { ttl:
				    v.ttl });
				return h("div", { class: "ok" }, h("p", t("nodes.token",
				    { until: fmtTime(r.expires_at) })), h("pre",
				    { class: "secret", tabindex: "0", "aria-label":
				    t("nodes.token_label") }, r.token));
			},
		})));
	}
	fill(root, ...parts);
}

export async function nodePage(root, ctx) {
	const name = ctx.params[0];
	const [n, vms, metrics] = await Promise.all([
		api.get("/v1/nodes/" + api.seg(name)),
		can("GET", "/v1/vms") ? api.all("/v1/vms", { node: name }) : [],
		can("GET", "/metrics") ? api.get("/metrics", { raw: true, headers:
		    { Accept: "text/plain" } }).then((r) => r.text()).catch(
		    () => "") : "",
	]);
	const spool = spoolByNode(metrics)[n.name];
	const a = allocations(vms)[n.name] || {};
	const out = h("div", { class: "action-out" });
	fill(root, ctx.title(n.name, t("node.title")), dl([
		[t("node.state"), h("span", nodeState(n.state), " ",
		    t("node.since", { at: fmtTime(n.state_since) }))],
		[t("node.roles"), (n.roles || []).map((r) => tOr("role.node." + r,
		    r)).join(", ")],
		[t("node.address"), n.address],
		[t("node.hostname"), n.hostname],
		[t("node.vcpus"), usedOf(a.vcpus || 0, n.cpus || 0, fmtInt)],
		[t("node.memory"), usedOf((a.memory_mib || 0) * 1048576,
		    n.memory_bytes || 0, fmtBytes)],
		[t("node.disk"), usedOf(a.disk_bytes || 0, n.disk_bytes || 0,
		    fmtBytes)],
		[t("node.last_seen"), `${fmtAgo(n.last_seen)} (${fmtTime(
		    n.last_seen)})`],
		spool ? [t("node.lag"), fmtDuration(spool.lag_seconds || 0)] :
		    null,
		spool ? [t("node.spool"), t("node.spool_text", { n: fmtInt(
		    spool.samples || 0), dropped: fmtInt(spool.dropped_total ||
		    0) })] : null,
		[t("node.version"), n.agent_version],
		n.libvirt_version ? ["libvirt", n.libvirt_version] : null,
		n.qemu_version ? ["QEMU", n.qemu_version] : null,
		[t("node.enrolled"), fmtTime(n.enrolled_at)],
		[t("node.fingerprint"), h("code", { class: "wrap" },
		    n.cert_fingerprint)],
		n.revoked ? [t("node.revoked"), t("yes")] : null,
	]), !n.revoked && can("POST", "/v1/nodes/{name}/revoke") ?
	    buttons(button(t("node.revoke"), async () => {
		if (!await confirm(t("node.revoke"), t("node.confirm_revoke",
		    { name: n.name }), t("node.revoke")))
			return;
		try {
			await api.post("/v1/nodes/" + api.seg(n.name) + "/revoke", {});
			fill(out, okBox(t("node.revoked_ok", { name: n.name })));
			setTimeout(() => navigate(location.pathname, true), 1200);
		} catch (err) {
			fill(out, errorBox(err));
		}
	}, "danger")) : null, out,
	    n.roles && n.roles.includes("hypervisor") ? section(t("vms.title"),
	    table(t("node.vms", { name: n.name }), [
		{ label: t("vm.name"), cell: (v) => link("/vms/" + v.id, v.name) },
		{ label: t("mail.member"), cell: (v) => v.tenant || "–" },
		{ label: t("vm.size"), cell: (v) => `${v.vcpus} vCPU, ` +
		    fmtBytes(v.memory_mib * 1048576) },
		{ label: t("vm.state"), cell: (v) => vmState(vmRow(v)) },
	], vms, { empty: t("vms.none") })) : null);
}
