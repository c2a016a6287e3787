// Console accounts (administrators only): add an account with the same
// roles and member scopes as API tokens, hand its one-time link to its
// owner, reset a forgotten password or a lost second factor, disable.

import * as api from "../api.js";
import { h, fill, table, form, errorBox, buttons, button, confirm, badge,
    okBox } from "../dom.js";
import { t, tOr, fmtTime } from "../i18n.js";
import { can, navigate } from "../app.js";

const ROLES = ["admin", "operator", "finance", "auditor"];

// The link to hand over: its token is in the fragment, never sent to a
// server or written in a log.
function setupLink(doc) {
	const url = location.origin + "/setup#token=" + encodeURIComponent(
	    doc.setup_token);
	return h("div", { class: "ok" }, h("p", t("users.link", { user:
	    doc.name, until: fmtTime(doc.setup_expires_at) })), h("pre",
	    { class: "secret", tabindex: "0", "aria-label": t("users.link_label"),
	    "data-setup-url": url }, url));
}

export async function usersPage(root, ctx) {
	const users = await api.all("/v1/users");
	const out = h("div", { class: "action-out" });
	const reload = () => navigate(location.pathname, true);
	const sr = (u) => h("span", { class: "sr-only" }, " " + u.name);
	const act = (u, verb, method, path, ask) => can(method,
	    "/v1/users/{name}" + path) ? button([t("users." + verb), sr(u)],
	    async () => {
		if (ask && !await confirm(t("users." + verb), t("users.confirm_" +
		    verb, { user: u.name }), t("users." + verb)))
			return;
		try {
			const url = "/v1/users/" + api.seg(u.name) + path;
			const r = method === "DELETE" ? await api.del(url) :
			    await api.post(url, {});
			fill(out, r && r.setup_token ? setupLink(r) : okBox(
			    t("users.done_" + verb, { user: u.name })));
			if (!(r && r.setup_token))
				setTimeout(reload, 1500);
		} catch (err) {
			fill(out, errorBox(err));
		}
	}, ask ? "danger" : "secondary") : null;
	const parts = [ctx.title(t("users.title"))];
	if (can("POST", "/v1/users"))
		parts.push(h("details", { class: "tool" }, h("summary",
		    t("users.add")), form({
			legend: t("users.add"),
			fields: [
				{ name: "name", label: t("users.name"), required: true,
				  hint: t("users.name_hint"), attrs: { autocomplete: "off",
				  spellcheck: "false", autocapitalize: "none" } },
				{ name: "role", label: t("users.role"), type: "select",
				  options: ROLES.map((r) => [r, t("role." + r)]) },
				{ name: "tenant", label: t("users.tenant"), hint:
				  t("users.tenant_hint") },
				{ name: "email", label: t("users.email"), type: "email",
				  attrs: { autocomplete: "off" } },
			],
			submit: t("users.add_submit"),
			async onsubmit(v) {
				const body = { name: v.name, role: v.role };
				if (v.tenant)
					body.tenant = v.tenant;
				if (v.email)
					body.email = v.email;
				const r = await api.post("/v1/users", body);
				return setupLink(r);
			},
		})));
	parts.push(out, table(t("users.title"), [
		{ label: t("users.name"), cell: (u) => u.name, rowHeader: true },
		{ label: t("users.role"), cell: (u) => t("role." + u.role) },
		{ label: t("users.tenant"), cell: (u) => u.tenant ? u.tenant.name :
		    t("users.all_members") },
		{ label: t("users.status"), cell: (u) => badge({ active: "ok",
		    pending: "info", disabled: "muted" }[u.status] || "info",
		    tOr("users.status." + u.status, u.status)) },
		{ label: t("users.totp"), cell: (u) => u.totp ? t("yes") : t("no") },
		{ label: t("users.last_login"), cell: (u) => fmtTime(
		    u.last_login_at) },
		{ label: t("list.actions"), cell: (u) => buttons(
			act(u, "reset", "POST", "/reset"),
			u.totp ? act(u, "totp_reset", "DELETE", "/totp", true) : null,
			u.status !== "disabled" ? act(u, "disable", "POST",
			    "/disable", true) : act(u, "enable", "POST", "/enable")) },
	], users, { empty: t("users.none") }));
	fill(root, ...parts);
}
