// Mail: domains with the DNS records to publish, mailboxes (add, reset a
// password, change a quota, suspend, delete, restore) and aliases. After
// each change the page follows the backend until it has applied it.

import * as api from "../api.js";
import { h, fill, table, section, badge, link, form, dl, dialog, confirm,
    errorBox, okBox, progress, buttons, button, announce, pager } from "../dom.js";
import { t, tOr, fmtInt, fmtBytes, fmtTime, fmtDay,
    parseSize } from "../i18n.js";
import { can, navigate, ownTenant } from "../app.js";
import { statusBadge } from "./members.js";
import { passwordFields, checkPasswords } from "../password.js";

const PAGE = 100;

// Where a change stands on its backend: applied, waiting, or failed with
// the backend's message.
export function liveBadge(live) {
	if (!live)
		return "–";
	if (live.state === "applied")
		return badge("ok", t("live.applied"));
	if (live.state === "error" || live.state === "failed")
		return h("span", badge("bad", t("live.error")), live.message ?
		    " " + live.message : "");
	return badge("info", tOr("live." + live.state, live.state));
}

// Poll get() until its "live" is applied (or failed), reporting on p.
// Resolves to the last object read.
export async function followLive(get, p, what, timeoutMs = 60000) {
	const start = Date.now();
	let o;
	for (;;) {
		o = await get();
		const s = o.live && o.live.state;
		if (s === "applied") {
			p.finish(t("live.done", { what }));
			announce(t("live.done", { what }));
			return o;
		}
		if (s === "error" || s === "failed")
			throw { code: "backend_error", message: t("live.failed",
			    { what, why: o.live.message || "?" }) };
		if (Date.now() - start > timeoutMs) {
			p.set(0, 0, t("live.slow", { what }));
			return o;
		}
		p.set(0, 0, t("live.waiting", { what, backend: o.backend ||
		    "?" }));
		await new Promise((r) => setTimeout(r, 400));
	}
}

function sizeCheck(name, required) {
	return (v) => (v[name] !== "" || required) && (parseSize(v[name]) ===
	    null || parseSize(v[name]) <= 0) ? { [name]: t("size.bad") } : null;
}

// ---- the list of domains ------------------------------------------------

export async function domainsPage(root, ctx) {
	const cursor = ctx.query.get("cursor") || "";
	const tenant = ctx.query.get("tenant") || "";
	const page = await api.get(api.url("/v1/mail/domains", { tenant, cursor,
	    limit: PAGE }));
	const parts = [ctx.title(t("mail.title"))];
	if (can("POST", "/v1/mail/domains"))
		parts.push(h("details", { class: "tool", open: tenant ? true :
		    null }, h("summary", t("mail.add_domain")), form({
			legend: t("mail.add_domain"),
			fields: [
				{ name: "name", label: t("mail.domain"), required: true,
				  hint: t("mail.domain_hint"), attrs: { autocomplete:
				  "off", spellcheck: "false" } },
				ownTenant() ? null : { name: "tenant", label:
				  t("mail.member"), required: true, value: tenant, hint:
				  t("mail.member_hint") },
				{ name: "quota", label: t("mail.quota"), required: true,
				  value: "10G", hint: t("quota.size_hint") },
			].filter(Boolean),
			validate: sizeCheck("quota", true),
			submit: t("mail.add_domain_submit"),
			async onsubmit(v) {
				const body = { name: v.name, quota_bytes:
				    parseSize(v.quota) };
				if (v.tenant)
					body.tenant = v.tenant;
				const d = await api.post("/v1/mail/domains", body);
				navigate("/mail/" + encodeURIComponent(d.name));
				return false;
			},
		})));
	parts.push(table(t("mail.domains"), [
		{ label: t("mail.domain"), cell: (d) => link("/mail/" +
		    encodeURIComponent(d.name), d.name_unicode || d.name) },
		ownTenant() ? null : { label: t("mail.member"), cell: (d) =>
		    link("/members/" + encodeURIComponent(d.tenant), d.tenant) },
		{ label: t("mail.backend"), cell: (d) => d.backend },
		{ label: t("mail.mailboxes"), cell: (d) => fmtInt(d.mailboxes),
		  num: true },
		{ label: t("mail.quota"), cell: (d) => `${fmtBytes(
		    d.allocated_bytes)} / ${fmtBytes(d.quota_bytes)}` },
		{ label: t("live.title"), cell: (d) => liveBadge(d.live) },
	].filter(Boolean), page.items, { empty: t("mail.no_domains") }));
	parts.push(pager("/mail", { tenant }, cursor, page.next_cursor));
	fill(root, ...parts);
}

