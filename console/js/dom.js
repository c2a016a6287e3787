// Building the page. Text from the API is always set as text (never as
// HTML), so a member's name cannot inject markup.

import { t } from "./i18n.js";
import { url } from "./api.js";

// h("a", {href: "/x", class: "c", onclick: fn}, "text", child, [more]).
// Attributes set to null, undefined or false are left out.
export function h(tag, attrs, ...children) {
	const svg = tag.startsWith("svg:");
	const el = svg ? document.createElementNS("http://www.w3.org/2000/svg",
	    tag.slice(4)) : document.createElement(tag);
	if (attrs && (typeof attrs !== "object" || attrs instanceof Node ||
	    Array.isArray(attrs))) {
		children.unshift(attrs);
		attrs = null;
	}
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === null || v === undefined || v === false)
			continue;
		if (k.startsWith("on") && typeof v === "function")
			el.addEventListener(k.slice(2), v);
		else if (k === "class")
			el.setAttribute("class", Array.isArray(v) ?
			    v.filter(Boolean).join(" ") : v);
		else if (k === "value" && !svg && tag !== "input")
			el.value = v;
		else if (k === "checked" || k === "selected" || k === "disabled")
			el[k] = !!v;
		else
			el.setAttribute(k, v === true ? "" : String(v));
	}
	append(el, children);
	return el;
}

function append(el, children) {
	for (const c of children) {
		if (c === null || c === undefined || c === false)
			continue;
		if (Array.isArray(c))
			append(el, c);
		else
			el.append(c instanceof Node ? c : document.createTextNode(
			    String(c)));
	}
}

let uid = 0;
// A fresh id for label/aria references.
export function nextId(prefix = "f") {
	return `${prefix}-${++uid}`;
}

// Empty an element and fill it with children.
export function fill(el, ...children) {
	el.replaceChildren();
	append(el, children);
	return el;
}

// Say msg to screen readers through the polite live region.
export function announce(msg) {
	const live = document.getElementById("live");
	if (!live)
		return;
	live.textContent = "";
	setTimeout(() => { live.textContent = msg; }, 50);
}

// An internal link: the router handles it without reloading the page.
export function link(href, ...children) {
	return h("a", { href }, ...children);
}

// A status word with a colour that is never the only sign (the word is
// always written).
export function badge(kind, text) {
	return h("span", { class: ["badge", "badge-" + kind] }, text);
}

// The box that shows an API error: its message as the API wrote it, its
// code and request id.
export function errorBox(err, intro) {
	const box = h("div", { class: "error", role: "alert" });
	fill(box, h("p", h("strong", intro || t("error.title")), " ",
	    err && err.message ? err.message : String(err)));
	if (err && err.code)
		box.append(h("p", { class: "small" }, t("error.code", {
		    code: err.code }), err.requestId ? " · " + t("error.request",
		    { id: err.requestId }) : ""));
	return box;
}

// A success message, announced.
export function okBox(msg) {
	announce(msg);
	return h("div", { class: "ok" }, h("p", msg));
}

// A table: columns [{label, cell(row) -> node|text, num, key}], rows.
export function table(caption, columns, rows, opts = {}) {
	const head = h("tr", columns.map((c) => h("th", { scope: "col",
	    class: c.num ? "num" : null }, c.label)));
	const body = h("tbody");
	if (!rows.length)
		body.append(h("tr", h("td", { colspan: columns.length,
		    class: "empty" }, opts.empty || t("list.empty"))));
	for (const r of rows) {
		const tr = h("tr");
		columns.forEach((c, i) => {
			const v = c.cell(r);
			const cell = c.rowHeader || (i === 0 && opts.rowHeader) ?
			    h("th", { scope: "row" }, v) : h("td", v);
			if (c.num)
				cell.classList.add("num");
			tr.append(cell);
		});
		body.append(tr);
	}
	const tbl = h("table", { class: opts.class },
	    h("caption", { class: opts.captionHidden ? "sr-only" : null },
	    caption), h("thead", head), body);
	return h("div", { class: "table-wrap", role: "region",
	    "aria-label": caption, tabindex: "0" }, tbl);
}

// A description list from [term, value] pairs.
export function dl(pairs) {
	return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) =>
	    h("div", h("dt", k), h("dd", v === null || v === undefined ||
	    v === "" ? "–" : v))));
}

