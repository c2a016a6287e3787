// Members (communes, EPCIs, syndicats...): the list searched on the
// controller (name, INSEE code or SIREN over every member), imports from
// Etalab or CSV files with their progress, and a member's own page.

import * as api from "../api.js";
import { h, fill, table, section, badge, link, form, dl, progress,
    errorBox, okBox, buttons, button, confirm, announce, pager } from "../dom.js";
import { t, tOr, fmtInt, fmtBytes, fmtDay, fmtMoney, fmtPeriod, fmtDecimal,
    periodOf, addMonths, parseSize } from "../i18n.js";
import { can, navigate, ownTenant } from "../app.js";
import { barChart } from "../chart.js";
import { etalabRecords, epciRecords, csvRecords,
    departementOk } from "../import.js";
import { vmState } from "./dashboard.js";
import { liveBadge } from "./mail.js";

const PAGE = 50;
const KINDS = ["commune", "epci", "syndicat", "department", "other"];

export function statusBadge(s) {
	return badge({ active: "ok", suspended: "warn", withdrawn: "muted" }[s]
	    || "info", tOr("status." + s, s));
}

export function memberLink(m) {
	return link("/members/" + encodeURIComponent(m.insee && m.kind ===
	    "commune" ? m.insee : m.siren || m.id), m.name);
}

export async function membersPage(root, ctx) {
	const q = ctx.query.get("q") || "";
	const kind = ctx.query.get("kind") || "";
	const status = ctx.query.get("status") || "";
	const cursor = ctx.query.get("cursor") || "";
	const title = ctx.title(t("members.title"));
	const search = form({
		label: t("members.search"),
		class: "search",
		fields: [
			{ name: "q", label: t("members.q"), type: "search", value: q,
			  hint: t("members.q_hint"), attrs: { autocomplete: "off" } },
			{ name: "kind", label: t("members.kind"), type: "select",
			  value: kind, options: [["", t("members.any_kind")],
			  ...KINDS.map((k) => [k, t("kind.tenant." + k)])] },
			{ name: "status", label: t("members.status"), type: "select",
			  value: status, options: [["", t("members.any_status")],
			  ...["active", "suspended", "withdrawn"].map((s) =>
			  [s, t("status." + s)])] },
		],
		submit: t("members.search_submit"),
		async onsubmit(v) {
			navigate(api.url("/members", { q: v.q, kind: v.kind,
			    status: v.status }));
			return false;
		},
	});
	search.setAttribute("role", "search");
	const t0 = performance.now();
	const page = await api.get(api.url("/v1/tenants", { q, kind, status,
	    cursor, limit: PAGE }));
	const ms = Math.round(performance.now() - t0);
	const rows = page.items;
	const summary = h("p", { class: "result-count", id: "result-count" },
	    q ? t(rows.length === 1 ? "members.found_one" : "members.found",
	    { n: fmtInt(rows.length) + (page.next_cursor ? "+" : ""), q }) :
	    t("members.showing", { n: fmtInt(rows.length) }));
	const list = table(t("members.caption"), [
		{ label: t("member.name"), cell: memberLink },
		{ label: t("member.kind"), cell: (m) => t("kind.tenant." +
		    m.kind) },
		{ label: t("member.insee"), cell: (m) => m.insee || "–" },
		{ label: t("member.siren"), cell: (m) => m.siren || "–" },
		{ label: t("member.population"), cell: (m) =>
		    fmtInt(m.population), num: true },
		{ label: t("member.status"), cell: (m) => statusBadge(m.status) },
	], rows, { empty: q ? t("members.none_found", { q }) :
	    t("members.none") });
	const tools = [];
	if (can("POST", "/v1/tenants/import"))
		tools.push(importSection());
	if (can("POST", "/v1/tenants"))
		tools.push(addSection());
	fill(root, title, search, summary, list, pager("/members", { q, kind,
	    status }, cursor, page.next_cursor), ...tools);
	root.dataset.ms = String(ms);
	if (ctx.query.has("q"))
		announce(summary.textContent);
}

