// The web console's journeys in a real browser, one per run:
//
//	node tests/browser/run.mjs JOURNEY
//
// OPSN_CONSOLE_CONF names a JSON file written by tests/e2e/test_console.py
// (the controller's URL, the accounts, the data); the journey saves its
// screenshots under conf.out/JOURNEY, runs axe-core on every page it
// visits, and prints one JSON line with what it measured. It exits 1 on
// the first failed check.

import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Journey, assert, until } from "./lib.mjs";

const conf = JSON.parse(fs.readFileSync(process.env.OPSN_CONSOLE_CONF,
    "utf8"));

// Press Tab until the focused element's own text is text.
async function tabToText(j, text, max = 80) {
	for (let i = 0; i < max; i++) {
		await j.page.keyboard.press("Tab");
		const t = await j.page.evaluate(() => document.activeElement ?
		    document.activeElement.textContent.trim() : "");
		if (t === text) {
			await j.focusVisible(text);
			return;
		}
	}
	assert.fail(`Tab never reached “${text}”`);
}

// The code an authenticator app shows (RFC 6238: HMAC-SHA1, 30 s, 6
// digits) for a base32 secret, step steps from now.
function totp(secret, step = 0) {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
	let bits = "";
	for (const ch of secret.replace(/[\s=]/g, "").toUpperCase())
		bits += alpha.indexOf(ch).toString(2).padStart(5, "0");
	const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
	const msg = Buffer.alloc(8);
	msg.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000) + step));
	const mac = crypto.createHmac("sha1", key).update(msg).digest();
	const off = mac[mac.length - 1] & 15;
	return String((mac.readUInt32BE(off) & 0x7fffffff) % 1000000)
	    .padStart(6, "0");
}

// How long a page takes to be drawn when opened by its address: the
// better of two loads (the first may pay for a new TLS connection).
async function best(j, p, h1) {
	const a = await j.open(p, h1);
	const b = await j.open(p, h1);
	return Math.min(a, b);
}

async function typeInto(j, selector, text) {
	await j.tabTo(selector);
	await j.page.keyboard.type(text);
}

