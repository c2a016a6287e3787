// Signing in, setting a password from a one-time link, and the account
// page (password change, second factor).

import * as api from "../api.js";
import { h, fill, form, field, dl, section, errorBox, okBox,
    link } from "../dom.js";
import { t, fmtTime, fmtDuration } from "../i18n.js";
import { passwordFields, checkPasswords } from "../password.js";
import { signedIn, refreshSession, session, home } from "../app.js";

export async function loginPage(root, ctx) {
	const next = ctx.query.get("next");
	const intro = [];
	if (ctx.query.get("expired"))
		intro.push(h("p", { class: "info" }, t("login.expired")));
	const totp = field({ name: "totp", label: t("login.totp"), hint:
	    t("login.totp_hint"), attrs: { autocomplete: "one-time-code",
	    inputmode: "numeric", pattern: "[0-9]{6}", maxlength: "6" } });
	totp.wrap.hidden = true;
	const f = form({
		label: t("login.title"),
		fields: [
			{ name: "user", label: t("login.user"), required: true,
			  attrs: { autocomplete: "username", autocapitalize: "none",
			  spellcheck: "false" } },
			{ name: "password", label: t("login.password"), type:
			  "password", required: true, attrs: { autocomplete:
			  "current-password" } },
			totp,
		],
		submit: t("login.submit"),
		busy: t("login.busy"),
		async onsubmit(v) {
			const body = { user: v.user, password: v.password };
			if (!totp.wrap.hidden && v.totp)
				body.totp = v.totp;
			let doc;
			try {
				doc = await api.post("/v1/session", body,
				    { anonymous: true });
			} catch (err) {
				if (err.code === "totp_required" && totp.wrap.hidden) {
					totp.wrap.hidden = false;
					totp.input.required = true;
					totp.input.focus();
					return h("p", { class: "info", role: "status" },
					    t("login.totp_needed"));
				}
				f.fields.password.value = "";
				throw err;
			}
			signedIn(doc, next);
			return false;
		},
	});
	fill(root, ctx.title(t("login.title")), ...intro, f);
}

// The page a one-time link opens: /setup#token=... (the token is in the
// fragment, which the browser never sends to any server).
export async function setupPage(root, ctx) {
	const token = new URLSearchParams(location.hash.slice(1)).get("token");
	if (!token) {
		fill(root, ctx.title(t("setup.title")), errorBox({ message:
		    t("setup.no_token") }));
		return;
	}
	const f = form({
		label: t("setup.title"),
		fields: passwordFields(),
		validate: checkPasswords,
		submit: t("setup.submit"),
		async onsubmit(v) {
			const doc = await api.post("/v1/password-setup", { token,
			    password: v.password }, { anonymous: true });
			history.replaceState(null, "", "/setup");
			f.replaceWith(okBox(t("setup.done", { user: doc && doc.user ?
			    doc.user : "" })), h("p", link("/login", t("setup.login"))));
			return false;
		},
	});
	fill(root, ctx.title(t("setup.title")), h("p", t("setup.intro")), f);
}

export async function accountPage(root, ctx) {
	const s = session();
	const parts = [ctx.title(t("account.title"))];
	if (s.totp && s.totp.must_enrol)
		parts.push(h("p", { class: "warn", role: "alert" },
		    t("account.must_enrol")));
	parts.push(dl([
		[t("account.user"), s.user],
		[t("account.role"), t("role." + s.role)],
		s.tenant ? [t("account.member"), s.tenant.name] : null,
		s.email ? [t("account.email"), s.email] : null,
		[t("account.expires"), fmtTime(s.expires_at)],
		[t("account.idle"), fmtDuration(s.idle_timeout)],
	]));
	parts.push(totpSection(s));
	if (!(s.totp && s.totp.must_enrol))
		parts.push(section(t("account.password"), form({
			label: t("account.password"),
			fields: [{ name: "current", label: t("account.current"),
			    type: "password", required: true, attrs: { autocomplete:
			    "current-password" } }, ...passwordFields()],
			validate: checkPasswords,
			submit: t("account.change"),
			reset: true,
			async onsubmit(v) {
				await api.post("/v1/session/password", { current:
				    v.current, password: v.password });
				return t("account.changed");
			},
		})));
	fill(root, ...parts);
}

function totpSection(s) {
	const box = h("div");
	const enabled = s.totp && s.totp.enabled;
	if (enabled) {
		fill(box, h("p", t("totp.on")));
	} else {
		const start = h("button", { type: "button", class: "primary",
		    onclick: async () => {
			start.disabled = true;
			try {
				const doc = await api.post("/v1/session/totp", {});
				fill(box, totpEnrol(doc));
			} catch (err) {
				box.append(errorBox(err));
				start.disabled = false;
			}
		} }, t("totp.start"));
		fill(box, h("p", t(s.totp && s.totp.required ? "totp.required" :
		    "totp.off")), start);
	}
	return section(t("totp.title"), box);
}

function totpEnrol(doc) {
	const groups = doc.secret.replace(/(.{4})/g, "$1 ").trim();
	const f = form({
		label: t("totp.confirm"),
		fields: [{ name: "code", label: t("totp.code"), required: true,
		    hint: t("totp.code_hint"), attrs: { autocomplete:
		    "one-time-code", inputmode: "numeric", pattern: "[0-9]{6}",
		    maxlength: "6" } }],
		submit: t("totp.confirm"),
		async onsubmit(v) {
			await api.post("/v1/session/totp/confirm", { code: v.code });
			await refreshSession();
			f.replaceWith(okBox(t("totp.enabled")), h("p",
			    link(home(), t("notfound.home"))));
			return false;
		},
	});
	return h("div", h("p", t("totp.scan")), dl([
		[t("totp.secret"), h("code", { class: "secret" }, groups)],
		[t("totp.uri"), h("code", { class: "wrap" }, doc.uri)],
	]), f);
}