function readFile(file, onProgress) {
	return new Promise((resolve, reject) => {
		const r = new FileReader();
		r.onprogress = (e) => onProgress(e.loaded, e.total);
		r.onerror = () => reject(r.error);
		r.onload = () => resolve(r.result);
		r.readAsText(file, "utf-8");
	});
}

function importSection() {
	const f = form({
		legend: t("import.legend"),
		fields: [
			{ name: "source", label: t("import.source"), type: "select",
			  options: [["etalab", t("import.etalab")], ["etalab-epci",
			  t("import.etalab_epci")], ["csv", t("import.csv")]] },
			{ name: "file", label: t("import.file"), type: "file",
			  required: true, hint: t("import.file_hint"), attrs:
			  { accept: ".json,.csv,application/json,text/csv" } },
			{ name: "departement", label: t("import.dep"), hint:
			  t("import.dep_hint"), attrs: { size: "4", maxlength: "3",
			  autocomplete: "off" } },
		],
		validate: (v) => v.departement && !departementOk(
		    v.departement.toUpperCase()) ? { departement:
		    t("import.bad_dep") } : null,
		submit: t("import.submit"),
		async onsubmit(v, el, out) {
			const dep = v.departement.toUpperCase();
			const p = progress(t("import.progress"));
			fill(out, p.el);
			p.set(0, v.file.size, t("import.reading", { name:
			    v.file.name }));
			const text = await readFile(v.file, (d, n) => p.set(d, n,
			    t("import.reading", { name: v.file.name })));
			p.set(0, 0, t("import.parsing"));
			await new Promise((r) => setTimeout(r, 0));
			let records;
			try {
				records = v.source === "csv" ? csvRecords(text,
				    v.file.name) : (v.source === "etalab" ? etalabRecords :
				    epciRecords)(JSON.parse(text), dep || null);
			} catch (e) {
				fill(out);
				throw { message: e.message, code: "bad_file" };
			}
			if (!records.length) {
				fill(out);
				throw { message: t("import.nothing"), code: "empty" };
			}
			const n = fmtInt(records.length);
			const res = await api.postWithProgress("/v1/tenants/import",
			    { source: v.source, records }, (sent, total, done) =>
			    done ? p.set(0, 0, t("import.waiting", { n })) :
			    p.set(sent, total, t("import.sending", { n })));
			p.finish(t("import.done"));
			return h("div", p.el, okBox(t("import.result", {
				total: fmtInt(res.total), created: fmtInt(res.created),
				updated: fmtInt(res.updated), unchanged:
				fmtInt(res.unchanged), linked: fmtInt(res.linked) })));
		},
	});
	return h("details", { class: "tool" }, h("summary", t("import.title")),
	    f);
}

function addSection() {
	const f = form({
		legend: t("member.add"),
		fields: [
			{ name: "kind", label: t("member.kind"), type: "select",
			  options: KINDS.map((k) => [k, t("kind.tenant." + k)]) },
			{ name: "name", label: t("member.name"), required: true },
			{ name: "insee", label: t("member.insee"), attrs:
			  { inputmode: "numeric", maxlength: "5" } },
			{ name: "siren", label: t("member.siren"), attrs:
			  { inputmode: "numeric", maxlength: "9" } },
			{ name: "population", label: t("member.population"),
			  type: "number", attrs: { min: "0" } },
		],
		submit: t("member.add_submit"),
		async onsubmit(v) {
			const body = { kind: v.kind, name: v.name };
			if (v.insee)
				body.insee = v.insee;
			if (v.siren)
				body.siren = v.siren;
			if (v.population)
				body.population = Number(v.population);
			const m = await api.post("/v1/tenants", body);
			navigate("/members/" + encodeURIComponent(m.insee ||
			    m.siren || m.id));
			return false;
		},
	});
	return h("details", { class: "tool" }, h("summary", t("member.add")), f);
}

