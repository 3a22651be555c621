
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("plan-data").textContent);
  var panel = document.getElementById("panel");
  var body = document.getElementById("panel-body");
  var svg = document.getElementById("plan-svg");
  var scale = 1;

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function chip(label, color) {
    var c = el("span", label, "chip");
    c.style.background = color;
    return c;
  }

  function row(table, cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (cell) {
      var td = document.createElement("td");
      if (typeof cell === "object") td.appendChild(cell); else td.textContent = String(cell);
      tr.appendChild(td);
    });
    table.appendChild(tr);
  }

  function tensorTable(title, tensors) {
    body.appendChild(el("h3", title + " (" + tensors.length + ")"));
    var table = document.createElement("table");
    tensors.forEach(function (t) {
      row(table, [el("span", t.name, t.const ? "name const" : "name"), t.shape, t.dtype + (t.const ? " const" : "")]);
    });
    body.appendChild(table);
  }

  function outputsText(op) {
    return op.outputs.map(function (t) { return t.name + " " + t.shape + " " + t.dtype; }).join("; ") +
      " · IRS " + op.irs.toLocaleString("en-US") + " B";
  }

  function highlight(id) {
    Array.prototype.forEach.call(svg.querySelectorAll(".block.selected"), function (g) { g.classList.remove("selected"); });
    Array.prototype.forEach.call(svg.querySelectorAll(".edge.hl"), function (p) { p.classList.remove("hl"); });
    if (id === null) return null;
    Array.prototype.forEach.call(svg.querySelectorAll(".edge"), function (p) {
      if (p.getAttribute("data-from") === id || p.getAttribute("data-to") === id) p.classList.add("hl");
    });
    var group = svg.querySelector('.block[data-block="' + id + '"]');
    if (group) group.classList.add("selected");
    return group;
  }

  function show(id) {
    var block = data.blocks[id];
    if (!block) return;
    body.textContent = "";
    var h = el("h2", "Block #" + block.id + " ");
    h.appendChild(chip(block.mapping, block.color));
    body.appendChild(h);
    body.appendChild(el("div", block.ops.length + " operator(s), fused type " + block.mapping));
    if (block.method) body.appendChild(el("div", "kernel: " + block.method));
    body.appendChild(el("h3", "Operators"));
    var ops = document.createElement("table");
    row(ops, [el("b", "type"), el("b", "map"), el("b", "name / outputs")]);
    block.ops.forEach(function (op) {
      var c = chip(op.chip, op.color), cell = document.createElement("div");
      c.title = op.mapping;
      cell.appendChild(el("div", op.name, "name"));
      cell.appendChild(el("div", outputsText(op), "name out"));
      row(ops, [op.type, c, cell]);
    });
    body.appendChild(ops);
    tensorTable("Inputs", block.inputs);
    tensorTable("Outputs", block.outputs);
    panel.hidden = false;
    panel.setAttribute("data-block", String(block.id));
    return highlight(String(block.id));
  }

  function hide() {
    panel.hidden = true;
    panel.removeAttribute("data-block");
    highlight(null);
  }

  function zoom(how) {
    var w = Number(svg.getAttribute("data-width")), hgt = Number(svg.getAttribute("data-height"));
    if (how === "fit") scale = Math.min(1, (document.getElementById("graph").clientWidth - 24) / w);
    else if (Number(how) === 0) scale = 1;
    else scale = Math.max(0.1, Math.min(4, scale * Number(how)));
    svg.setAttribute("width", String(Math.round(w * scale)));
    svg.setAttribute("height", String(Math.round(hgt * scale)));
  }

  svg.addEventListener("click", function (ev) {
    var g = ev.target.closest ? ev.target.closest(".block") : null;
    if (g) show(g.getAttribute("data-block"));
  });
  document.getElementById("panel-close").addEventListener("click", hide);
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") hide(); });
  Array.prototype.forEach.call(document.querySelectorAll(".toolbar button"), function (b) {
    b.addEventListener("click", function () { zoom(b.getAttribute("data-zoom")); });
  });

  var wanted = /^#block-(\d+)$/.exec(window.location.hash);
  if (wanted) {
    var group = show(wanted[1]);
    if (group && group.scrollIntoView) group.scrollIntoView({block: "center"});
  }
  document.getElementById("block-count").textContent = String(Object.keys(data.blocks).length);
  document.body.setAttribute("data-ready", "1");
})();
