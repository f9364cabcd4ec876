"""The UI's stylesheet and script, served from this process (no CDN, no build step)."""

CSS = """
body { margin: 0; background: #fafafa; font: 13px system-ui, -apple-system, sans-serif; }
header { background: #263238; color: #fff; padding: 8px 20px; }
header a { color: #cfe8ff; margin-left: 16px; text-decoration: none; }
header .live { float: right; color: #9ccc65; font-size: 12px; }
main { max-width: 1250px; margin: 16px auto; background: #fff; padding: 12px 24px;
  border: 1px solid #e3e3e3; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 1.4em; }
.scroll { overflow-x: auto; }
.scroll.lineage { max-height: 640px; overflow: auto; border: 1px solid #eee; }
form.filter { margin: 8px 0; } .pager { color: #555; } .pager a { margin-left: 10px; }
table.runs td { white-space: nowrap; }
table.runs a.sort { color: inherit; text-decoration: none; white-space: nowrap; }
table.runs th a.metric { color: #1a5fb4; } table.runs th a.param { color: #6a3d9a; }
details.session summary { cursor: pointer; color: #1a5fb4; }
details.session a.member { display: block; margin-left: 1em; }
.side-by-side { display: flex; gap: 32px; flex-wrap: wrap; align-items: flex-start; }
.review-form { margin: 10px 0; padding: 8px; background: #f4f8ff; border: 1px solid #d0def5; }
section { border-top: 1px solid #eee; margin-top: 1em; }
"""

JS = """
(function () {
  // A graph's selected node (the artifact or model the page is about) in the middle of its view.
  document.querySelectorAll(".scroll .graph [data-selected]").forEach(function (node) {
    const box = node.closest(".scroll");
    const r = node.getBoundingClientRect(), b = box.getBoundingClientRect();
    box.scrollLeft += r.left + r.width / 2 - (b.left + b.width / 2);
    box.scrollTop += r.top + r.height / 2 - (b.top + b.height / 2);
  });
})();
(function () {
  const body = document.body;
  const period = parseFloat(body.dataset.poll || "2") * 1000;
  const initial = body.dataset.state;
  const live = document.getElementById("live");
  if (!initial || !(period > 0)) return;
  // A submitted form (approve, reject) is a navigation of its own: a reload started by a poll
  // that sees the state the form just changed would abort it.
  let leaving = false;
  document.addEventListener("submit", () => { leaving = true; }, true);
  window.addEventListener("pagehide", () => { leaving = true; });
  async function tick() {
    if (leaving) return;
    try {
      const r = await fetch("/api/state", {cache: "no-store"});
      if (r.ok) {
        const data = await r.json();
        if (leaving) return;
        if (data.state !== initial) { location.reload(); return; }
        if (live) live.textContent = "live · " + new Date().toLocaleTimeString();
      }
    } catch (e) {
      if (live) live.textContent = "offline";
    }
    setTimeout(tick, period);
  }
  setTimeout(tick, period);
})();
"""