// ---- one member ---------------------------------------------------------

const QUOTAS = [
	["vcpus", "quota_vcpus", fmtInt],
	["memory_mib", "quota_memory_mib", (v) => fmtBytes(v * 1048576)],
	["disk_bytes", "quota_disk_bytes", fmtBytes],
	["vms", "quota_vms", fmtInt],
];

export async function memberPage(root, ctx) {
	const ref = ctx.params[0];
	const m = await api.get("/v1/tenants/" + api.seg(ref));
	const tref = m.insee && m.kind === "commune" ? m.insee : String(m.id);
	const title = ctx.title(m.name, [t("kind.tenant." + m.kind),
	    m.insee ? "INSEE " + m.insee : null].filter(Boolean).join(" · "));
	const facts = dl([
		[t("member.kind"), t("kind.tenant." + m.kind)],
		[t("member.insee"), m.insee],
		[t("member.siren"), m.siren],
		[t("member.population"), fmtInt(m.population)],
		[t("member.parent"), !m.parent ? null : ownTenant() ?
		    m.parent.name : link("/members/" + encodeURIComponent(
		    m.parent.siren || m.parent.id), m.parent.name)],
		[t("member.status"), statusBadge(m.status)],
		[t("member.joined"), fmtDay(m.joined_on)],
		m.left_on ? [t("member.left"), fmtDay(m.left_on)] : null,
		[t("member.email"), m.email],
	]);
	const out = h("div");
	const acts = [];
	const act = (verb, label, danger) => can("POST",
	    "/v1/tenants/{tenant}/" + verb) ? button(label, async () => {
		if (danger && !await confirm(label, t("member.confirm_" + verb,
		    { name: m.name }), label))
			return;
		try {
			await api.post(`/v1/tenants/${api.seg(tref)}/${verb}`, {});
			navigate(location.pathname, true);
			announce(t("member.done_" + verb, { name: m.name }));
		} catch (err) {
			fill(out, errorBox(err));
		}
	}, danger ? "danger" : "secondary") : null;
	if (m.status === "active")
		acts.push(act("suspend", t("member.suspend"), true),
		    act("withdraw", t("member.withdraw"), true));
	else
		acts.push(act("activate", t("member.activate"), false));

	const parts = [title, facts, buttons(...acts), out, quotasSection(m,
	    tref)];
	const [domains, sites, vms, usage, statements] = await Promise.all([
		can("GET", "/v1/mail/domains") ? api.all("/v1/mail/domains",
		    { tenant: tref }) : null,
		can("GET", "/v1/sites") ? api.all("/v1/sites", { tenant: tref }) :
		    null,
		can("GET", "/v1/vms") ? api.all("/v1/vms", { tenant: tref }) : null,
		can("GET", "/v1/usage") ? api.get(api.url("/v1/usage", { tenant:
		    tref, group: "month", from: addMonths(periodOf(new Date()),
		    -11) + "-01", to: addMonths(periodOf(new Date()), 1) +
		    "-01" })).catch((e) => e) : null,
		can("GET", "/v1/statements") ? api.get(api.url("/v1/statements",
		    { tenant: tref, limit: 24 })).catch((e) => e) : null,
	]);
	if (domains)
		parts.push(section(t("mail.domains"), table(t("mail.domains_of",
		    { name: m.name }), [
			{ label: t("mail.domain"), cell: (d) => link("/mail/" +
			    encodeURIComponent(d.name), d.name_unicode || d.name) },
			{ label: t("mail.mailboxes"), cell: (d) =>
			    fmtInt(d.mailboxes), num: true },
			{ label: t("mail.aliases"), cell: (d) => fmtInt(d.aliases),
			    num: true },
			{ label: t("mail.quota"), cell: (d) => `${fmtBytes(
			    d.allocated_bytes)} / ${fmtBytes(d.quota_bytes)}` },
			{ label: t("live.title"), cell: (d) => liveBadge(d.live) },
		], domains, { empty: t("mail.no_domains") }),
		can("POST", "/v1/mail/domains") ? h("p", link("/mail?tenant=" +
		    encodeURIComponent(tref), t("mail.add_domain"))) : null));
	if (sites)
		parts.push(section(t("sites.title"), table(t("sites.of",
		    { name: m.name }), [
			{ label: t("site.hostname"), cell: (s) => s.hostname_unicode ||
			    s.hostname },
			{ label: t("site.quota"), cell: (s) => `${fmtBytes(
			    s.used_bytes)} / ${fmtBytes(s.quota_bytes)}` },
			{ label: t("site.status"), cell: (s) => statusBadge(
			    s.status) },
			{ label: t("live.title"), cell: (s) => liveBadge(s.live) },
		], sites, { empty: t("sites.none") }), h("p", link("/sites?tenant=" +
		    encodeURIComponent(tref), t("sites.manage")))));
	if (vms && (vms.length || !ownTenant()))
		parts.push(section(t("vms.title"), table(t("vms.of",
		    { name: m.name }), [
			{ label: t("vm.name"), cell: (v) => link("/vms/" + v.id,
			    v.name) },
			{ label: t("vm.size"), cell: (v) => `${v.vcpus} vCPU, ` +
			    fmtBytes(v.memory_mib * 1048576) },
			{ label: t("vm.state"), cell: (v) => vmState(v.observed &&
			    v.observed.state || v.desired) },
		], vms, { empty: t("vms.none") })));
	if (usage)
		parts.push(usageSection(usage, { from: addMonths(periodOf(
		    new Date()), -11), to: periodOf(new Date()) }));
	if (statements)
		parts.push(statementsSection(statements));
	fill(root, ...parts);
}

