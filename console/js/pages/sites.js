// Websites: the list (a member's own for a member's administrator), add,
// suspend, reactivate and delete, each followed until its web backend has
// applied it.

import * as api from "../api.js";
import { h, fill, table, link, form, progress, errorBox, buttons, button,
    confirm, pager } from "../dom.js";
import { t, fmtBytes, parseSize } from "../i18n.js";
import { can, navigate, ownTenant } from "../app.js";
import { statusBadge } from "./members.js";
import { liveBadge, followLive } from "./mail.js";

const PAGE = 100;

export async function sitesPage(root, ctx) {
	const cursor = ctx.query.get("cursor") || "";
	const tenant = ctx.query.get("tenant") || "";
	const page = await api.get(api.url("/v1/sites", { tenant, cursor,
	    limit: PAGE }));
	const out = h("div", { class: "action-out" });
	const reload = () => navigate(location.pathname + location.search,
	    true);
	const base = (s) => "/v1/sites/" + api.seg(s.hostname);
	const act = async (s, verb) => {
		if (verb !== "activate" && !await confirm(t("site." + verb),
		    t("site.confirm_" + verb, { host: s.hostname }),
		    t("site." + verb)))
			return;
		const p = progress(t("site.doing_" + verb, { host: s.hostname }));
		fill(out, p.el);
		p.set(0, 0);
		try {
			if (verb === "delete") {
				await api.del(base(s));
				p.finish(t("site.deleted", { host: s.hostname }));
			} else {
				await api.post(base(s) + "/" + verb, {});
				await followLive(() => api.get(base(s)), p, s.hostname);
			}
			setTimeout(reload, 1500);
		} catch (err) {
			fill(out, errorBox(err));
		}
	};
	const sr = (s) => h("span", { class: "sr-only" }, " " + s.hostname);
	const parts = [ctx.title(t("sites.title")), out];
	if (can("POST", "/v1/sites"))
		parts.push(h("details", { class: "tool", open: tenant ? true :
		    null }, h("summary", t("site.add")), form({
			legend: t("site.add"),
			fields: [
				{ name: "hostname", label: t("site.hostname"), required:
				  true, hint: t("site.hostname_hint"), attrs:
				  { autocomplete: "off", spellcheck: "false" } },
				{ name: "aliases", label: t("site.aliases"), hint:
				  t("site.aliases_hint"), attrs: { autocomplete: "off" } },
				ownTenant() ? null : { name: "tenant", label:
				  t("mail.member"), required: true, value: tenant, hint:
				  t("mail.member_hint") },
				{ name: "quota", label: t("site.quota"), required: true,
				  value: "1G", hint: t("quota.size_hint") },
			].filter(Boolean),
			validate: (v) => parseSize(v.quota) ? null : { quota:
			    t("size.bad") },
			submit: t("site.add_submit"),
			async onsubmit(v, el, status) {
				const body = { hostname: v.hostname, quota_bytes:
				    parseSize(v.quota) };
				if (v.tenant)
					body.tenant = v.tenant;
				const aliases = v.aliases.split(/[\s,;]+/).filter(Boolean);
				if (aliases.length)
					body.aliases = aliases;
				const s = await api.post("/v1/sites", body);
				el.reset();
				const p = progress(t("box.applying", { address:
				    s.hostname }));
				fill(status, p.el);
				await followLive(() => api.get(base(s)), p, s.hostname);
				setTimeout(reload, 1500);
				return p.el;
			},
		})));
	parts.push(table(t("sites.title"), [
		{ label: t("site.hostname"), cell: (s) => s.hostname_unicode ||
		  s.hostname, rowHeader: true },
		{ label: t("site.aliases"), cell: (s) => (s.aliases || []).join(
		    ", ") || "–" },
		ownTenant() ? null : { label: t("mail.member"), cell: (s) =>
		    link("/members/" + encodeURIComponent(s.tenant), s.tenant) },
		{ label: t("mail.backend"), cell: (s) => s.backend },
		{ label: t("site.quota"), cell: (s) => `${fmtBytes(s.used_bytes)} / ` +
		    fmtBytes(s.quota_bytes) },
		{ label: t("site.status"), cell: (s) => statusBadge(s.status) },
		{ label: t("live.title"), cell: (s) => liveBadge(s.live) },
		{ label: t("list.actions"), cell: (s) => buttons(
			s.own_status === "active" && can("POST",
			    "/v1/sites/{hostname}/suspend") ? button([t("site.suspend"),
			    sr(s)], () => act(s, "suspend")) : null,
			s.own_status === "suspended" && can("POST",
			    "/v1/sites/{hostname}/activate") ? button(
			    [t("site.activate"), sr(s)], () => act(s, "activate")) :
			    null,
			can("DELETE", "/v1/sites/{hostname}") ? button(
			    [t("site.delete"), sr(s)], () => act(s, "delete"),
			    "danger") : null) },
	].filter(Boolean), page.items, { empty: t("sites.none") }));
	parts.push(pager("/sites", { tenant }, cursor, page.next_cursor));
	fill(root, ...parts);
}