// ---- one domain ---------------------------------------------------------

export async function domainPage(root, ctx) {
	const name = ctx.params[0];
	const [d, dns, boxes, aliases] = await Promise.all([
		api.get("/v1/mail/domains/" + api.seg(name)),
		api.get("/v1/mail/domains/" + api.seg(name) + "/dns").catch(
		    (e) => e),
		api.all("/v1/mail/mailboxes", { domain: name }),
		api.all("/v1/mail/aliases", { domain: name }),
	]);
	const reload = () => navigate(location.pathname + location.search,
	    true);
	const parts = [ctx.title(d.name_unicode || d.name, t("mail.domain")),
	    dl([
		[t("mail.member"), ownTenant() ? ownTenant().name :
		    link("/members/" + encodeURIComponent(d.tenant), d.tenant)],
		[t("mail.backend"), d.backend],
		[t("mail.quota"), `${fmtBytes(d.allocated_bytes)} / ${fmtBytes(
		    d.quota_bytes)}`],
		[t("mail.mailboxes"), fmtInt(d.mailboxes)],
		[t("mail.aliases"), fmtInt(d.aliases)],
		[t("live.title"), liveBadge(d.live)],
		[t("mail.created"), fmtTime(d.created_at)],
	])];
	const out = h("div", { class: "action-out" });
	parts.push(out);
	if (can("DELETE", "/v1/mail/domains/{name}") && !d.mailboxes)
		parts.push(buttons(button(t("mail.delete_domain"), async () => {
			if (!await confirm(t("mail.delete_domain"),
			    t("mail.delete_domain_q", { name: d.name }),
			    t("mail.delete_domain")))
				return;
			try {
				await api.del("/v1/mail/domains/" + api.seg(d.name));
				navigate("/mail");
			} catch (err) {
				fill(out, errorBox(err));
			}
		}, "danger")));
	parts.push(boxesSection(d, boxes, out, reload));
	parts.push(aliasesSection(d, aliases, out, reload));
	parts.push(dnsSection(dns));
	fill(root, ...parts);
}

// What a record is for, in the console's language.
function dnsPurpose(r) {
	const kind = r.type === "MX" ? "mx" : /^v=spf1/.test(r.value) ? "spf" :
	    /\._domainkey\./.test(r.name) ? "dkim" : /^_dmarc\./.test(r.name) ?
	    "dmarc" : null;
	return kind ? t("dns.purpose." + kind) : r.purpose;
}

function dnsSection(dns) {
	if (dns instanceof Error)
		return section(t("dns.title"), errorBox(dns));
	const zoneId = "zone-text";
	const copy = button(t("dns.copy"), async () => {
		try {
			await navigator.clipboard.writeText(dns.zone);
			announce(t("dns.copied"));
		} catch (e) {
			const sel = window.getSelection();
			sel.selectAllChildren(document.getElementById(zoneId));
		}
	});
	return section(t("dns.title"), h("p", t("dns.intro")),
	    table(t("dns.caption"), [
		{ label: t("dns.name"), cell: (r) => h("code", r.name) },
		{ label: t("dns.type"), cell: (r) => r.type },
		{ label: t("dns.value"), cell: (r) => h("code", { class: "wrap" },
		    r.value) },
		{ label: t("dns.purpose"), cell: dnsPurpose },
	], dns.records), h("h3", t("dns.zone")), h("pre", { id: zoneId,
	    class: "zone", tabindex: "0", "aria-label": t("dns.zone") },
	    dns.zone), copy);
}

