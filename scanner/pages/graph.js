(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("graph-data").textContent);
  var colours = data.colours, byId = {}, outEdges = {}, inEdges = {};
  var svg = document.getElementById("svg"), viewport = document.getElementById("viewport");
  var view = {x: 0, y: 0, k: 1}, selected = null, matches = [], matchIndex = -1;
  var W = 210, H = 26;
  function el(name, attrs, parent) {
    var e = document.createElementNS(SVGNS, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function cut(text, n) { return text.length > n ? text.slice(0, n - 1) + "\u2026" : text; }
  function apply() { viewport.setAttribute("transform", "translate(" + view.x + "," + view.y + ") scale(" + view.k + ")"); }
  data.nodes.forEach(function (n) { byId[n.id] = n; outEdges[n.id] = []; inEdges[n.id] = []; });
  var groupLayer = document.getElementById("groups");
  data.groups.forEach(function (g) {
    var ge = el("g", {"class": "group"}, groupLayer);
    el("rect", {x: g.x, y: g.y, width: g.w, height: g.h, rx: 8}, ge);
    el("text", {x: g.x + 8, y: g.y + 14}, ge).textContent = cut(g.source, 34);
  });
  var edgeLayer = document.getElementById("edges");
  data.edges.forEach(function (e) {
    var a = byId[e.source], b = byId[e.target];
    var x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    if (b.x <= a.x) { x1 = a.x + W / 2; x2 = b.x + W / 2; }
    var dx = Math.max(40, Math.abs(x2 - x1) / 2);
    var d = "M" + x1 + "," + y1 + " C" + (x1 + dx) + "," + y1 + " " + (x2 - dx) + "," + y2 + " " + x2 + "," + y2;
    e.el = el("path", {d: d, "class": "edge e-" + e.type, stroke: data.edgeColours[e.type] || "#999",
      "stroke-dasharray": e.type === "feeds" || e.type === "contains" ? "" : "4 3"}, edgeLayer);
    el("title", {}, e.el).textContent = e.source + " \u2192 " + e.target + " (" + e.label + ")";
    outEdges[e.source].push(e); inEdges[e.target].push(e);
  });
  var nodeLayer = document.getElementById("nodes");
  data.nodes.forEach(function (n) {
    var c = colours[n.status] || colours.healthy;
    var g = el("g", {"class": "node t-" + n.type, "data-id": n.id, transform: "translate(" + n.x + "," + n.y + ")"}, nodeLayer);
    var r = n.type === "workflow" ? 13 : (n.type === "asset" ? 3 : 7);
    el("rect", {width: W, height: H, rx: r, fill: c[0], stroke: c[1]}, g);
    el("text", {x: 8, y: 11}, g).textContent = cut(n.label, 34);
    var sub = el("text", {x: 8, y: 22, "class": "sub"}, g);
    sub.textContent = cut(n.type + (n.sub ? " \u00b7 " + n.sub : ""), 40);
    el("title", {}, g).textContent = n.id;
    n.el = g;
    g.addEventListener("click", function (ev) { ev.stopPropagation(); select(n.id, false); });
  });
  function link(id) {
    var a = document.createElement("a");
    a.textContent = id; a.addEventListener("click", function () { select(id, true); });
    return a;
  }
  function row(table, key, value) {
    var tr = table.insertRow(), k = tr.insertCell(), v = tr.insertCell();
    k.className = "k"; k.textContent = key;
    if (value instanceof Node) { v.appendChild(value); } else { v.textContent = String(value); }
  }
  function select(id, centre) {
    var n = byId[id];
    if (!n) { return; }
    if (selected) { selected.el.classList.remove("selected"); }
    document.querySelectorAll(".lit").forEach(function (e) { e.classList.remove("lit"); });
    selected = n; n.el.classList.add("selected"); n.el.classList.add("lit");
    svg.classList.add("dim");
    outEdges[id].concat(inEdges[id]).forEach(function (e) {
      e.el.classList.add("lit"); byId[e.source].el.classList.add("lit"); byId[e.target].el.classList.add("lit");
    });
    var box = document.getElementById("details"); box.textContent = "";
    var h = document.createElement("h2"); h.textContent = n.label; box.appendChild(h);
    var c = colours[n.status] || colours.healthy, badge = document.createElement("span");
    badge.className = "badge"; badge.style.background = c[0]; badge.style.borderColor = c[1];
    badge.textContent = n.type + " \u00b7 " + n.status; box.appendChild(badge);
    var t = document.createElement("table"); box.appendChild(t);
    row(t, "id", n.id);
    Object.keys(n.attrs).forEach(function (k) { if (k !== "findings") { row(t, k, n.attrs[k]); } });
    if (n.findings && n.findings.length) {
      var fh = document.createElement("h3"); fh.textContent = "Open findings"; box.appendChild(fh);
      var ul = document.createElement("ul"); box.appendChild(ul);
      n.findings.forEach(function (f) { var li = document.createElement("li"); li.textContent = f.severity + " " + f.kind + ": " + f.message; ul.appendChild(li); });
    }
    [["Out", outEdges[id], "target"], ["In", inEdges[id], "source"]].forEach(function (spec) {
      if (!spec[1].length) { return; }
      var eh = document.createElement("h3"); eh.textContent = spec[0] + " (" + spec[1].length + ")"; box.appendChild(eh);
      var ul = document.createElement("ul"); box.appendChild(ul);
      spec[1].slice(0, 300).forEach(function (e) {
        var li = document.createElement("li"); li.appendChild(document.createTextNode(e.label + " "));
        li.appendChild(link(e[spec[2]])); ul.appendChild(li);
      });
    });
    if (centre) { focus(n); }
  }
  function focus(n) {
    var rect = svg.getBoundingClientRect();
    view.k = Math.max(view.k, 0.8);
    view.x = rect.width / 2 - (n.x + W / 2) * view.k; view.y = rect.height / 2 - (n.y + H / 2) * view.k; apply();
  }
  function fit() {
    var rect = svg.getBoundingClientRect(), minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    data.nodes.forEach(function (n) { minX = Math.min(minX, n.x); minY = Math.min(minY, n.y); maxX = Math.max(maxX, n.x + W); maxY = Math.max(maxY, n.y + H); });
    if (!data.nodes.length) { return; }
    var k = Math.min((rect.width - 40) / (maxX - minX + 1), (rect.height - 40) / (maxY - minY + 1), 1.5);
    view.k = k; view.x = 20 - minX * k + Math.max(0, (rect.width - 40 - (maxX - minX) * k) / 2); view.y = 20 - minY * k; apply();
  }
  svg.addEventListener("click", function () {
    if (selected) { selected.el.classList.remove("selected"); selected = null; }
    svg.classList.remove("dim");
  });
  var drag = null, canvas = document.getElementById("canvas");
  svg.addEventListener("pointerdown", function (ev) { drag = {x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false}; canvas.classList.add("dragging"); });
  window.addEventListener("pointermove", function (ev) {
    if (!drag) { return; }
    view.x = drag.vx + ev.clientX - drag.x; view.y = drag.vy + ev.clientY - drag.y; apply();
  });
  window.addEventListener("pointerup", function () { drag = null; canvas.classList.remove("dragging"); });
  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var rect = svg.getBoundingClientRect(), mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
    var k = Math.min(4, Math.max(0.02, view.k * Math.exp(-ev.deltaY * 0.0015)));
    view.x = mx - (mx - view.x) * k / view.k; view.y = my - (my - view.y) * k / view.k; view.k = k; apply();
  }, {passive: false});
  var search = document.getElementById("search"), hits = document.getElementById("hits");
  search.addEventListener("input", function () {
    var q = search.value.trim().toLowerCase();
    matches.forEach(function (n) { n.el.classList.remove("match"); });
    matches = q ? data.nodes.filter(function (n) { return n.id.toLowerCase().indexOf(q) >= 0 || n.label.toLowerCase().indexOf(q) >= 0; }) : [];
    matches.forEach(function (n) { n.el.classList.add("match"); });
    matchIndex = -1; hits.textContent = q ? matches.length + " found" : "";
  });
  search.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && matches.length) { matchIndex = (matchIndex + 1) % matches.length; select(matches[matchIndex].id, true); }
  });
  document.getElementById("fit").addEventListener("click", fit);
  var legend = document.getElementById("legend");
  Object.keys(colours).forEach(function (s) {
    var span = document.createElement("span"), i = document.createElement("i");
    i.style.background = colours[s][0]; i.style.borderColor = colours[s][1];
    span.appendChild(i); span.appendChild(document.createTextNode(s.replace("_", "-"))); legend.appendChild(span);
  });
  var toggles = document.getElementById("toggles");
  data.edgeTypes.forEach(function (t) {
    var label = document.createElement("label"), box = document.createElement("input");
    box.type = "checkbox"; box.checked = true;
    box.addEventListener("change", function () { svg.classList.toggle("hide-" + t, !box.checked); });
    label.appendChild(box); label.appendChild(document.createTextNode(" " + t)); toggles.appendChild(label);
  });
  fit();
  // #node=ID selects a node and #search=TEXT searches, so a link can point at a detail.
  var hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("search")) { search.value = hash.get("search"); search.dispatchEvent(new Event("input")); }
  if (hash.get("node")) { select(hash.get("node"), true); }
  document.body.setAttribute("data-rendered", String(nodeLayer.childNodes.length));
  document.body.setAttribute("data-edges", String(edgeLayer.childNodes.length));
})();
