// The console: the session, the navigation for the signed-in role, and a
// router that draws one page per address. Every address can be opened
// directly (the controller answers index.html for them) and the browser's
// back and forward buttons work.

import * as api from "./api.js";
import { h, fill, link, errorBox, announce } from "./dom.js";
import { t, lang } from "./i18n.js";
import { routes } from "./routes.js";

const state = {
	session: null,		// GET /v1/session, or null before login
	leave: [],		// what the current page stops when left
	gen: 0,			// which render is current
};

// May the signed-in user call this route? The controller sends the list
// of its routes that the session's role and scope allow (the same
// authorization table as API tokens), so the console never offers a
// button the API would refuse.
export function can(method, pattern) {
	const s = state.session;
	return !!(s && s.allowed && s.allowed.includes(method + " " + pattern));
}

export function session() {
	return state.session;
}

// The member a member-bound account is bound to, or null.
export function ownTenant() {
	return state.session && state.session.tenant ? state.session.tenant :
	    null;
}

export function navigate(to, replace = false) {
	if (replace)
		history.replaceState(null, "", to);
	else
		history.pushState(null, "", to);
	render();
}

// Where a signed-in user starts.
export function home() {
	const own = ownTenant();
	if (own)
		return "/members/" + encodeURIComponent(own.insee || own.id);
	if (state.session && state.session.totp && state.session.totp.must_enrol)
		return "/account";
	if (can("GET", "/v1/nodes"))
		return "/dashboard";
	if (can("GET", "/v1/statements"))
		return "/finance";
	return "/members";
}

const NAV = [
	["/dashboard", "nav.dashboard", () => can("GET", "/v1/nodes")],
	["/members", "nav.members", () => !ownTenant() && can("GET",
	    "/v1/tenants")],
	["own", "nav.own", () => !!ownTenant()],
	["/mail", "nav.mail", () => can("GET", "/v1/mail/domains")],
	["/sites", "nav.sites", () => can("GET", "/v1/sites")],
	["/vms", "nav.vms", () => can("GET", "/v1/vms")],
	["/nodes", "nav.nodes", () => can("GET", "/v1/nodes")],
	["/finance", "nav.finance", () => !ownTenant() && can("GET",
	    "/v1/statements")],
	["/users", "nav.users", () => can("GET", "/v1/users")],
];

function drawChrome() {
	document.documentElement.lang = lang;
	document.getElementById("skip").textContent = t("skip");
	const nav = document.getElementById("nav");
	nav.setAttribute("aria-label", t("nav.label"));
	const who = document.getElementById("who");
	const s = state.session;
	if (!s || (s.totp && s.totp.must_enrol)) {
		fill(nav);
		fill(who, s ? h("button", { type: "button", class: "link",
		    onclick: logout }, t("nav.logout")) : null);
	} else {
		const here = location.pathname;
		fill(nav, h("ul", NAV.filter((n) => n[2]()).map(([href, key]) => {
			if (href === "own")
				href = home();
			const cur = here === href || (href !== "/" &&
			    here.startsWith(href + "/"));
			return h("li", h("a", { href, "aria-current": cur ? "page" :
			    null }, t(key)));
		})));
		const own = ownTenant();
		fill(who, h("span", { class: "user" }, s.user, " · ",
		    t("role." + s.role), own ? " · " + own.name : ""), " ",
		    h("a", { href: "/account", "aria-current": here === "/account" ?
		    "page" : null }, t("nav.account")), " ",
		    h("button", { type: "button", class: "link", onclick: logout },
		    t("nav.logout")));
	}
	const foot = document.getElementById("foot");
	if (!foot.firstChild)
		foot.append(h("p", t("foot.text")));
}

async function logout() {
	try {
		await api.del("/v1/session", { anonymous: true });
	} catch (e) {
		// Gone already: the login page is where we go anyway.
	}
	state.session = null;
	api.setCsrf(null);
	navigate("/login", true);
	announce(t("login.bye"));
}

async function loadSession() {
	try {
		state.session = await api.get("/v1/session", { anonymous: true });
		api.setCsrf(state.session.csrf_token);
	} catch (e) {
		state.session = null;
		api.setCsrf(null);
		if (e.status !== 401)
			throw e;
	}
}