function boxesSection(d, boxes, out, reload) {
	const base = "/v1/mail/mailboxes/";
	const mayWrite = (m, p) => can(m, "/v1/mail/mailboxes/{address}" + p);
	const srAddr = (b) => h("span", { class: "sr-only" }, " " + b.address);
	const actions = (b) => buttons(
		b.status !== "deleted" && mayWrite("POST", "/password") ?
		    button([t("box.reset"), srAddr(b)], () => passwordDialog(b,
		    out)) : null,
		b.status !== "deleted" && mayWrite("PATCH", "") ?
		    button([t("box.quota"), srAddr(b)], () => quotaDialog(b, d,
		    out)) : null,
		b.own_status === "active" && mayWrite("POST", "/suspend") ?
		    button([t("box.suspend"), srAddr(b)], () => boxAction(b,
		    "suspend", out)) : null,
		b.own_status === "suspended" && mayWrite("POST", "/activate") ?
		    button([t("box.activate"), srAddr(b)], () => boxAction(b,
		    "activate", out)) : null,
		b.status !== "deleted" && mayWrite("DELETE", "") ?
		    button([t("box.delete"), srAddr(b)], () => boxAction(b,
		    "delete", out), "danger") : null,
		b.status === "deleted" && mayWrite("POST", "/restore") ?
		    button([t("box.restore"), srAddr(b)], () => boxAction(b,
		    "restore", out)) : null,
	);
	const parts = [table(t("box.caption", { domain: d.name }), [
		{ label: t("box.address"), cell: (b) => b.address, rowHeader:
		  true },
		{ label: t("box.name"), cell: (b) => b.name || "–" },
		{ label: t("box.used"), cell: (b) => `${fmtBytes(b.used_bytes)} / ` +
		    fmtBytes(b.quota_bytes) },
		{ label: t("box.status"), cell: (b) => b.status === "deleted" ?
		    h("span", badge("muted", t("status.deleted")), " ",
		    t("box.purge", { date: fmtDay((b.purge_after || "")
		    .slice(0, 10)) })) : statusBadge(b.status) },
		{ label: t("live.title"), cell: (b) => liveBadge(b.live) },
		{ label: t("list.actions"), cell: actions },
	], boxes, { empty: t("box.none") })];
	if (can("POST", "/v1/mail/mailboxes")) {
		const suffix = "@" + d.name;
		const f = form({
			legend: t("box.add"),
			fields: [
				{ name: "local", label: t("box.local"), required: true,
				  hint: t("box.local_hint", { suffix }), attrs:
				  { autocomplete: "off", spellcheck: "false",
				  autocapitalize: "none" } },
				{ name: "name", label: t("box.name"), attrs:
				  { autocomplete: "off" } },
				{ name: "quota", label: t("box.quota_field"), value:
				  "1G", required: true, hint: t("quota.size_hint") },
				...passwordFields("box.password", "box.password_confirm"),
			],
			validate: (v) => Object.assign({}, sizeCheck("quota", true)(
			    v), checkPasswords(v), /@/.test(v.local) ? { local:
			    t("box.local_at", { suffix }) } : null),
			submit: t("box.add_submit"),
			async onsubmit(v, el, status) {
				const address = v.local + suffix;
				const body = { address, quota_bytes: parseSize(v.quota),
				    password: v.password };
				if (v.name)
					body.name = v.name;
				await api.post("/v1/mail/mailboxes", body);
				el.reset();
				const p = progress(t("box.applying", { address }));
				fill(status, p.el);
				await followLive(() => api.get(base + api.seg(address)),
				    p, address);
				setTimeout(reload, 1500);
				return p.el;
			},
		});
		parts.push(h("details", { class: "tool" }, h("summary",
		    t("box.add")), f));
	}
	return section(t("mail.mailboxes"), ...parts);
}

async function boxAction(b, verb, out) {
	const base = "/v1/mail/mailboxes/" + api.seg(b.address);
	if ((verb === "delete" || verb === "suspend") && !await confirm(
	    t("box." + verb), t("box.confirm_" + verb, { address: b.address }),
	    t("box." + verb)))
		return;
	const p = progress(t("box.doing_" + verb, { address: b.address }));
	fill(out, p.el);
	p.set(0, 0);
	try {
		const hdr = { headers: { "If-Match": `"${b.version}"` } };
		if (verb === "delete")
			await api.del(base, hdr);
		else
			await api.post(base + "/" + verb, {}, hdr);
		await followLive(() => api.get(base), p, b.address);
		setTimeout(() => navigate(location.pathname, true), 1500);
	} catch (err) {
		fill(out, errorBox(err));
	}
}