function quotasSection(m, tref) {
	const rows = QUOTAS.map(([k, , fmt]) => ({ k, fmt, used: (m.usage ||
	    {})[k], quota: (m.quotas || {})[k] }));
	const parts = [table(t("quota.caption"), [
		{ label: t("quota.resource"), cell: (r) => t("quota." + r.k),
		  rowHeader: true },
		{ label: t("quota.used"), cell: (r) => r.used === undefined ? "–" :
		    r.fmt(r.used), num: true },
		{ label: t("quota.limit"), cell: (r) => r.quota === null ||
		    r.quota === undefined ? t("quota.none") : r.fmt(r.quota),
		    num: true },
	], rows)];
	if (can("PATCH", "/v1/tenants/{tenant}")) {
		// Sizes are typed as "20G"; memory is stored in MiB.
		const isSize = (k) => k !== "vcpus" && k !== "vms";
		const toField = (k, v) => v === null || v === undefined ? "" :
		    isSize(k) ? fmtBytes(k === "memory_mib" ? v * 1048576 : v)
		    .replace(/[\u00a0\u202f]/g, " ") : String(v);
		const fromField = (k, s) => s === "" ? null : !isSize(k) ?
		    Number(s) : k === "memory_mib" ? Math.round(parseSize(s) /
		    1048576) : parseSize(s);
		const f = form({
			legend: t("quota.edit"),
			fields: QUOTAS.map(([k, field]) => ({ name: field, label:
			    t("quota." + k), value: toField(k, (m.quotas || {})[k]),
			    hint: isSize(k) ? t("quota.size_hint") :
			    t("quota.hint") })),
			validate(v) {
				const bad = {};
				for (const [k, field] of QUOTAS)
					if (v[field] !== "" && (isSize(k) ?
					    parseSize(v[field]) === null :
					    !/^\d+$/.test(v[field])))
						bad[field] = t("quota.bad");
				return bad;
			},
			submit: t("quota.save"),
			async onsubmit(v) {
				// Only what the user changed: a size written back
				// rounded must not move a quota nobody touched.
				const body = {};
				for (const [k, field] of QUOTAS)
					if (v[field] !== f.fields[field].defaultValue.trim())
						body[field] = fromField(k, v[field]);
				if (!Object.keys(body).length)
					return t("quota.unchanged");
				await api.patch("/v1/tenants/" + api.seg(tref), body,
				    { headers: { "If-Match": `"${m.version}"` } });
				navigate(location.pathname, true);
				announce(t("quota.saved"));
				return false;
			},
		});
		parts.push(h("details", { class: "tool" }, h("summary",
		    t("quota.edit")), f));
	}
	return section(t("quota.title"), ...parts);
}

