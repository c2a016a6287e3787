// Virtual machines: the list, creation, a VM's page with its actions
// (start, stop, reboot, delete, followed until the hypervisor reports the
// new state) and its serial console log, followed while the page is open.

import * as api from "../api.js";
import { h, fill, table, link, form, dl, progress, errorBox, buttons,
    button, confirm, section, announce, pager } from "../dom.js";
import { t, tOr, fmtInt, fmtBytes, fmtTime } from "../i18n.js";
import { can, navigate, ownTenant } from "../app.js";
import { vmState } from "./dashboard.js";

const PAGE = 100;
const CONSOLE_POLL_MS = 2000;
const CONSOLE_KEEP = 200000;	// characters kept on the page

export function vmRow(v) {
	return v.observed && v.observed.state || v.desired;
}

export async function vmsPage(root, ctx) {
	const cursor = ctx.query.get("cursor") || "";
	const state = ctx.query.get("state") || "";
	const tenant = ctx.query.get("tenant") || "";
	const page = await api.get(api.url("/v1/vms", { state, tenant, cursor,
	    limit: PAGE }));
	const parts = [ctx.title(t("vms.title"))];
	if (can("POST", "/v1/vms"))
		parts.push(await createSection(tenant));
	parts.push(table(t("vms.title"), [
		{ label: t("vm.name"), cell: (v) => link("/vms/" + v.id, v.name) },
		ownTenant() ? null : { label: t("mail.member"), cell: (v) =>
		    v.tenant ? link("/members/" + encodeURIComponent(v.tenant),
		    v.tenant) : "–" },
		{ label: t("vm.node"), cell: (v) => v.node },
		{ label: t("vm.size"), cell: (v) => `${v.vcpus} vCPU, ` +
		    fmtBytes(v.memory_mib * 1048576) + ", " +
		    fmtBytes(v.disk_bytes) },
		{ label: t("vm.state"), cell: (v) => vmState(vmRow(v)) },
	].filter(Boolean), page.items, { empty: t("vms.none") }));
	parts.push(pager("/vms", { state, tenant }, cursor, page.next_cursor));
	fill(root, ...parts);
}

async function createSection(tenant) {
	const [plans, images] = await Promise.all([
		api.all("/v1/plans").catch(() => []),
		can("GET", "/v1/images") ? api.all("/v1/images").catch(() => []) :
		    [],
	]);
	const f = form({
		legend: t("vm.create"),
		fields: [
			{ name: "name", label: t("vm.name"), required: true, attrs:
			  { autocomplete: "off", spellcheck: "false" } },
			ownTenant() ? null : { name: "tenant", label: t("mail.member"),
			  value: tenant, hint: t("vm.tenant_hint") },
			{ name: "plan", label: t("vm.plan"), type: "select", required:
			  true, options: plans.map((p) => [p.name, `${p.name} — ` +
			  `${p.vcpus} vCPU, ${fmtBytes(p.memory_mib * 1048576)}, ` +
			  fmtBytes(p.disk_bytes)]) },
			images.length ? { name: "image", label: t("vm.image"), type:
			  "select", required: true, options: images.map((i) =>
			  [i.name, i.name]) } : { name: "image", label: t("vm.image"),
			  required: true },
		].filter(Boolean),
		submit: t("vm.create_submit"),
		async onsubmit(v) {
			const body = { name: v.name, plan: v.plan, image: v.image };
			if (v.tenant)
				body.tenant = v.tenant;
			const vm = await api.post("/v1/vms", body);
			navigate("/vms/" + vm.id);
			return false;
		},
	});
	return h("details", { class: "tool" }, h("summary", t("vm.create")), f);
}

// Wait until the hypervisor reports the state the VM was asked for.
async function followVm(id, want, p) {
	const start = Date.now();
	for (;;) {
		const v = await api.get("/v1/vms/" + api.seg(id)).catch((e) => {
			if (e.status === 404 && want === "deleted")
				return null;
			throw e;
		});
		if (!v) {
			p.finish(t("vm.gone"));
			return null;
		}
		const s = vmRow(v);
		if (s === want || (want === "running" && s === "running")) {
			p.finish(t("vm.reached", { state: tOr("vm.state." + s, s) }));
			announce(t("vm.reached", { state: tOr("vm.state." + s, s) }));
			return v;
		}
		if (v.observed && v.observed.error)
			throw { code: "vm_error", message: v.observed.error };
		if (Date.now() - start > 120000) {
			p.set(0, 0, t("vm.slow"));
			return v;
		}
		p.set(0, 0, t("vm.waiting", { state: tOr("vm.state." + s, s),
		    want: tOr("vm.state." + want, want) }));
		await new Promise((r) => setTimeout(r, 700));
	}
}

