// align-mcp pages: "show all" for long fields everywhere, and the keyboard-first label view.
// Served as a file: the pages' Content-Security-Policy allows no inline script.
"use strict";

(function () {
  const body = document.body;
  const base = body.dataset.base || "";

  document.addEventListener("click", function (event) {
    const button = event.target.closest ? event.target.closest("button.show-all") : null;
    if (!button) return;
    const value = button.previousElementSibling;
    if (!value) return;
    if (!button.dataset.more) button.dataset.more = button.textContent;
    const collapsed = value.classList.toggle("collapsed");
    button.textContent = collapsed ? button.dataset.more : "show less";
  });

  if (body.dataset.view !== "label") return;

  const evaluator = body.dataset.evaluator;
  const NAME_KEY = "align-mcp.labeler";
  const runBox = document.getElementById("run");
  const progress = document.getElementById("progress");
  const message = document.getElementById("message");
  const banner = document.getElementById("banner");
  const comment = document.getElementById("comment");
  const commentState = document.getElementById("comment-state");
  const nameForm = document.getElementById("name-form");
  const nameInput = document.getElementById("labeler-name");
  const whoami = document.getElementById("whoami");
  const shownName = document.getElementById("labeler-shown");
  const keyed = {};
  document.querySelectorAll("button.score").forEach(function (b) {
    if (b.dataset.key) keyed[b.dataset.key] = b;
  });

  // The labeler's own session: the runs shown, in order, with the label given here (never a stored label: a
  // run under blind review must not show the first labeler's verdict).
  const state = { labeler: null, history: [], pos: -1, skip: [], saved: "", busy: false, done: false };

  function setBusy(busy) {
    state.busy = busy;
    body.dataset.state = busy ? "busy" : "ready";
  }

  function say(text) {
    message.textContent = text || "";
    message.hidden = !text;
  }

  function note(text) {
    banner.textContent = text || "";
    banner.hidden = !text;
  }

  function scoreName(value) {
    const b = document.querySelector('button.score[data-score="' + CSS.escape(String(value)) + '"]');
    return b ? b.dataset.name : String(value);
  }

  async function post(path, payload) {
    let response;
    try {
      response = await fetch(base + path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(payload),
        credentials: "same-origin",
      });
    } catch (err) {
      return { error: "The server did not answer (" + err + "). Is align-mcp ui still running?" };
    }
    let data;
    try {
      data = await response.json();
    } catch (err) {
      data = {};
    }
    if (!response.ok && !data.error) data.error = "The server answered " + response.status + ".";
    return data;
  }

  function render(data) {
    say("");
    runBox.innerHTML = data.html;
    runBox.dataset.runId = data.run_id || "";
    if (data.progress_html !== undefined) progress.innerHTML = data.progress_html;
    const entry = state.history[state.pos];
    state.saved = "";
    comment.value = "";
    commentState.textContent = "";
    if (entry && entry.comment) {
      state.saved = entry.comment;
      comment.value = entry.comment;
    }
    if (state.done) {
      note("");
    } else if (entry && entry.score !== null) {
      note(
        "You labeled this run " + scoreName(entry.score) + ". Press a score key to replace that label (the " +
          "earlier one stays in the history), or j to go on."
      );
    } else if (entry && entry.skipped) {
      note("You skipped this run. Label it now, or press j to go on.");
    } else {
      note("");
    }
    body.dataset.pos = String(state.pos);
    body.dataset.renders = String(Number(body.dataset.renders || "0") + 1);
  }

  async function fetchNext() {
    const data = await post("/api/next", { evaluator: evaluator, labeler: state.labeler, skip: state.skip });
    if (data.error) {
      say(data.error);
      return;
    }
    showNext(data);
  }

  function showNext(data) {
    if (data.skips_cleared) state.skip = [];
    if (data.run_id) {
      const known = state.history.findIndex(function (e) { return e.runId === data.run_id; });
      if (known >= 0 && known === state.history.length - 1) {
        state.pos = known;
      } else {
        state.history.push({ runId: data.run_id, score: null, comment: "", skipped: false });
        state.pos = state.history.length - 1;
      }
      state.done = false;
    } else {
      state.pos = state.history.length;
      state.done = true;
    }
    render(data);
  }

  async function showAt(pos) {
    const entry = state.history[pos];
    const data = await post("/api/run", { evaluator: evaluator, run_id: entry.runId });
    if (data.error) {
      say(data.error);
      return;
    }
    state.pos = pos;
    state.done = false;
    render(data);
  }

  function atHead() {
    const last = state.history.length - 1;
    return state.pos === last && last >= 0 && state.history[last].score === null && !state.done;
  }

  async function run(task) {
    if (state.busy) return;
    setBusy(true);
    try {
      await task();
    } finally {
      setBusy(false);
    }
  }

  async function label(value) {
    const entry = state.history[state.pos];
    if (!entry || state.done) {
      say("No run is shown: nothing to label.");
      return;
    }
    const last = state.history.length - 1;
    const waiting = state.pos < last && state.history[last].score === null;
    const skip = state.skip.filter(function (id) { return id !== entry.runId; });
    const payload = {
      evaluator: evaluator,
      run_id: entry.runId,
      score: value,
      comment: state.saved || null,
      labeler: state.labeler,
      then_next: !waiting,  // the next run comes with the answer: one round trip per keypress
      skip: skip,
    };
    const data = await post("/api/label", payload);
    if (data.error) {
      say(data.error);
      return;
    }
    say("");
    entry.score = value;
    entry.comment = state.saved;
    entry.skipped = false;
    state.skip = skip;
    if (waiting) {
      await showAt(last);
    } else {
      showNext(data.next);
    }
  }

  async function skip() {
    if (!atHead()) {
      await forward();
      return;
    }
    const entry = state.history[state.pos];
    entry.skipped = true;
    state.skip.push(entry.runId);
    await fetchNext();
  }

  async function forward() {
    if (state.done) return;
    if (state.pos < state.history.length - 1) {
      await showAt(state.pos + 1);
    } else if (state.history.length && state.history[state.pos].score !== null) {
      await fetchNext();
    } else {
      note("This is the newest run: label it, or press s to skip it.");
    }
  }

  async function back() {
    if (state.pos > 0) {
      await showAt(state.pos - 1);
    } else {
      note("This is the first run you saw here.");
    }
  }

  async function undo() {
    let i = state.history.length - 1;
    while (i >= 0 && state.history[i].score === null) i -= 1;
    if (i < 0) {
      note("Nothing to undo: you have not labeled a run here yet.");
      return;
    }
    await showAt(i);
  }

  function editComment() {
    comment.focus();
  }

  comment.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      state.saved = comment.value.trim();
      commentState.textContent = state.saved ? "Comment kept: it goes with the label you give this run." : "";
      comment.blur();
    } else if (event.key === "Escape") {
      event.preventDefault();
      comment.value = state.saved;
      comment.blur();
    }
  });

  document.querySelectorAll("button.score").forEach(function (b) {
    b.addEventListener("click", function () {
      run(function () { return label(b.dataset.score); });
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
    if (!state.labeler) return;
    const key = event.key;
    let task = null;
    if (keyed[key]) task = function () { return label(keyed[key].dataset.score); };
    else if (key === "j") task = forward;
    else if (key === "k") task = back;
    else if (key === "u") task = undo;
    else if (key === "s") task = skip;
    else if (key === "c") {
      event.preventDefault();
      editComment();
      return;
    }
    if (task) {
      event.preventDefault();
      run(task);
    }
  });

  function start(name) {
    state.labeler = name;
    shownName.textContent = name;
    whoami.hidden = false;
    nameForm.hidden = true;
    run(fetchNext);
  }

  nameForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (!name) return;
    try {
      localStorage.setItem(NAME_KEY, name);
    } catch (err) {
      // Storage may be off (private windows): the name lasts for this page only.
    }
    start(name);
  });

  document.getElementById("change-name").addEventListener("click", function () {
    nameForm.hidden = false;
    nameInput.value = state.labeler || "";
    nameInput.focus();
  });

  let remembered = null;
  try {
    remembered = localStorage.getItem(NAME_KEY);
  } catch (err) {
    remembered = null;
  }
  setBusy(false);
  if (remembered) {
    start(remembered);
  } else {
    nameForm.hidden = false;
    runBox.innerHTML = "<p class=loading>Say who you are to start.</p>";
    nameInput.focus();
  }
})();
