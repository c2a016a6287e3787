// Bar charts in SVG, drawn by hand (no library). A chart is a picture for
// those who see it; its figures are always in a table next to it, and the
// picture's text alternative says what it shows and where that table is.

import { h, nextId } from "./dom.js";

const W = 480, H = 220, PAD_L = 56, PAD_B = 32, PAD_T = 10, PAD_R = 6;

function niceMax(v) {
	if (v <= 0)
		return 1;
	const p = 10 ** Math.floor(Math.log10(v));
	for (const m of [1, 2, 2.5, 5, 10])
		if (m * p >= v)
			return m * p;
	return 10 * p;
}

// bars: [{label, value (a number), text (the value written out)}];
// fmt(v) writes an axis value; summary is the picture's text alternative.
export function barChart({ title, bars, fmt, summary }) {
	const id = nextId("chart");
	const max = niceMax(Math.max(0, ...bars.map((b) => b.value)));
	const plotW = W - PAD_L - PAD_R, plotH = H - PAD_T - PAD_B;
	const step = plotW / Math.max(1, bars.length);
	const bw = Math.min(48, step * 0.7);
	const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
	    "aria-labelledby": id + "-t", class: "chart", focusable: "false" },
	    h("svg:title", { id: id + "-t" }, summary || title));
	for (let i = 0; i <= 4; i++) {
		const v = max * i / 4, y = PAD_T + plotH - plotH * i / 4;
		svg.append(h("svg:line", { x1: PAD_L, x2: W - PAD_R, y1: y, y2: y,
		    class: "grid" }), h("svg:text", { x: PAD_L - 6, y: y + 4,
		    class: "axis", "text-anchor": "end" }, fmt ? fmt(v) : v));
	}
	bars.forEach((b, i) => {
		const bh = plotH * Math.max(0, b.value) / max;
		const x = PAD_L + step * i + (step - bw) / 2;
		svg.append(h("svg:rect", { x, y: PAD_T + plotH - bh, width: bw,
		    height: Math.max(bh, b.value > 0 ? 1 : 0), class: "bar" },
		    h("svg:title", `${b.label} : ${b.text}`)),
		    h("svg:text", { x: x + bw / 2, y: H - PAD_B + 16, class: "axis",
		    "text-anchor": "middle" }, b.label));
	});
	return h("figure", { class: "chart-fig" }, svg, h("figcaption", title));
}
