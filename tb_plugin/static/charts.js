// The scalars card: one sparkline per logged scalar (explanations/...), a line per checked run in
// its run colour; /scalars is asked once per run and page.

import { NA, el, getJSON, isNumber } from "./util.js";

// `refreshColours`: gives the new lines their run colours (theme.js); `onToggle`: after the card
// was opened or closed (state.scalarsOpen, kept in the URL).
export function createCharts({ state, refreshColours, onToggle = () => {} }) {
  const scalars = new Map();
  const charts = el("div", { id: "charts", className: "card-body" });
  // Collapsible: a long list of sparklines pushes the grid down; closed, it stays one line.
  const details = el("details", { id: "charts-details", open: state.scalarsOpen !== false },
    [el("summary", { className: "card-title", text: "Scalars" }), charts]);
  details.addEventListener("toggle", () => {
    if (state.scalarsOpen === details.open) return;
    state.scalarsOpen = details.open;
    onToggle();
  });
  const chartsCard = el("div", { className: "card", id: "charts-card" }, [details]);
  // The state changed under the card (a link applied): show it.
  const show = () => { details.open = state.scalarsOpen !== false; };

  function sparkline(tag, series) {
    const width = 180, height = 48, ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    const all = series.flatMap((s) => s.points.filter((p) => isNumber(p[0]) && isNumber(p[1])));  // null = not a number
    if (all.length) {
      const steps = all.map((p) => p[0]), values = all.map((p) => p[1]);
      const [s0, s1] = [Math.min(...steps), Math.max(...steps)];
      const [v0, v1] = [Math.min(0, ...values), Math.max(1, ...values)];
      for (const s of series) {
        const finite = s.points.filter((p) => isNumber(p[0]) && isNumber(p[1]));
        const line = document.createElementNS(ns, "polyline");
        line.setAttribute("fill", "none");
        line.setAttribute("class", "run-colored");  // its colour follows the theme
        line.dataset.run = s.run;
        line.style.stroke = "var(--run)";
        line.setAttribute("stroke-width", "2");
        line.setAttribute("points", finite.map(([x, v]) =>
          `${((x - s0) / Math.max(1, s1 - s0)) * (width - 4) + 2},${height - 2 - ((v - v0) / (v1 - v0)) * (height - 4)}`).join(" "));
        svg.appendChild(line);
      }
    }
    const last = (points) => {
      const v = points.length ? points[points.length - 1][1] : null;
      return isNumber(v) ? v.toFixed(3) : NA;
    };
    return el("div", { className: "chart" }, [
      el("div", { className: "chart-title", text: `${tag}: ${series.map((s) => last(s.points)).join(" / ")}` }),
      svg,
    ]);
  }

  function buildCharts() {
    const chosen = [...state.runs];
    Promise.all(chosen.map((run) => {
      if (!scalars.has(run)) {
        const promise = getJSON("./scalars", { run });
        promise.catch(() => scalars.delete(run));
        scalars.set(run, promise);
      }
      return scalars.get(run).catch(() => ({}));
    })).then((answers) => {
      if (chosen.join("\n") !== state.runs.join("\n")) return;  // the runs changed meanwhile
      const tags = [...new Set(answers.flatMap((a) => Object.keys(a)))].sort();
      charts.replaceChildren(...tags.map((tag) => sparkline(tag.replace("explanations/", ""),
        chosen.map((run, k) => ({ run, points: answers[k][tag] || [] })).filter((s) => s.points.length))));
      chartsCard.style.display = tags.length ? "" : "none";
      refreshColours();
    });
  }

  return { card: chartsCard, build: buildCharts, show };
}
