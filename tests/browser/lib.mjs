// What every browser journey needs: Debian's chromium driven by
// playwright-core, axe-core on every page visited, screenshots in the
// journey's output folder, the keyboard as the only input device where a
// journey says so, and timings of the pages.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const CHROMIUM = process.env.OPSN_CHROMIUM || "/usr/bin/chromium";

// Flags for a headless chromium in a container, as root, offline.
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--no-first-run",
    "--metrics-recording-only", "--mute-audio"];

export class Journey {
	constructor(name, conf) {
		this.name = name;
		this.conf = conf;
		this.out = path.join(conf.out, name);
		// Only this run's screenshots: none left from an earlier one.
		fs.rmSync(this.out, { recursive: true, force: true });
		fs.mkdirSync(this.out, { recursive: true });
		this.shots = 0;
		this.pages = [];	// every page visited, with its axe result
		this.timings = {};
		this.errors = [];
	}

	async start(opts = {}) {
		this.browser = await chromium.launch({ executablePath: CHROMIUM,
		    args: FLAGS, timeout: 60000 });
		// The controller's certificate is its own CA's; axe is injected
		// into pages whose CSP allows only their own scripts.
		this.context = await this.browser.newContext({
			ignoreHTTPSErrors: true, bypassCSP: true,
			locale: opts.locale || "fr-FR", timezoneId: "Europe/Paris",
			viewport: { width: 1280, height: 900 },
			acceptDownloads: true,
		});
		this.page = await this.context.newPage();
		this.page.setDefaultTimeout(20000);
		this.page.on("pageerror", (e) => this.errors.push(e.message));
		return this.page;
	}

	async stop() {
		if (this.browser)
			await this.browser.close();
	}

	url(p) {
		return this.conf.url + p;
	}

	// Open an address and wait until its page is drawn (its h1, focused
	// by the console once the page is there).
	async open(p, h1) {
		const t0 = Date.now();
		await this.page.goto(this.url(p));
		await this.drawn(h1);
		return Date.now() - t0;
	}

	// Wait for the page's heading (optionally with this text), then for
	// the console to have finished drawing.
	async drawn(h1) {
		const sel = this.page.locator("main h1");
		if (h1)
			await this.page.waitForFunction((t) => {
				const e = document.querySelector("main h1");
				return e && e.textContent.includes(t) &&
				    !document.querySelector("main .loading");
			}, h1);
		else
			await sel.first().waitFor();
		await this.page.waitForFunction(() =>
		    !document.querySelector("main p.loading"));
	}

	// A screenshot in the journey's folder, and axe-core on the page as
	// it is now: no violation of WCAG 2.1 A and AA allowed.
	async check(label) {
		const n = String(++this.shots).padStart(2, "0");
		const file = path.join(this.out, `${n}-${label}.png`);
		await this.page.screenshot({ path: file, fullPage: true });
		await this.page.addScriptTag({ content: AXE });
		const r = await this.page.evaluate(async () => {
			const res = await window.axe.run(document, { runOnly: { type:
			    "tag", values: ["wcag2a", "wcag2aa", "wcag21a",
			    "wcag21aa"] }, resultTypes: ["violations"] });
			return res.violations.map((v) => ({ id: v.id, impact: v.impact,
			    help: v.help, nodes: v.nodes.slice(0, 5).map((x) =>
			    x.target.join(" ")) }));
		});
		this.pages.push({ label, url: this.page.url(), screenshot: file,
		    violations: r });
		assert.deepEqual(r, [], `axe-core violations on ${label} ` +
		    `(${this.page.url()}):\n${JSON.stringify(r, null, 2)}`);
	}

	// Press Tab until the focused element matches selector (keyboard
	// only); check that the focus is visible there.
	async tabTo(selector, max = 60) {
		for (let i = 0; i < max; i++) {
			await this.page.keyboard.press("Tab");
			const hit = await this.page.evaluate((s) =>
			    document.activeElement && document.activeElement.matches(s),
			    selector);
			if (hit) {
				await this.focusVisible(selector);
				return;
			}
		}
		assert.fail(`Tab never reached ${selector}`);
	}

	// The focused element shows a focus ring of at least 2 px.
	async focusVisible(what) {
		const ring = await this.page.evaluate(() => {
			const s = getComputedStyle(document.activeElement);
			return { style: s.outlineStyle, width: parseFloat(
			    s.outlineWidth) };
		});
		assert.ok(ring.style !== "none" && ring.width >= 2,
		    `no visible focus on ${what}: ${JSON.stringify(ring)}`);
	}

	async text(selector) {
		return (await this.page.locator(selector).first().innerText()).trim();
	}

	// Log in through the form.
	async login(user, password, opts = {}) {
		await this.open("/login", opts.h1);
		await this.page.fill("input[name=user]", user);
		await this.page.fill("input[name=password]", password);
		await this.page.click("form button[type=submit]");
		if (opts.expectError)
			return;
		await this.page.waitForURL((u) => !u.pathname.startsWith("/login"));
		await this.drawn();
	}

	result(extra = {}) {
		return Object.assign({ journey: this.name, pages: this.pages.map(
		    (p) => ({ label: p.label, url: p.url, screenshot: p.screenshot,
		    violations: p.violations.length })), timings: this.timings,
		    page_errors: this.errors }, extra);
	}
}

// Wait for a condition in the page (a function of no argument).
export async function until(page, fn, arg, timeout = 30000) {
	await page.waitForFunction(fn, arg, { timeout });
}

export { assert };