// After login: keep the session and go where the user was heading.
export function signedIn(doc, next) {
	state.session = doc;
	api.setCsrf(doc.csrf_token);
	navigate(next && next.startsWith("/") && !next.startsWith("//") &&
	    next !== "/login" ? next : home(), true);
}

export function refreshSession() {
	return loadSession().then(drawChrome);
}

function match(path) {
	for (const r of routes) {
		const m = r.re.exec(path);
		if (m)
			return { route: r, params: m.slice(1).map(decodeURIComponent) };
	}
	return null;
}

// Draw the page of the current address.
export async function render() {
	const gen = ++state.gen;
	for (const fn of state.leave.splice(0))
		try { fn(); } catch (e) { /* the page is gone anyway */ }
	const main = document.getElementById("main");
	const path = location.pathname.replace(/\/+$/, "") || "/";
	const query = new URLSearchParams(location.search);
	const m = match(path);
	if (!state.session && !(m && m.route.public)) {
		const next = location.pathname + location.search;
		history.replaceState(null, "", "/login" + (path === "/" ? "" :
		    "?next=" + encodeURIComponent(next)));
		return render();
	}
	// An administrator who must first set up a second factor sees only
	// the account page (the API refuses the rest until then).
	const mustEnrol = state.session && state.session.totp &&
	    state.session.totp.must_enrol;
	if (state.session && (path === "/" || path === "/login" ||
	    (mustEnrol && path !== "/account"))) {
		history.replaceState(null, "", home());
		return render();
	}
	drawChrome();
	const root = h("div", { class: "page" });
	fill(main, root);
	const ctx = {
		params: m ? m.params : [],
		query,
		session: state.session,
		alive: () => gen === state.gen,
		onLeave: (fn) => state.leave.push(fn),
		// Set the page's title (the tab's too) and return its heading.
		title(text, sub) {
			document.title = text + " — opsn";
			return h("h1", { tabindex: "-1", id: "page-title" }, text,
			    sub ? h("span", { class: "sub" }, sub) : null);
		},
	};
	if (!m) {
		fill(root, ctx.title(t("notfound.title")), h("p",
		    t("notfound.text")), h("p", link(home(), t("notfound.home"))));
	} else {
		fill(root, h("p", { class: "loading" }, t("loading")));
		try {
			await m.route.page(root, ctx);
		} catch (err) {
			if (gen !== state.gen)
				return;
			const notFound = err && (err.status === 404 ||
			    err.status === 403);
			fill(root, ctx.title(notFound ? t("notfound.title") :
			    t("error.page")), errorBox(err), h("p", link(home(),
			    t("notfound.home"))));
		}
	}
	if (gen !== state.gen)
		return;
	const h1 = root.querySelector("h1");
	if (h1 && document.activeElement !== h1 && !root.contains(
	    document.activeElement))
		h1.focus({ preventScroll: false });
}

function onClick(ev) {
	if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey ||
	    ev.ctrlKey || ev.shiftKey || ev.altKey)
		return;
	const a = ev.target.closest("a[href]");
	if (!a || a.target || a.hasAttribute("download"))
		return;
	const u = new URL(a.href, location.href);
	if (u.origin !== location.origin || u.pathname.startsWith("/v1/") ||
	    a.getAttribute("href").startsWith("#"))
		return;
	ev.preventDefault();
	if (u.pathname + u.search !== location.pathname + location.search)
		navigate(u.pathname + u.search);
}

async function start() {
	document.documentElement.lang = lang;
	api.setUnauthenticatedHandler(() => {
		if (!state.session)
			return;
		state.session = null;
		api.setCsrf(null);
		const next = location.pathname + location.search;
		history.replaceState(null, "", "/login?expired=1&next=" +
		    encodeURIComponent(next));
		render();
	});
	document.addEventListener("click", onClick);
	window.addEventListener("popstate", render);
	try {
		await loadSession();
	} catch (err) {
		fill(document.getElementById("main"), errorBox(err));
		return;
	}
	render();
}

start();