// Usage per month: a chart per metric, the figures in one table.
export function usageSection(usage, opts = {}) {
	if (usage instanceof Error)
		return section(t("usage.title"), errorBox(usage));
	const months = [];
	const metrics = new Map();
	for (const it of usage.items) {
		if (!months.includes(it.period))
			months.push(it.period);
		const key = it.kind + "." + it.metric;
		if (!metrics.has(key))
			metrics.set(key, { key, unit: it.display_unit, by: {} });
		const cur = metrics.get(key).by[it.period] || "0";
		metrics.get(key).by[it.period] = addDecimal(cur,
		    it.display_quantity);
	}
	if (opts.from && opts.to)
		for (let p = opts.from; p <= opts.to; p = addMonths(p, 1))
			if (!months.includes(p))
				months.push(p);
	months.sort();
	if (!metrics.size)
		return section(opts.title || t("usage.title"), h("p",
		    t("usage.none")));
	const label = (m) => `${tOr("metric." + m.key, m.key)} (${tOr("unit." +
	    m.unit, m.unit)})`;
	const charts = [...metrics.values()].map((m) => barChart({
		title: label(m),
		bars: months.map((p) => ({ label: fmtPeriod(p, true), value:
		    Number(m.by[p] || 0), text: fmtDecimal(m.by[p] || "0", 0, 2) })),
		fmt: (v) => fmtDecimal(v.toFixed(2), 0, 2),
		summary: t("usage.chart_alt", { what: label(m) }),
	}));
	const tbl = table(opts.caption || t("usage.caption"), [
		{ label: t("usage.month"), cell: (p) => fmtPeriod(p) },
		...[...metrics.values()].map((m) => ({ label: label(m), cell: (p) =>
		    fmtDecimal(m.by[p] || "0", 0, 2), num: true })),
	], months, { rowHeader: true });
	return section(opts.title || t("usage.title"), h("div",
	    { class: "charts" }, charts), tbl);
}

// Exact sum of two decimal strings.
export function addDecimal(a, b) {
	const scale = (s) => (String(s).split(".")[1] || "").length;
	const n = Math.max(scale(a), scale(b));
	const big = (s) => {
		const [i, f = ""] = String(s).split(".");
		const neg = i.startsWith("-");
		const v = BigInt(i.replace("-", "") + f.padEnd(n, "0"));
		return neg ? -v : v;
	};
	const v = big(a) + big(b), neg = v < 0n, s = (neg ? -v : v).toString()
	    .padStart(n + 1, "0");
	return (neg ? "-" : "") + (n ? s.slice(0, -n) + "." + s.slice(-n) : s);
}

function statementsSection(page) {
	if (page instanceof Error)
		return section(t("statements.title"), errorBox(page));
	return section(t("statements.title"), table(t("statements.caption"), [
		{ label: t("statement.period"), cell: (s) => link(
		    "/finance/statements/" + s.id, fmtPeriod(s.period)) },
		{ label: t("statement.status"), cell: (s) => badge(s.status ===
		    "closed" ? "ok" : "info", t("statement.status." + s.status)) },
		{ label: t("statement.lines"), cell: (s) => fmtInt(s.lines),
		    num: true },
		{ label: t("statement.total"), cell: (s) => fmtMoney(s.total),
		    num: true },
	], page.items, { empty: t("statements.none") }));
}