function passwordDialog(b, out) {
	dialog(t("box.reset_title", { address: b.address }), (close) => form({
		label: t("box.reset_title", { address: b.address }),
		fields: passwordFields("box.password", "box.password_confirm"),
		validate: checkPasswords,
		submit: t("box.reset_submit"),
		async onsubmit(v) {
			const base = "/v1/mail/mailboxes/" + api.seg(b.address);
			await api.post(base + "/password", { password: v.password });
			close();
			const p = progress(t("box.applying_password",
			    { address: b.address }));
			fill(out, p.el);
			try {
				await followLive(() => api.get(base), p, b.address);
				out.append(okBox(t("box.password_done",
				    { address: b.address })));
			} catch (err) {
				out.append(errorBox(err));
			}
			return false;
		},
	}));
}

function quotaDialog(b, d, out) {
	dialog(t("box.quota_title", { address: b.address }), (close) => form({
		label: t("box.quota_title", { address: b.address }),
		fields: [{ name: "quota", label: t("box.quota_field"), required:
		    true, value: fmtBytes(b.quota_bytes).replace(/\u00a0/g, " "),
		    hint: t("box.quota_hint", { left: fmtBytes(d.quota_bytes -
		    d.allocated_bytes + b.quota_bytes) }) }],
		validate: sizeCheck("quota", true),
		submit: t("box.quota_submit"),
		async onsubmit(v) {
			const base = "/v1/mail/mailboxes/" + api.seg(b.address);
			await api.patch(base, { quota_bytes: parseSize(v.quota) },
			    { headers: { "If-Match": `"${b.version}"` } });
			close();
			const p = progress(t("box.applying", { address: b.address }));
			fill(out, p.el);
			try {
				await followLive(() => api.get(base), p, b.address);
				setTimeout(() => navigate(location.pathname, true), 1500);
			} catch (err) {
				out.append(errorBox(err));
			}
			return false;
		},
	}));
}

function aliasesSection(d, aliases, out, reload) {
	const parts = [table(t("alias.caption", { domain: d.name }), [
		{ label: t("alias.address"), cell: (a) => a.catch_all ?
		    t("alias.catch_all", { domain: d.name }) : a.address,
		  rowHeader: true },
		{ label: t("alias.targets"), cell: (a) => a.targets.join(", ") },
		{ label: t("live.title"), cell: (a) => liveBadge(a.live) },
		{ label: t("list.actions"), cell: (a) => can("DELETE",
		    "/v1/mail/aliases/{address}") ? button([t("alias.delete"),
		    h("span", { class: "sr-only" }, " " + a.address)], async () => {
			if (!await confirm(t("alias.delete"), t("alias.confirm",
			    { address: a.address }), t("alias.delete")))
				return;
			try {
				await api.del("/v1/mail/aliases/" + api.seg(a.address));
				reload();
			} catch (err) {
				fill(out, errorBox(err));
			}
		}, "danger") : "–" },
	], aliases, { empty: t("alias.none") })];
	if (can("POST", "/v1/mail/aliases")) {
		const suffix = "@" + d.name;
		parts.push(h("details", { class: "tool" }, h("summary",
		    t("alias.add")), form({
			legend: t("alias.add"),
			fields: [
				{ name: "local", label: t("alias.local"), hint:
				  t("alias.local_hint", { suffix }), attrs:
				  { autocomplete: "off", spellcheck: "false" } },
				{ name: "targets", label: t("alias.targets"), type:
				  "textarea", required: true, hint:
				  t("alias.targets_hint") },
			],
			submit: t("alias.add_submit"),
			async onsubmit(v, el, status) {
				const address = (v.local || "") + suffix;
				const targets = v.targets.split(/[\s,;]+/).filter(Boolean);
				await api.post("/v1/mail/aliases", { address, targets });
				el.reset();
				const p = progress(t("box.applying", { address }));
				fill(status, p.el);
				await followLive(() => api.get("/v1/mail/aliases/" +
				    api.seg(address)), p, address);
				setTimeout(reload, 1500);
				return p.el;
			},
		})));
	}
	return section(t("mail.aliases"), ...parts);
}