const journeys = {
	// An operator imports a département from Etalab's file, with 35,000
	// members already there, and finds a commune by its INSEE code.
	async "import-and-find"(j) {
		const op = conf.users.operator;
		const page = await j.start();
		await j.login(op.name, op.password);
		await j.check("dashboard");
		j.timings.dashboard_ms = await best(j, "/dashboard", "Tableau");
		j.timings.members_ms = await best(j, "/members", "Membres");
		await j.check("members");
		await page.click("summary >> text=Importer des membres");
		await page.selectOption("select[name=source]", "etalab");
		await page.setInputFiles("input[name=file]", conf.communes);
		await page.fill("input[name=departement]", conf.departement);
		await j.check("import-form");
		const t0 = Date.now();
		await page.click("button >> text=Importer");
		await until(page, () => document.querySelector("details[open] " +
		    ".form-status .ok, details[open] .form-status .error"), null,
		    120000);
		const out = await j.text("details[open] .form-status");
		assert.ok(!(await page.$("details[open] .form-status .error")), out);
		j.timings.import_ms = Date.now() - t0;
		const m = /(\d[\d\u202f]*) membres lus\s*: (\d[\d\u202f]*) créés/
		    .exec(out);
		assert.ok(m, out);
		await j.check("import-done");
		// The search runs on the controller, over every member.
		await page.fill("input[name=q]", conf.insee);
		const t1 = Date.now();
		await page.press("input[name=q]", "Enter");
		await page.waitForURL((u) => u.search.includes("q=" + conf.insee));
		await j.drawn("Membres");
		await page.waitForSelector(`text=${conf.commune}`);
		j.timings.search_ms = Date.now() - t1;
		const count = await j.text("#result-count");
		assert.match(count, /^1 membre trouvé/);
		await j.check("search");
		await page.click(`main table a >> text=${conf.commune}`);
		await j.drawn(conf.commune);
		assert.match(await j.text("main h1"), new RegExp(conf.insee));
		await j.check("member");
		j.timings.member_ms = await best(j, "/members/" + conf.insee,
		    conf.commune);
		return { read: m[1], created: m[2], count };
	},

	// An operator, with the keyboard alone, creates a mailbox and sees it
	// applied by the mail backend.
	async "mailbox-applied"(j) {
		const op = conf.users.operator;
		const page = await j.start();
		await j.open("/login", "Connexion");
		await typeInto(j, "input[name=user]", op.name);
		await page.keyboard.press("Tab");
		await page.keyboard.type(op.password);
		await page.keyboard.press("Enter");
		await page.waitForURL((u) => !u.pathname.startsWith("/login"));
		await j.drawn();
		await j.tabTo('#nav a[href="/mail"]');
		await page.keyboard.press("Enter");
		await j.drawn("Messagerie");
		await j.check("domains");
		await j.tabTo(`main a[href="/mail/${conf.domain}"]`);
		await page.keyboard.press("Enter");
		await j.drawn(conf.domain);
		await tabToText(j, "Créer une boîte aux lettres");
		await page.keyboard.press("Enter");
		await typeInto(j, "input[name=local]", conf.new_box.local);
		await page.keyboard.press("Tab");
		await page.keyboard.type(conf.new_box.name);
		await page.keyboard.press("Tab");
		await page.keyboard.press("Control+a");
		await page.keyboard.type("100M");
		await page.keyboard.press("Tab");
		await page.keyboard.type(conf.new_box.password);
		await page.keyboard.press("Tab");
		await page.keyboard.type(conf.new_box.password);
		await j.check("mailbox-form");
		const t0 = Date.now();
		await page.keyboard.press("Enter");
		await until(page, () => /appliqué sur le serveur/.test(
		    document.querySelector(".form-status")?.innerText || "") ||
		    document.querySelector(".form-status .error"), null, 60000);
		assert.ok(!(await page.$(".form-status .error")), await j.text(
		    ".form-status"));
		j.timings.applied_ms = Date.now() - t0;
		await j.check("mailbox-applied");
		await page.waitForSelector(`main table th >> text=${
		    conf.new_box.local}@${conf.domain}`);
		await j.check("mailbox-listed");
		return { address: `${conf.new_box.local}@${conf.domain}` };
	},

	// The finance views: an operator writes the statements of a month,
	// closes the period and downloads its export; the finance officer's
	// account (read only, as a finance token) sees and downloads it, and
	// is offered no write.
	async "finance-period"(j) {
		const op = conf.users.operator, fin = conf.users.finance;
		const page = await j.start();
		await j.login(op.name, op.password);
		await j.open("/finance", "Consommation");
		await page.waitForSelector("svg.chart");
		await j.check("usage");
		await j.open("/finance/periods", "Périodes");
		await j.check("periods");
		await page.fill("input[name=period]", conf.period);
		const t0 = Date.now();
		await page.click("button >> text=Établir les relevés");
		await until(page, () => /\d+ relevés, \d+ lignes/.test(
		    document.querySelector(".action-out")?.innerText || "") ||
		    document.querySelector(".action-out .error"), null, 120000);
		assert.ok(!(await page.$(".action-out .error")), await j.text(
		    ".action-out"));
		j.timings.generate_ms = Date.now() - t0;
		const generated = await j.text(".action-out");
		await j.check("generated");
		await j.open("/finance/periods", "Périodes");
		const row = page.locator("main tbody tr", { hasText:
		    conf.period_label });
		const total = (await row.locator("td").nth(2).innerText()).trim();
		// Amounts the French way: 1 234,56 €.
		assert.match(total, /^\d{1,3}(\u202f\d{3})*,\d{2}\u00a0€$/);
		await row.locator("button", { hasText: "Clôturer" }).click();
		await page.waitForSelector("dialog[open]");
		await j.check("close-dialog");
		await page.click("dialog[open] button.danger");
		await until(page, () => /clôturée/.test(document.querySelector(
		    ".action-out")?.innerText || "") || document.querySelector(
		    ".action-out .error"));
		assert.ok(!(await page.$(".action-out .error")), await j.text(
		    ".action-out"));
		await j.check("closed");
		await page.click("button >> text=Se déconnecter");
		await j.drawn("Connexion");

		await j.login(fin.name, fin.password);
		assert.equal(new URL(page.url()).pathname, "/finance");
		await j.open("/finance/periods", "Périodes");
		assert.equal(await page.$("input[name=period]"), null,
		    "finance is offered no statement generation");
		const closedRow = page.locator("main tbody tr", { hasText:
		    conf.period_label });
		assert.match(await closedRow.innerText(), /clos/);
		assert.equal(await closedRow.locator("button", { hasText:
		    "Clôturer" }).count(), 0);
		await j.check("periods-finance");
		const files = {};
		for (const [label, name] of [["CSV", "csv"], ["JSON", "json"]]) {
			const [dl] = await Promise.all([
				page.waitForEvent("download"),
				closedRow.locator("button", { hasText: new RegExp(
				    `^${label}`) }).first().click(),
			]);
			const file = path.join(j.out, dl.suggestedFilename());
			await dl.saveAs(file);
			files[name] = file;
		}
		await j.check("downloaded");
		await page.click(`main tbody tr >> text=${conf.period_label}`);
		await j.drawn("Relevés");
		await page.click(`main tbody a >> text=${conf.commune}`);
		await j.drawn(conf.commune);
		await j.check("statement");
		return { generated, total, files };
	},

	// A member's own administrator resets a mailbox password, then
	// cannot open another member's pages by their address.
	async "member-admin"(j) {
		const adm = conf.users.member;
		const page = await j.start();
		await j.login(adm.name, adm.password);
		assert.equal(new URL(page.url()).pathname, "/members/" + conf.insee);
		await j.drawn(conf.commune);
		await j.check("own-member");
		await j.open("/mail/" + conf.domain, conf.domain);
		await j.check("own-domain");
		const addr = conf.reset_box.address;
		await page.locator("main tr", { hasText: addr }).locator("button",
		    { hasText: "Changer le mot de passe" }).click();
		await page.waitForSelector("dialog[open]");
		await page.fill("dialog[open] input[name=password]",
		    conf.reset_box.password);
		await page.fill("dialog[open] input[name=confirm]",
		    conf.reset_box.password);
		await j.check("reset-dialog");
		await page.click("dialog[open] button[type=submit]");
		await until(page, () => /mot de passe .* est actif/.test(
		    document.querySelector(".action-out")?.innerText || "") ||
		    document.querySelector(".action-out .error"), null, 60000);
		assert.ok(!(await page.$(".action-out .error")), await j.text(
		    ".action-out"));
		await j.check("reset-applied");
		const refused = {};
		for (const [label, p] of [["other-member", "/members/" +
		    conf.other_insee], ["other-domain", "/mail/" +
		    conf.other_domain], ["other-member-by-id", "/members/" +
		    conf.other_id]]) {
			await j.open(p, "Page introuvable");
			const body = await page.locator("main").innerText();
			assert.ok(!body.includes(conf.other_commune), body);
			assert.ok(!body.includes(conf.other_domain), body);
			refused[label] = body.split("\n").slice(0, 3).join(" | ");
			await j.check(label);
		}
		// Nor may its administrator reach what is the platform's.
		await j.open("/nodes", "Page introuvable");
		await j.check("nodes-refused");
		return { refused };
	},

	// A wrong password is refused with the API's message, and after a
	// few the account is throttled, even for the right password. In
	// English, as the browser asks.
	async "login-throttled"(j) {
		const u = conf.users.throttled;
		const page = await j.start({ locale: "en-GB" });
		await j.open("/login", "Log in");
		assert.equal(await page.getAttribute("html", "lang"), "en");
		const refusals = [];
		for (let i = 0; i < conf.throttle_free; i++) {
			await page.fill("input[name=user]", u.name);
			await page.fill("input[name=password]", "not the password " + i);
			await page.click("form button[type=submit]");
			await page.waitForSelector(".form-status .error");
			refusals.push(await j.text(".form-status .error"));
			if (i === 0)
				await j.check("refused");
		}
		await page.fill("input[name=user]", u.name);
		await page.fill("input[name=password]", u.password);
		await page.click("form button[type=submit]");
		await page.waitForSelector(".form-status .error");
		const throttled = await j.text(".form-status .error");
		assert.match(throttled, /too many failed logins: try again in \d+ s/);
		assert.equal(new URL(page.url()).pathname, "/login");
		await j.check("throttled");
		return { refusals, throttled };
	},

	// A new administrator opens the one-time link opsnctl printed,
	// chooses a password, must set up a second factor before anything
	// else ([console] require_totp), and from then on logs in with a code.
	async "account-setup"(j) {
		const a = conf.admin;
		const page = await j.start();
		await page.goto(a.link);
		await j.drawn("Choisir votre mot de passe");
		await j.check("setup");
		await page.fill("input[name=password]", "court");
		await page.fill("input[name=confirm]", "court");
		await page.click("form button[type=submit]");
		await page.waitForSelector(".field-error");
		await j.check("setup-too-short");
		await page.fill("input[name=password]", a.password);
		await page.fill("input[name=confirm]", a.password);
		await page.click("form button[type=submit]");
		await page.waitForSelector(".ok >> text=Mot de passe enregistré");
		// The link works once.
		const again = await page.evaluate(async (tok) => (await fetch(
		    "/v1/password-setup", { method: "POST", headers:
		    { "Content-Type": "application/json" }, body: JSON.stringify(
		    { token: tok, password: "Encore un autre mot de passe" }) }))
		    .status, a.link.split("token=")[1]);
		assert.equal(again, 400);
		await j.login(a.name, a.password);
		assert.equal(new URL(page.url()).pathname, "/account");
		await page.waitForSelector("text=doivent activer la double");
		await j.check("must-enrol");
		// Nothing else until then: the API says so too.
		const st = await page.evaluate(async () => (await fetch(
		    "/v1/nodes")).status);
		assert.equal(st, 403);
		await page.click("button >> text=Activer la double authentification");
		await page.waitForSelector("code.secret");
		const secret = (await j.text("code.secret")).replace(/\s/g, "");
		await page.fill("input[name=code]", totp(secret));
		await j.check("enrol");
		await page.click("form button[type=submit] >> text=Confirmer");
		await page.waitForSelector("text=Double authentification activée");
		await page.waitForSelector('#nav a[href="/dashboard"]');
		await j.check("enrolled");
		await page.click("button >> text=Se déconnecter");
		await j.drawn("Connexion");
		await page.fill("input[name=user]", a.name);
		await page.fill("input[name=password]", a.password);
		await page.click("form button[type=submit]");
		await page.waitForSelector("input[name=totp]:visible");
		await j.check("totp-asked");
		// The next step's code: this step's was used to enrol.
		await page.fill("input[name=totp]", totp(secret, 1));
		await page.click("form button[type=submit]");
		await page.waitForURL((u) => u.pathname === "/dashboard");
		await j.drawn("Tableau de bord");
		await j.check("dashboard");
		return { secret_length: secret.length };
	},

	// A write that carries the session cookie but not its CSRF token is
	// refused; the same write with the token is made.
	async "csrf-refused"(j) {
		const op = conf.users.operator;
		const page = await j.start();
		await j.login(op.name, op.password);
		await j.check("logged-in");
		const r = await page.evaluate(async (c) => {
			const body = JSON.stringify({ kind: "other", name: c.name });
			const without = await fetch("/v1/tenants", { method: "POST",
			    credentials: "same-origin", headers: { "Content-Type":
			    "application/json" }, body });
			const s = await (await fetch("/v1/session")).json();
			const forged = await fetch("/v1/tenants", { method: "POST",
			    credentials: "same-origin", headers: { "Content-Type":
			    "application/json", "X-CSRF-Token": "0".repeat(40) },
			    body });
			const withTok = await fetch("/v1/tenants", { method: "POST",
			    credentials: "same-origin", headers: { "Content-Type":
			    "application/json", "X-CSRF-Token": s.csrf_token },
			    body: JSON.stringify({ kind: "other", name: c.name2 }) });
			return { without: without.status, without_body: await
			    without.json(), forged: forged.status, with: withTok.status };
		}, { name: conf.csrf_name, name2: conf.csrf_name2 });
		assert.equal(r.without, 403, JSON.stringify(r));
		assert.equal(r.without_body.error.code, "csrf");
		assert.equal(r.forged, 403);
		assert.equal(r.with, 201);
		// Logging out ends the session: the API refuses the cookie now.
		await page.click("button >> text=Se déconnecter");
		await j.drawn("Connexion");
		const after = await page.evaluate(async () => (await fetch(
		    "/v1/session")).status);
		assert.equal(after, 401);
		await j.check("logged-out");
		return r;
	},
};

const name = process.argv[2];
if (!journeys[name]) {
	console.error(`usage: run.mjs ${Object.keys(journeys).join("|")}`);
	process.exit(2);
}
const j = new Journey(name, conf);
let code = 0;
try {
	const out = await journeys[name](j);
	assert.deepEqual(j.errors, [], "errors in the page");
	console.log(JSON.stringify(j.result({ ok: true, out })));
} catch (err) {
	code = 1;
	try {
		await j.page?.screenshot({ path: path.join(j.out, "failure.png"),
		    fullPage: true });
	} catch (e) {
		// The browser is gone: nothing to show.
	}
	console.log(JSON.stringify(j.result({ ok: false, error: String(
	    err.stack || err) })));
} finally {
	await j.stop();
}
process.exit(code);
