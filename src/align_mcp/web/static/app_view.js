// align-mcp's MCP App views (the label view and the alignment report) inside a host's chat.
// The view talks to the host by postMessage JSON-RPC (MCP Apps, SEP-1865): ui/initialize, then the host sends
// the tool's input and result; the view calls the server's tools with tools/call through the host.
// Run contents are untrusted model output: they only ever reach the page as textContent.
"use strict";
(function () {
  const PROTOCOL = "2026-01-26";
  const LONG = 1200;
  const view = document.body.dataset.view;
  const $ = (id) => document.getElementById(id);
  let nextId = 1;
  const waiting = new Map();

  function post(message) {
    window.parent.postMessage(message, "*");
  }
  function request(method, params) {
    const id = nextId++;
    post({ jsonrpc: "2.0", id: id, method: method, params: params });
    return new Promise((resolve, reject) => waiting.set(id, { resolve: resolve, reject: reject }));
  }
  function textOf(result) {
    return (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
  }
  async function callTool(name, args) {
    const result = await request("tools/call", { name: name, arguments: args });
    if (result.isError) throw new Error(textOf(result) || name + " failed");
    return result.structuredContent || {};
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function shown(value) {
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }
  function valueBlock(value) {
    const text = shown(value);
    const box = el("div", "field-value");
    const pre = el("pre", typeof value === "string" ? "text" : "json", text);
    box.appendChild(pre);
    if (text.length > LONG) {
      pre.classList.add("collapsed");
      const more = el("button", "show-all", "show all (" + text.length.toLocaleString("en") + " characters)");
      more.type = "button";
      more.addEventListener("click", () => {
        pre.classList.remove("collapsed");
        more.remove();
      });
      box.appendChild(more);
    }
    return box;
  }
  function fields(title, data) {
    const part = el("section", "part");
    part.appendChild(el("h3", "", title));
    const keys = data ? Object.keys(data) : [];
    if (!keys.length) part.appendChild(el("div", "empty", "(empty)"));
    for (const key of keys) {
      const field = el("div", "field");
      field.appendChild(el("div", "key", key));
      field.appendChild(valueBlock(data[key]));
      part.appendChild(field);
    }
    return part;
  }
  function say(text, isError) {
    const box = $("message");
    box.textContent = text || "";
    box.hidden = !text;
    box.className = isError ? "error" : "info";
  }
  function painted() {
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
    document.body.dataset.state = "ready";
  }

  // ---- the label view ----------------------------------------------------------------------------------------

  const label = {
    evaluator: "",
    labeler: "chat",
    limit: 5,
    items: [],
    index: 0,
    scores: [],
    labeled: [],
    pending: null,
    balance: null,
    comment: "",
    busy: false,
  };

  // The score type as next_items words it: "binary (0 = fail, 1 = pass)", "ordinal (1..5)", "categorical (a, b)".
  function scoresOf(words) {
    if (/^binary/.test(words)) return [{ key: "1", value: 1, name: "pass" }, { key: "0", value: 0, name: "fail" }];
    const ordinal = /^ordinal \((-?\d+)\.\.(-?\d+)\)/.exec(words);
    if (ordinal) {
      const out = [];
      const low = Number(ordinal[1]);
      const high = Number(ordinal[2]);
      for (let v = low; v <= high; v++) out.push({ key: v >= 0 && v <= 9 && low >= 0 && high <= 9 ? String(v) : "", value: v, name: String(v) });
      return out;
    }
    const categorical = /^categorical \((.*)\)$/.exec(words);
    const labels = categorical ? categorical[1].split(", ") : [];
    return labels.map((name, i) => ({ key: i < 9 ? String(i + 1) : "", value: name, name: name }));
  }

  function takeItems(page) {
    label.evaluator = page.evaluator || label.evaluator;
    label.labeler = page.labeler || label.labeler;
    label.scores = scoresOf(page.score_type || "");
    label.items = page.items || [];
    label.index = 0;
    label.pending = page.pending;
    renderScores();
    renderRun();
  }

  function renderScores() {
    const box = $("scores");
    box.replaceChildren();
    for (const score of label.scores) {
      const button = el("button", "score", (score.key ? score.key + " " : "") + score.name);
      button.type = "button";
      button.dataset.score = String(score.value);
      button.addEventListener("click", () => submit(score.value));
      box.appendChild(button);
    }
    const keys = $("keys");
    keys.replaceChildren();
    const help = label.scores.filter((s) => s.key).map((s) => [s.key, s.name]);
    help.push(["c", "comment (Enter keeps it, Esc leaves the box)"], ["j / k", "next / previous run"],
      ["u", "undo: back to your last label, to replace it"], ["s", "skip this run"]);
    for (const pair of help) {
      const row = el("li");
      row.appendChild(el("kbd", "", pair[0]));
      row.appendChild(document.createTextNode(" " + pair[1]));
      keys.appendChild(row);
    }
  }

  function renderProgress() {
    const parts = [];
    if (label.balance) {
      const counts = Object.entries(label.balance.counts || {}).map((e) => e[1] + " " + nameOf(e[0])).join(" / ");
      parts.push(label.balance.total + " labeled" + (counts ? ", balance " + counts : ""));
      for (const warning of label.balance.warnings || []) parts.push(warning);
    }
    if (label.pending !== null && label.pending !== undefined) parts.push(label.pending + " in the queue when fetched");
    $("progress").textContent = parts.join(" · ");
  }
  function nameOf(value) {
    const score = label.scores.find((s) => String(s.value) === String(value));
    return score ? score.name : String(value);
  }

  function renderRun() {
    const run = $("run");
    run.replaceChildren();
    const item = label.items[label.index];
    $("evaluator").textContent = label.evaluator;
    if (!item) {
      run.removeAttribute("data-run-id");
      run.appendChild(el("p", "empty", "Nothing left to label in this batch."));
    } else {
      run.dataset.runId = item.run_id;
      run.appendChild(el("div", "run-id", "Run " + item.run_id + " (" + (label.index + 1) + " of " + label.items.length + ")"));
      run.appendChild(fields("Inputs", item.inputs));
      run.appendChild(fields(item.outputs_b ? "Output A" : "Outputs", item.outputs));
      if (item.outputs_b) run.appendChild(fields("Output B", item.outputs_b));
      if (item.reference_outputs) run.appendChild(fields("Reference outputs", item.reference_outputs));
    }
    $("comment").value = label.comment;
    renderProgress();
    painted();
  }

  async function fetchMore() {
    label.busy = true;
    document.body.dataset.state = "busy";
    try {
      takeItems(await callTool("next_items", { evaluator: label.evaluator, labeler: label.labeler, limit: label.limit }));
      say("");
    } catch (e) {
      say(e.message, true);
      painted();
    } finally {
      label.busy = false;
    }
  }

  async function submit(value) {
    const item = label.items[label.index];
    if (!item || label.busy) return;
    label.busy = true;
    document.body.dataset.state = "busy";
    const args = { evaluator: label.evaluator, run_id: item.run_id, score: value, labeler: label.labeler };
    if (label.comment.trim()) args.comment = label.comment.trim();
    try {
      const result = await callTool("submit_label", args);
      if (result.balance) label.balance = result.balance;
      label.labeled.push(item);
      label.comment = "";
      $("comment-state").textContent = "";
      say("");
      label.busy = false;
      if (label.index + 1 < label.items.length) {
        label.index += 1;
        renderRun();
      } else {
        await fetchMore();
      }
    } catch (e) {
      label.busy = false;
      say(e.message, true);
      painted();
    }
  }

  function move(step) {
    const to = label.index + step;
    if (to < 0 || to >= label.items.length) return;
    label.index = to;
    label.comment = "";
    $("comment-state").textContent = "";
    renderRun();
  }

  function onLabelKey(event) {
    const box = $("comment");
    if (event.target === box) {
      if (event.key === "Enter") {
        event.preventDefault();
        label.comment = box.value;
        $("comment-state").textContent = label.comment.trim() ? "Comment kept for the next label." : "";
        box.blur();
      } else if (event.key === "Escape") {
        box.blur();
      }
      return;
    }
    if (event.target && event.target.tagName === "INPUT") return;
    if (event.ctrlKey || event.metaKey || event.altKey || label.busy) return;
    const score = label.scores.find((s) => s.key && s.key === event.key);
    if (score) {
      event.preventDefault();
      submit(score.value);
    } else if (event.key === "c") {
      event.preventDefault();
      box.focus();
    } else if (event.key === "j" || event.key === "s") {
      event.preventDefault();
      if (label.index + 1 < label.items.length) move(1);
      else fetchMore();
    } else if (event.key === "k") {
      event.preventDefault();
      move(-1);
    } else if (event.key === "u") {
      event.preventDefault();
      const last = label.labeled.pop();
      if (last !== undefined) {
        const at = label.items.indexOf(last);
        if (at >= 0) label.index = at;
        else label.items.splice(label.index, 0, last);
        label.comment = "";
        renderRun();
        say("Back to your last label: a new score replaces it (the history is kept).");
      }
    }
  }

  // ---- the alignment report --------------------------------------------------------------------------------

  const report = { evaluator: "", run: null, kind: "", offset: 0, direction: null };

  function scoreWords(value) {
    if (report.kind === "binary" && (value === 0 || value === 1)) return (value === 1 ? "pass" : "fail") + " (" + value + ")";
    return value === null || value === undefined ? "none" : String(value);
  }

  function percent(rate) {
    if (!rate || rate.value === null || rate.value === undefined) return "n/a";
    let text = (100 * rate.value).toFixed(1) + "% (" + rate.k + "/" + rate.n + ")";
    if (rate.ci) text += ", 95% CI " + (100 * rate.ci.low).toFixed(1) + "–" + (100 * rate.ci.high).toFixed(1) + "%";
    return text;
  }
  function row(table, name, value) {
    const tr = el("tr");
    tr.appendChild(el("th", "", name));
    tr.appendChild(el("td", "", value));
    table.appendChild(tr);
  }

  function renderReport(data) {
    const run = data.run || {};
    report.evaluator = run.evaluator || report.evaluator;
    report.run = run.id;
    $("evaluator").textContent = report.evaluator;
    const box = $("summary");
    box.replaceChildren();
    box.appendChild(el("p", "run-line", "Alignment run " + run.id + " of " + run.prompt_ref + " on the " + run.split +
      " split: " + run.status + ", " + run.judged + " judged, " + run.errors + " errors."));
    const metrics = run.metrics;
    if (metrics) report.kind = metrics.kind;
    if (metrics) {
      const table = el("table", "metrics");
      row(table, "Agreement", percent(metrics.agreement));
      const kci = metrics.kappa_ci ? " (" + metrics.kappa_ci.low.toFixed(3) + "–" + metrics.kappa_ci.high.toFixed(3) + ")" : "";
      row(table, "Cohen's κ", metrics.kappa === null || metrics.kappa === undefined ? "n/a" : metrics.kappa.toFixed(3) + kci);
      if (metrics.tpr) row(table, "TPR (human pass)", percent(metrics.tpr));
      if (metrics.tnr) row(table, "TNR (human fail)", percent(metrics.tnr));
      if (metrics.within_one) row(table, "Within one", percent(metrics.within_one));
      if (metrics.false_pass !== null && metrics.false_pass !== undefined) row(table, "False pass", String(metrics.false_pass));
      if (metrics.false_fail !== null && metrics.false_fail !== undefined) row(table, "False fail", String(metrics.false_fail));
      box.appendChild(table);
    }
    if (data.baseline && data.baseline.metrics) {
      box.appendChild(el("p", "baseline", "Last saved version " + data.baseline.prompt_ref + ": agreement " +
        percent(data.baseline.metrics.agreement)));
    }
    if (data.flips) {
      box.appendChild(el("p", "flips", "Against " + data.flips.baseline + ": " + data.flips.fixed.length + " fixed, " +
        data.flips.broken.length + " broken. " + data.flips.verdict));
    }
    for (const note of (data.warnings || []).concat(data.notes || [])) box.appendChild(el("p", "note", note));
    loadMisaligned(0);
  }

  async function loadMisaligned(offset) {
    document.body.dataset.state = "busy";
    const args = { evaluator: report.evaluator, alignment_run: report.run, offset: offset, limit: 5 };
    if (report.direction) args.direction = report.direction;
    const list = $("cases");
    try {
      const page = await callTool("get_misaligned", args);
      report.offset = offset;
      list.replaceChildren();
      $("cases-count").textContent = page.total + " misaligned" + (page.total ? ", showing " + (offset + 1) + "–" +
        (offset + page.cases.length) : "");
      for (const item of page.cases) {
        const card = el("article", "case");
        card.dataset.runId = item.run_id;
        card.appendChild(el("h3", "", item.run_id + ": " + item.direction.replace("_", " ")));
        card.appendChild(fields("Inputs", item.inputs));
        card.appendChild(fields(item.outputs_b ? "Output A" : "Outputs", item.outputs));
        if (item.outputs_b) card.appendChild(fields("Output B", item.outputs_b));
        const sides = el("div", "sides");
        const human = el("div", "human");
        human.appendChild(el("h4", "", "Human: " + scoreWords(item.human_score) + (item.labeler ? " (" + item.labeler + ")" : "")));
        human.appendChild(el("p", "comment", item.human_comment || "(no comment)"));
        const judge = el("div", "judge");
        judge.appendChild(el("h4", "", "Judge: " + scoreWords(item.judge_score)));
        judge.appendChild(el("p", "reasoning", item.judge_reasoning || "(no reasoning)"));
        sides.appendChild(human);
        sides.appendChild(judge);
        card.appendChild(sides);
        list.appendChild(card);
      }
      const more = $("more");
      more.hidden = page.next_offset === null || page.next_offset === undefined;
      more.onclick = () => loadMisaligned(page.next_offset);
      say("");
    } catch (e) {
      say(e.message, true);
    }
    painted();
  }

  // ---- the host bridge -------------------------------------------------------------------------------------

  function onToolInput(params) {
    const args = (params && params.arguments) || {};
    if (view === "label") {
      if (typeof args.evaluator === "string") label.evaluator = args.evaluator;
      if (typeof args.labeler === "string" && args.labeler) label.labeler = args.labeler;
      if (typeof args.limit === "number") label.limit = args.limit;
    } else if (typeof args.evaluator === "string") {
      report.evaluator = args.evaluator;
    }
  }
  function onToolResult(result) {
    if (!result) return;
    if (result.isError) {
      say(textOf(result), true);
      painted();
      return;
    }
    if (view === "label") takeItems(result.structuredContent || {});
    else renderReport(result.structuredContent || {});
  }

  window.addEventListener("message", (event) => {
    if (event.source !== window.parent) return;
    const message = event.data;
    if (!message || message.jsonrpc !== "2.0") return;
    if (message.method === undefined && waiting.has(message.id)) {
      const waiter = waiting.get(message.id);
      waiting.delete(message.id);
      if (message.error) waiter.reject(new Error(message.error.message || "the host refused the request"));
      else waiter.resolve(message.result || {});
    } else if (message.method === "ui/notifications/tool-input") {
      onToolInput(message.params);
    } else if (message.method === "ui/notifications/tool-result") {
      onToolResult(message.params);
    } else if (message.id !== undefined && (message.method === "ui/resource-teardown" || message.method === "ping")) {
      post({ jsonrpc: "2.0", id: message.id, result: {} });
    }
  });

  if (view === "label") {
    document.addEventListener("keydown", onLabelKey);
  }
  document.body.dataset.state = "starting";
  request("ui/initialize", {
    protocolVersion: PROTOCOL,
    appInfo: { name: "align-mcp " + view, version: document.body.dataset.version || "" },
    appCapabilities: {},
  }).then(() => {
    post({ jsonrpc: "2.0", method: "ui/notifications/initialized", params: {} });
    // The host sizes the frame to the view: tell it the view's size whenever that changes.
    let last = "";
    new ResizeObserver(() => {
      const size = { width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight };
      const key = size.width + "x" + size.height;
      if (key === last) return;
      last = key;
      post({ jsonrpc: "2.0", method: "ui/notifications/size-changed", params: size });
    }).observe(document.documentElement);
  }, (e) => say(e.message, true));
})();