export async function vmPage(root, ctx) {
	const id = ctx.params[0];
	const v = await api.get("/v1/vms/" + api.seg(id));
	const out = h("div", { class: "action-out" });
	const act = (verb, want, danger) => can(verb === "delete" ? "DELETE" :
	    "POST", verb === "delete" ? "/v1/vms/{vm}" : "/v1/vms/{vm}/" +
	    verb) ? button(t("vm." + verb), async () => {
		if (danger && !await confirm(t("vm." + verb), t("vm.confirm_" +
		    verb, { name: v.name }), t("vm." + verb)))
			return;
		const p = progress(t("vm.doing_" + verb, { name: v.name }));
		fill(out, p.el);
		p.set(0, 0);
		try {
			if (verb === "delete")
				await api.del("/v1/vms/" + api.seg(v.id));
			else
				await api.post("/v1/vms/" + api.seg(v.id) + "/" + verb, {});
			const after = await followVm(v.id, want, p);
			setTimeout(() => navigate(after ? location.pathname :
			    "/vms", true), 1200);
		} catch (err) {
			fill(out, errorBox(err));
		}
	}, danger ? "danger" : "secondary") : null;
	const running = vmRow(v) === "running";
	const log = h("pre", { class: "console", tabindex: "0", "aria-label":
	    t("vm.console") });
	const follow = h("input", { type: "checkbox", id: "follow", checked:
	    true });
	const consoleSec = can("GET", "/v1/vms/{vm}/console") ?
	    section(t("vm.console"), h("p", t("vm.console_intro")),
	    h("div", { class: "field-check" }, follow, h("label",
	    { for: "follow" }, t("vm.follow"))), log) : null;
	fill(root, ctx.title(v.name, t("vm.title")), dl([
		[t("mail.member"), v.tenant ? ownTenant() ? ownTenant().name :
		    link("/members/" + encodeURIComponent(v.tenant), v.tenant) :
		    "–"],
		[t("vm.node"), can("GET", "/v1/nodes/{name}") ? link("/nodes/" +
		    encodeURIComponent(v.node), v.node) : v.node],
		[t("vm.plan"), v.plan],
		[t("vm.image"), v.image],
		[t("vm.size"), `${fmtInt(v.vcpus)} vCPU, ${fmtBytes(
		    v.memory_mib * 1048576)}, ${fmtBytes(v.disk_bytes)}`],
		[t("vm.desired"), vmState(v.desired)],
		[t("vm.observed"), h("span", vmState(vmRow(v)), v.observed &&
		    v.observed.since ? " " + t("vm.since", { at:
		    fmtTime(v.observed.since) }) : "")],
		v.observed && v.observed.error ? [t("vm.error"),
		    v.observed.error] : null,
		[t("vm.created"), fmtTime(v.created_at)],
		[t("vm.id"), h("code", v.id)],
	]), buttons(running ? act("stop", "stopped") : act("start", "running"),
	    running ? act("reboot", "running") : null,
	    act("delete", "deleted", true)), out, consoleSec);
	if (consoleSec)
		followConsole(v.id, log, follow, ctx);
}

function followConsole(id, log, follow, ctx) {
	let offset = 0, timer = null, stopped = false;
	const tick = async () => {
		timer = null;
		try {
			const c = await api.get(api.url("/v1/vms/" + api.seg(id) +
			    "/console", { offset }));
			if (stopped)
				return;
			if (c.data) {
				if (log.dataset.empty) {
					log.textContent = "";
					delete log.dataset.empty;
				}
				const atEnd = log.scrollTop + log.clientHeight >=
				    log.scrollHeight - 8;
				let text = log.textContent + (c.truncated && offset ?
				    "\n[…]\n" : "") + c.data;
				if (text.length > CONSOLE_KEEP)
					text = text.slice(-CONSOLE_KEEP);
				log.textContent = text;
				if (atEnd)
					log.scrollTop = log.scrollHeight;
			} else if (!log.textContent) {
				log.textContent = t("vm.console_empty");
				log.dataset.empty = "1";
			}
			offset = c.next;
		} catch (err) {
			if (!stopped)
				log.after(errorBox(err));
			return;
		}
		if (!stopped && follow.checked)
			timer = setTimeout(tick, CONSOLE_POLL_MS);
	};
	follow.addEventListener("change", () => {
		if (follow.checked && !timer)
			tick();
	});
	ctx.onLeave(() => {
		stopped = true;
		if (timer)
			clearTimeout(timer);
	});
	tick();
}