// A form field with its label, hint and error: returns {wrap, input}.
// spec: {name, label, type, required, hint, value, options, attrs}.
export function field(spec) {
	const id = nextId(spec.name || "f");
	const hintId = spec.hint ? id + "-hint" : null;
	let input;
	if (spec.type === "select") {
		input = h("select", { id, name: spec.name, required:
		    spec.required }, (spec.options || []).map(([v, l]) =>
		    h("option", { value: v, selected: String(spec.value ?? "") ===
		    String(v) }, l)));
	} else if (spec.type === "textarea") {
		input = h("textarea", { id, name: spec.name, required:
		    spec.required, rows: spec.rows || 3 });
		if (spec.value !== undefined)
			input.value = spec.value;
	} else {
		input = h("input", Object.assign({ id, name: spec.name, type:
		    spec.type || "text", required: spec.required, value:
		    spec.value }, spec.attrs || {}));
	}
	if (spec.type === "select" || spec.type === "textarea")
		for (const [k, v] of Object.entries(spec.attrs || {}))
			input.setAttribute(k, v);
	if (hintId)
		input.setAttribute("aria-describedby", hintId);
	const label = h("label", { for: id }, spec.label, spec.required ?
	    h("span", { class: "req" }, " ", t("form.required")) : null);
	const wrap = h("div", { class: ["field", spec.type === "checkbox" ?
	    "field-check" : null] });
	if (spec.type === "checkbox")
		wrap.append(input, label);
	else
		wrap.append(label, input);
	if (hintId)
		wrap.append(h("p", { class: "hint", id: hintId }, spec.hint));
	return { wrap, input };
}

// Mark a field as invalid with a message tied to it.
export function fieldError(input, msg) {
	const wrap = input.closest(".field");
	let p = wrap.querySelector(".field-error");
	if (!p) {
		p = h("p", { class: "field-error", id: input.id + "-err" });
		wrap.append(p);
	}
	p.textContent = msg;
	input.setAttribute("aria-invalid", "true");
	const ids = (input.getAttribute("aria-describedby") || "").split(" ")
	    .filter((x) => x && x !== p.id);
	input.setAttribute("aria-describedby", [...ids, p.id].join(" "));
}

export function clearErrors(form) {
	for (const p of form.querySelectorAll(".field-error")) {
		const input = p.closest(".field").querySelector("[aria-invalid]");
		if (input) {
			input.removeAttribute("aria-invalid");
			const ids = (input.getAttribute("aria-describedby") || "")
			    .split(" ").filter((x) => x && x !== p.id);
			if (ids.length)
				input.setAttribute("aria-describedby", ids.join(" "));
			else
				input.removeAttribute("aria-describedby");
		}
		p.remove();
	}
}

// A form that runs submit(values, form) and shows its outcome: the API's
// error message, or what submit resolves to (a text or a node). While it
// runs, the button is disabled and says so.
export function form(opts) {
	const fields = opts.fields.map((f) => f.wrap ? f : field(f));
	const status = h("div", { class: "form-status" });
	const button = h("button", { type: "submit", class: opts.danger ?
	    "danger" : "primary" }, opts.submit);
	const el = h("form", { class: ["form", opts.class], novalidate: true,
	    "aria-label": opts.legend ? null : opts.label },
	    opts.legend ? h("fieldset", h("legend", opts.legend),
	    fields.map((f) => f.wrap), opts.extra) : [fields.map((f) => f.wrap),
	    opts.extra], h("div", { class: "actions" }, button, opts.buttons),
	    status);
	el.addEventListener("submit", async (ev) => {
		ev.preventDefault();
		clearErrors(el);
		status.replaceChildren();
		const values = {};
		for (const f of fields) {
			const i = f.input;
			values[i.name] = i.type === "checkbox" ? i.checked :
			    i.type === "file" ? i.files[0] : i.value.trim();
		}
		// The browser's own checks, shown our way (tied to the field).
		let bad = null;
		for (const f of fields) {
			if (!f.input.checkValidity()) {
				fieldError(f.input, f.input.validity.valueMissing ?
				    t("form.missing") : f.input.validationMessage);
				bad = bad || f.input;
			}
		}
		if (!bad && opts.validate) {
			for (const [name, msg] of Object.entries(opts.validate(values)
			    || {})) {
				const f = fields.find((x) => x.input.name === name);
				if (f) {
					fieldError(f.input, msg);
					bad = bad || f.input;
				}
			}
		}
		if (bad) {
			bad.focus();
			return;
		}
		button.disabled = true;
		button.setAttribute("aria-busy", "true");
		const label = button.textContent;
		button.textContent = opts.busy || t("form.busy");
		try {
			const out = await opts.onsubmit(values, el, status);
			if (out instanceof Node)
				status.replaceChildren(out);
			else if (out)
				status.replaceChildren(okBox(out));
			if (opts.reset && out !== false)
				el.reset();
		} catch (err) {
			status.replaceChildren(errorBox(err));
			if (err && err.field) {
				const f = fields.find((x) => x.input.name === err.field);
				if (f)
					fieldError(f.input, err.message);
			}
		} finally {
			button.disabled = false;
			button.removeAttribute("aria-busy");
			button.textContent = label;
		}
	});
	el.fields = Object.fromEntries(fields.map((f) => [f.input.name,
	    f.input]));
	return el;
}

