// Finance: usage per member and per month (charts and tables), billing
// periods (generate, close, export, download), statements with their
// lines, and adjustments with their reasons.

import * as api from "../api.js";
import { h, fill, table, link, form, dl, progress, errorBox, okBox,
    buttons, button, confirm, section, badge, announce, pager } from "../dom.js";
import { t, tOr, fmtInt, fmtMoney, fmtTime, fmtDay, fmtPeriod, fmtDecimal,
    fmtDuration, periodOf, addMonths, parseAmount } from "../i18n.js";
import { can, navigate } from "../app.js";
import { usageSection, addDecimal } from "./members.js";

const MAX_ROWS = 500;

function tabs(here) {
	const items = [
		["/finance", "fin.usage", () => can("GET", "/v1/usage")],
		["/finance/periods", "fin.periods", () => can("GET",
		    "/v1/billing-periods")],
		["/finance/statements", "fin.statements", () => can("GET",
		    "/v1/statements")],
		["/finance/adjustments", "fin.adjustments", () => can("GET",
		    "/v1/adjustments")],
	];
	return h("nav", { class: "tabs", "aria-label": t("fin.sections") },
	    h("ul", items.filter((i) => i[2]()).map(([href, key]) => h("li",
	    h("a", { href, "aria-current": href === here ? "page" : null },
	    t(key))))));
}

function statusBadge(s) {
	return badge(s === "closed" ? "ok" : "info", tOr("statement.status." + s,
	    s));
}

// ---- usage --------------------------------------------------------------

export async function usagePage(root, ctx) {
	const now = periodOf(new Date());
	const from = ctx.query.get("from") || addMonths(now, -5);
	const to = ctx.query.get("to") || now;
	const tenant = ctx.query.get("tenant") || "";
	const q = { from: from + "-01", to: addMonths(to, 1) + "-01", group:
	    "month", tenant };
	const filter = form({
		label: t("fin.usage_filter"),
		class: "inline",
		fields: [
			{ name: "from", label: t("fin.from"), type: "month", value: from,
			  required: true },
			{ name: "to", label: t("fin.to"), type: "month", value: to,
			  required: true },
			{ name: "tenant", label: t("fin.member"), value: tenant, hint:
			  t("fin.member_hint") },
		],
		validate: (v) => v.from > v.to ? { to: t("fin.bad_range") } : null,
		submit: t("fin.show"),
		async onsubmit(v) {
			navigate(api.url("/finance", v));
			return false;
		},
	});
	const usage = await api.get(api.url("/v1/usage", q));
	// One row per member and metric, one column per month.
	const months = [];
	const rows = new Map();
	for (const it of usage.items) {
		if (!months.includes(it.period))
			months.push(it.period);
		const k = it.tenant + "|" + it.kind + "." + it.metric;
		if (!rows.has(k))
			rows.set(k, { tenant: it.tenant, name: it.tenant_name, metric:
			    it.kind + "." + it.metric, unit: it.display_unit, by: {} });
		const r = rows.get(k);
		r.by[it.period] = addDecimal(r.by[it.period] || "0",
		    it.display_quantity);
	}
	months.sort();
	const all = [...rows.values()].sort((a, b) => a.name.localeCompare(
	    b.name, "fr") || a.metric.localeCompare(b.metric));
	const shown = all.slice(0, MAX_ROWS);
	const dl1 = button(t("fin.csv"), () => api.download(api.url(
	    "/v1/usage", Object.assign({}, q, { format: "csv" })),
	    `consommation-${from}-${to}.csv`).catch((e) => out.append(
	    errorBox(e))));
	const dl2 = button(t("fin.json"), () => api.download(api.url(
	    "/v1/usage", q), `consommation-${from}-${to}.json`).catch((e) =>
	    out.append(errorBox(e))));
	const out = h("div");
	fill(root, ctx.title(t("fin.usage_title")), tabs("/finance"), filter,
	    usageSection(usage, { title: t("fin.totals"), caption:
	    t("fin.totals_caption") }),
	    section(t("fin.by_member"), all.length > MAX_ROWS ? h("p",
	    { class: "info" }, t("fin.truncated", { n: fmtInt(MAX_ROWS), all:
	    fmtInt(all.length) })) : null, table(t("fin.by_member_caption"), [
		{ label: t("fin.member"), cell: (r) => link("/members/" + r.tenant,
		    r.name), rowHeader: true },
		{ label: t("fin.metric"), cell: (r) => `${tOr("metric." + r.metric,
		    r.metric)} (${tOr("unit." + r.unit, r.unit)})` },
		...months.map((p) => ({ label: fmtPeriod(p, true), cell: (r) =>
		    fmtDecimal(r.by[p] || "0", 0, 2), num: true })),
	], shown, { empty: t("usage.none") }), buttons(dl1, dl2), out));
}

