// Small SVG charts drawn here, with nothing loaded from outside: a bar chart
// and a stacked bar chart. Each SVG is an image with a title and a one-line
// description for screen readers; the caller shows the numbers as a table too.
// Colors come from classes styled in go.css (the page's CSP allows no inline
// styles), and every value is also given in words, so color is never alone.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 320;
const HEIGHT = 150;
const PAD = { top: 14, right: 4, bottom: 22, left: 4 };

let chartCount = 0;

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function frame(title, desc) {
  const id = `chart-${++chartCount}`;
  const svg = el("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-labelledby": `${id}-title`,
    "aria-describedby": `${id}-desc`,
    class: "chart-svg",
    preserveAspectRatio: "xMidYMid meet",
  });
  svg.append(el("title", { id: `${id}-title` }, title), el("desc", { id: `${id}-desc` }, desc));
  return svg;
}

/** x positions of n bars across the plot, with a gap between them. */
function slots(n) {
  const plot = WIDTH - PAD.left - PAD.right;
  const step = plot / Math.max(n, 1);
  const width = Math.max(2, step * 0.72);
  return Array.from({ length: n }, (_, i) => ({
    x: PAD.left + i * step + (step - width) / 2,
    width,
    middle: PAD.left + i * step + step / 2,
  }));
}

function axis(svg, labels, positions) {
  const base = HEIGHT - PAD.bottom;
  svg.append(
    el("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: base, y2: base, class: "chart-axis" }),
  );
  // The first and last labels, and a few between when there is room.
  const every = Math.max(1, Math.ceil(labels.length / 4));
  labels.forEach((label, i) => {
    if (i % every !== 0 && i !== labels.length - 1) return;
    if (i !== labels.length - 1 && labels.length - 1 - i < every / 2) return;
    const anchor = i === 0 ? "start" : i === labels.length - 1 ? "end" : "middle";
    const x = anchor === "start" ? positions[i].x : anchor === "end"
      ? positions[i].x + positions[i].width : positions[i].middle;
    svg.append(el("text", { x, y: HEIGHT - 6, "text-anchor": anchor, class: "chart-label" }, label));
  });
}

/**
 * One bar per bucket.
 * @param {{title: string, desc: string, labels: string[], values: (number|null)[],
 *          format: (v: number) => string, className?: string}} spec
 */
export function barChart({ title, desc, labels, values, format, className = "chart-bar" }) {
  const svg = frame(title, desc);
  const numbers = values.map((v) => (Number.isFinite(v) ? v : 0));
  const top = Math.max(...numbers, 0);
  const plot = HEIGHT - PAD.top - PAD.bottom;
  const positions = slots(values.length);
  values.forEach((value, i) => {
    if (!Number.isFinite(value) || value <= 0 || top <= 0) return;
    const height = Math.max(1.5, (value / top) * plot);
    const bar = el("rect", {
      x: positions[i].x,
      y: HEIGHT - PAD.bottom - height,
      width: positions[i].width,
      height,
      rx: 1.5,
      class: className,
    });
    bar.append(el("title", {}, `${labels[i]}: ${format(value)}`));
    svg.append(bar);
  });
  if (top > 0) {
    // The scale in one number: the tallest bar's value, above it.
    const i = numbers.indexOf(top);
    svg.append(
      el("text", {
        x: positions[i].middle,
        y: PAD.top - 3,
        "text-anchor": i === 0 ? "start" : i === values.length - 1 ? "end" : "middle",
        class: "chart-value",
      }, format(top)),
    );
  }
  axis(svg, labels, positions);
  return svg;
}

/**
 * Stacked bars: one per bucket, one segment per series (in order, bottom up).
 * @param {{title: string, desc: string, labels: string[],
 *          series: {key: string, label: string, values: number[]}[]}} spec
 */
export function stackedChart({ title, desc, labels, series }) {
  const svg = frame(title, desc);
  const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const top = Math.max(...totals, 0);
  const plot = HEIGHT - PAD.top - PAD.bottom;
  const positions = slots(labels.length);
  labels.forEach((label, i) => {
    let y = HEIGHT - PAD.bottom;
    for (const s of series) {
      const value = s.values[i] || 0;
      if (value <= 0 || top <= 0) continue;
      const height = (value / top) * plot;
      y -= height;
      const segment = el("rect", {
        x: positions[i].x,
        y,
        width: positions[i].width,
        height,
        class: `chart-seg chart-seg-${s.key}`,
      });
      segment.append(el("title", {}, `${label}: ${value} × ${s.label}`));
      svg.append(segment);
    }
  });
  if (top > 0) {
    svg.append(el("text", { x: PAD.left, y: PAD.top - 3, class: "chart-value" }, `max ${top}`));
  }
  axis(svg, labels, positions);
  return svg;
}