// A modal dialog (the browser's own <dialog>: focus stays inside, Escape
// closes it, focus returns to the opener). content(close) builds its body.
export function dialog(title, content) {
	const titleId = nextId("dlg");
	const dlg = h("dialog", { "aria-labelledby": titleId, class: "dialog" });
	const opener = document.activeElement;
	const close = () => dlg.close();
	dlg.addEventListener("close", () => {
		dlg.remove();
		if (opener && opener.isConnected)
			opener.focus();
	});
	dlg.append(h("h2", { id: titleId }, title), content(close),
	    h("button", { type: "button", class: "close", onclick: close,
	    "aria-label": t("dialog.close") }, "×"));
	document.body.append(dlg);
	dlg.showModal();
	const first = dlg.querySelector("input, select, textarea, button");
	if (first)
		first.focus();
	return dlg;
}

// Ask before an action that cannot be undone; resolves true or false.
export function confirm(title, text, action, danger = true) {
	return new Promise((resolve) => {
		let ok = false;
		const dlg = dialog(title, (close) => h("div", h("p", text),
		    h("div", { class: "actions" }, h("button", { type: "button",
		    class: danger ? "danger" : "primary", onclick: () => {
		    ok = true; close(); } }, action), h("button", { type: "button",
		    class: "secondary", onclick: close }, t("dialog.cancel")))));
		dlg.addEventListener("close", () => resolve(ok));
	});
}

// A progress report for a long action: a labelled <progress> (without a
// value while the length is unknown) and a line of text, announced.
export function progress(label) {
	const id = nextId("prog");
	const bar = h("progress", { id, max: 100 });
	const text = h("p", { class: "progress-text", "aria-live": "polite" });
	const el = h("div", { class: "progress" }, h("label", { for: id },
	    label), bar, text);
	return {
		el,
		set(done, total, msg) {
			if (total) {
				bar.max = total;
				bar.value = done;
			} else {
				bar.removeAttribute("value");
			}
			if (msg !== undefined)
				text.textContent = msg;
		},
		finish(msg) {
			bar.max = 1;
			bar.value = 1;
			if (msg !== undefined)
				text.textContent = msg;
		},
	};
}

// A row of buttons for one object's actions.
export function buttons(...items) {
	return h("div", { class: "row-actions" }, items.filter(Boolean));
}

export function button(label, onclick, kind = "secondary", attrs = {}) {
	return h("button", Object.assign({ type: "button", class: kind,
	    onclick }, attrs), label);
}

// A section with a heading (level 2 by default).
export function section(title, ...children) {
	const id = nextId("sec");
	return h("section", { "aria-labelledby": id }, h("h2", { id }, title),
	    ...children);
}

// Links to the first and the next page of a list paged by cursor (the
// cursor is in the page's address, so a page can be bookmarked), or null
// when everything is on this page.
export function pager(path, params, cursor, next) {
	if (!cursor && !next)
		return null;
	return h("nav", { class: "pager", "aria-label": t("pager.label") },
	    cursor ? link(url(path, params), t("pager.first")) : null,
	    next ? link(url(path, Object.assign({}, params, { cursor: next })),
	    t("pager.next")) : null);
}