// ---- periods ------------------------------------------------------------

export async function periodsPage(root, ctx) {
	const periods = await api.all("/v1/billing-periods");
	periods.sort((a, b) => b.period.localeCompare(a.period));
	const out = h("div", { class: "action-out" });
	const reload = () => navigate(location.pathname, true);
	const write = can("POST", "/v1/statements/generate");
	const exportBtn = (p, fmt, summary) => button([t(summary ?
	    "fin.export_summary" : "fin.export_" + fmt), h("span",
	    { class: "sr-only" }, " " + fmtPeriod(p.period))], async () => {
		const name = `releves-${p.period}${summary ? "-resume" : ""}.${fmt}`;
		try {
			const size = await api.download(api.url("/v1/statements",
			    { period: p.period, format: fmt, summary: summary ? 1 :
			    null }), name);
			fill(out, okBox(t("fin.downloaded", { name, size:
			    fmtInt(size) })));
		} catch (err) {
			fill(out, errorBox(err));
		}
	});
	const gen = (period, again) => async () => {
		if (again && !await confirm(t("fin.regenerate"),
		    t("fin.confirm_regenerate", { period: fmtPeriod(period) }),
		    t("fin.regenerate"), false))
			return;
		await generate(period, out);
		setTimeout(reload, 2500);
	};
	const close = (p) => async () => {
		if (!await confirm(t("fin.close"), t("fin.confirm_close",
		    { period: fmtPeriod(p.period), n: fmtInt(p.statements),
		    total: fmtMoney(p.total) }), t("fin.close")))
			return;
		try {
			const r = await api.post("/v1/statements/close", { period:
			    p.period });
			fill(out, okBox(t("fin.closed", { period: fmtPeriod(r.period),
			    n: fmtInt(r.statements) })));
			setTimeout(reload, 2500);
		} catch (err) {
			fill(out, errorBox(err));
		}
	};
	const parts = [ctx.title(t("fin.periods_title")), tabs(
	    "/finance/periods")];
	if (write)
		parts.push(form({
			legend: t("fin.generate"),
			class: "inline",
			fields: [{ name: "period", label: t("fin.period"), type:
			    "month", required: true, value: addMonths(periodOf(
			    new Date()), -1), hint: t("fin.period_hint") }],
			submit: t("fin.generate_submit"),
			async onsubmit(v) {
				await generate(v.period, out);
				setTimeout(reload, 2500);
				return false;
			},
		}));
	parts.push(out, table(t("fin.periods_caption"), [
		{ label: t("fin.period"), cell: (p) => link(
		    "/finance/statements?period=" + p.period, fmtPeriod(p.period)),
		  rowHeader: true },
		{ label: t("statement.status"), cell: (p) => statusBadge(
		    p.status) },
		{ label: t("fin.statements_n"), cell: (p) => fmtInt(p.statements),
		  num: true },
		{ label: t("statement.total"), cell: (p) => fmtMoney(p.total),
		  num: true },
		{ label: t("fin.generated"), cell: (p) => fmtTime(
		    p.generated_at) },
		{ label: t("fin.closed_at"), cell: (p) => fmtTime(p.closed_at) },
		{ label: t("list.actions"), cell: (p) => buttons(
			write && p.status === "draft" ? button([t("fin.regenerate"),
			    h("span", { class: "sr-only" }, " " +
			    fmtPeriod(p.period))], gen(p.period, true)) : null,
			write && p.status === "draft" && can("POST",
			    "/v1/statements/close") ? button([t("fin.close"),
			    h("span", { class: "sr-only" }, " " +
			    fmtPeriod(p.period))], close(p), "danger") : null,
			exportBtn(p, "csv"), exportBtn(p, "json"),
			exportBtn(p, "csv", true)) },
	], periods, { empty: t("fin.no_periods") }));
	fill(root, ...parts);
}

// Statement generation takes seconds for a whole département: say so
// while it runs, with the time spent.
async function generate(period, out) {
	const p = progress(t("fin.generating", { period: fmtPeriod(period) }));
	fill(out, p.el);
	const t0 = Date.now();
	p.set(0, 0, t("fin.generating_for", { s: "0" }));
	const timer = setInterval(() => p.set(0, 0, t("fin.generating_for",
	    { s: fmtInt((Date.now() - t0) / 1000) })), 1000);
	try {
		const r = await api.post("/v1/statements/generate", { period });
		clearInterval(timer);
		p.finish(t("fin.generated_ok", { period: fmtPeriod(r.period),
		    n: fmtInt(r.statements), lines: fmtInt(r.lines), total:
		    fmtMoney(r.total), time: fmtDuration((Date.now() - t0) /
		    1000) }));
		announce(t("fin.generated_ok", { period: fmtPeriod(r.period),
		    n: fmtInt(r.statements), lines: fmtInt(r.lines), total:
		    fmtMoney(r.total), time: "" }));
		return r;
	} catch (err) {
		clearInterval(timer);
		fill(out, errorBox(err));
		return null;
	}
}

// ---- statements ---------------------------------------------------------

export async function statementsPage(root, ctx) {
	const period = ctx.query.get("period") || "";
	const cursor = ctx.query.get("cursor") || "";
	const tenant = ctx.query.get("tenant") || "";
	const page = await api.get(api.url("/v1/statements", { period, tenant,
	    cursor, limit: 100 }));
	const filter = form({
		label: t("fin.statements_filter"),
		class: "inline",
		fields: [
			{ name: "period", label: t("fin.period"), type: "month", value:
			  period },
			{ name: "tenant", label: t("fin.member"), value: tenant, hint:
			  t("fin.member_hint") },
		],
		submit: t("fin.show"),
		async onsubmit(v) {
			navigate(api.url("/finance/statements", v));
			return false;
		},
	});
	fill(root, ctx.title(t("fin.statements_title"), period ?
	    fmtPeriod(period) : null), tabs("/finance/statements"), filter,
	    table(t("fin.statements_caption"), [
		{ label: t("fin.member"), cell: (s) => link("/finance/statements/" +
		    s.id, s.member), rowHeader: true },
		{ label: t("member.insee"), cell: (s) => s.insee || "–" },
		{ label: t("statement.period"), cell: (s) => fmtPeriod(s.period) },
		{ label: t("statement.status"), cell: (s) => statusBadge(
		    s.status) },
		{ label: t("statement.lines"), cell: (s) => fmtInt(s.lines),
		  num: true },
		{ label: t("statement.total"), cell: (s) => fmtMoney(s.total),
		  num: true },
	], page.items, { empty: t("statements.none") }),
	    pager("/finance/statements", { period, tenant }, cursor,
	    page.next_cursor));
}

export async function statementPage(root, ctx) {
	const s = await api.get("/v1/statements/" + api.seg(ctx.params[0]));
	const out = h("div");
	fill(root, ctx.title(t("statement.title", { member: s.member.name }),
	    fmtPeriod(s.period)), can("GET", "/v1/billing-periods") ?
	    tabs("") : null, dl([
		[t("fin.member"), link("/members/" + encodeURIComponent(
		    s.member.insee || s.member.siren || s.member.id),
		    s.member.name)],
		[t("statement.period"), `${fmtPeriod(s.period)} (${fmtDay(s.from)} ` +
		    `– ${fmtDay(s.to)})`],
		[t("statement.status"), statusBadge(s.status)],
		[t("statement.total"), h("strong", fmtMoney(s.total))],
		[t("fin.generated"), fmtTime(s.generated_at)],
		s.closed_at ? [t("fin.closed_at"), fmtTime(s.closed_at)] : null,
		[t("statement.checksum"), h("code", { class: "wrap" },
		    s.checksum)],
	]), table(t("statement.lines_caption"), [
		{ label: t("line.label"), cell: (l) => [lineLabel(l), l.reason ?
		    h("span", { class: "small" }, " — " + l.reason) : null],
		  rowHeader: true },
		{ label: t("line.quantity"), cell: (l) => fmtDecimal(l.quantity,
		    0, 4), num: true },
		{ label: t("line.unit"), cell: (l) => tOr("unit." + l.unit,
		    l.unit) },
		{ label: t("line.price"), cell: (l) => l.unit_price === null ||
		    l.unit_price === undefined ? "–" : fmtDecimal(l.unit_price, 2,
		    6) + "\u00a0€", num: true },
		{ label: t("line.amount"), cell: (l) => fmtMoney(l.amount),
		  num: true },
	], s.lines), h("p", { class: "total" }, t("statement.total_line"),
	    h("strong", fmtMoney(s.total))), buttons(button(t("fin.json"),
	    () => api.download("/v1/statements/" + s.id, `releve-${s.period}-` +
	    `${s.member.insee || s.member.id}.json`).catch((e) => fill(out,
	    errorBox(e))))), out);
}

// A statement line's label in the console's language; the API's own
// (English) label when the console does not know the line.
export function lineLabel(l) {
	if (l.type === "fee" && l.band)
		return t("line.fee", { band: l.band });
	const m = /(\d+) inhabitants, (\d+) of (\d+) days/.exec(l.label || "");
	if (l.type === "contribution" && m)
		return t("line.contribution", { pop: fmtInt(m[1]), days: m[2],
		    of: m[3] });
	if (l.type === "adjustment")
		return t("line.adjustment");
	return tOr("line." + l.metric, l.label);
}

// ---- adjustments --------------------------------------------------------

export async function adjustmentsPage(root, ctx) {
	const tenant = ctx.query.get("tenant") || "";
	const items = await api.all("/v1/adjustments", { tenant });
	const parts = [ctx.title(t("fin.adjustments_title")),
	    tabs("/finance/adjustments")];
	if (can("POST", "/v1/adjustments"))
		parts.push(form({
			legend: t("adj.add"),
			fields: [
				{ name: "tenant", label: t("fin.member"), required: true,
				  value: tenant, hint: t("fin.member_hint") },
				{ name: "amount", label: t("adj.amount"), required: true,
				  hint: t("adj.amount_hint"), attrs: { inputmode:
				  "decimal", autocomplete: "off" } },
				{ name: "reason", label: t("adj.reason"), required: true,
				  type: "textarea", hint: t("adj.reason_hint") },
				{ name: "period", label: t("adj.corrects"), type: "month",
				  hint: t("adj.corrects_hint") },
			],
			validate: (v) => parseAmount(v.amount) === null ? { amount:
			    t("adj.bad_amount") } : null,
			submit: t("adj.submit"),
			reset: true,
			async onsubmit(v) {
				const body = { tenant: v.tenant, amount:
				    parseAmount(v.amount), reason: v.reason };
				if (v.period)
					body.period = v.period;
				const a = await api.post("/v1/adjustments", body);
				setTimeout(() => navigate(location.pathname +
				    location.search, true), 2000);
				return t("adj.added", { amount: fmtMoney(a.amount), name:
				    a.tenant.name, period: a.statement_period ?
				    fmtPeriod(a.statement_period) : t("adj.next") });
			},
		}));
	parts.push(table(t("adj.caption"), [
		{ label: t("adj.date"), cell: (a) => fmtTime(a.created_at) },
		{ label: t("fin.member"), cell: (a) => link("/members/" +
		    encodeURIComponent(a.tenant.insee || a.tenant.siren ||
		    a.tenant.id), a.tenant.name), rowHeader: true },
		{ label: t("adj.amount"), cell: (a) => fmtMoney(a.amount),
		  num: true },
		{ label: t("adj.reason"), cell: (a) => a.reason },
		{ label: t("adj.corrects"), cell: (a) => a.corrects_period ?
		    fmtPeriod(a.corrects_period) : "–" },
		{ label: t("adj.statement"), cell: (a) => a.statement ? link(
		    "/finance/statements/" + a.statement, fmtPeriod(
		    a.statement_period)) : t("adj.pending") },
		{ label: t("adj.by"), cell: (a) => a.created_by },
	], items.sort((a, b) => b.id - a.id), { empty: t("adj.none") }));
	fill(root, ...parts);
}
