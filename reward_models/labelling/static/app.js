// The labelling page. Prompts and responses are untrusted model output: they are only ever
// written with textContent (the page's CSP enforces Trusted Types, so innerHTML would throw).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const NAME_KEY = "textrl-label-annotator";
  const KEYS = {
    1: "left", ArrowLeft: "left", 2: "right", ArrowRight: "right",
    3: "tie", ArrowDown: "tie", 0: "skip", s: "skip", S: "skip",
  };
  const SAID = { left: "left is better", right: "right is better", tie: "tie", skip: "skipped" };
  let annotator = localStorage.getItem(NAME_KEY) || "";
  let current = null; // the pair on screen
  let busy = false; // one request at a time: the next pair shows only after the answer is stored
  let waitTimer = null; // while the pairs left are on others' screens, ask again now and then
  const WAIT_SECONDS = 10;

  async function api(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) throw new Error(data && data.error ? data.error : `request failed (HTTP ${response.status})`);
    return data;
  }

  function setStatus(text, isError = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", isError);
  }

  function show(section) {
    for (const id of ["login", "task", "done"]) $(id).hidden = id !== section;
    $("who").hidden = section === "login";
    $("who-name").textContent = annotator;
  }

  function setText(element, text, emptyText) {
    element.textContent = text === "" ? emptyText : text;
    element.classList.toggle("empty", text === "");
  }

  function render(data) {
    const you = data.you;
    const all = data.progress;
    $("progress").textContent =
      `You: ${you.answered} answered, ${you.remaining} left · All: ${all.answers} of ${all.target} answers`;
    current = data.pair;
    clearTimeout(waitTimer);
    if (!current) {
      $("task").dataset.pairId = "";
      const waiting = you.remaining > 0;
      $("done-text").textContent = waiting
        ? `The ${you.remaining} pair(s) left are on other annotators' screens; this page checks again every ${WAIT_SECONDS} s.`
        : "Nothing left for you to label. Thank you!";
      if (waiting) waitTimer = setTimeout(() => run(loadNext), WAIT_SECONDS * 1000);
      show("done");
      return;
    }
    setText($("prompt"), current.prompt, "(empty prompt)");
    setText($("left"), current.left, "(empty)");
    setText($("right"), current.right, "(empty)");
    $("task").dataset.pairId = current.id;
    show("task");
  }

  async function run(action) {
    if (busy) return;
    busy = true;
    for (const button of document.querySelectorAll("button")) button.disabled = true;
    try {
      await action();
    } catch (error) {
      setStatus(error.message, true);
    } finally {
      busy = false;
      for (const button of document.querySelectorAll("button")) button.disabled = false;
    }
  }

  const loadNext = async () => render(await api("/api/next", { annotator }));

  function answer(choice) {
    if (!current) return;
    const pairId = current.id;
    run(async () => {
      setStatus("Saving…");
      await api("/api/answer", { annotator, pair_id: pairId, choice });
      setStatus(`Saved (${SAID[choice]}).`);
      await loadNext();
    });
  }

  function undo() {
    run(async () => {
      const result = await api("/api/undo", { annotator });
      setStatus(result.undone ? `Undone (${SAID[result.undone.choice]}): answer that pair again.` : "Nothing to undo.");
      await loadNext();
    });
  }

  function start(name) {
    annotator = name.trim();
    if (!annotator) return;
    localStorage.setItem(NAME_KEY, annotator);
    setStatus("");
    run(async () => {
      try {
        await loadNext();
      } catch (error) {
        show("login");
        throw error;
      }
    });
  }

  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("name").value);
  });
  $("change-name").addEventListener("click", () => {
    localStorage.removeItem(NAME_KEY);
    clearTimeout(waitTimer);
    annotator = "";
    current = null;
    $("progress").textContent = "";
    setStatus("");
    show("login");
    $("name").focus();
  });
  for (const button of document.querySelectorAll("[data-choice]")) {
    button.addEventListener("click", () => answer(button.dataset.choice));
  }
  for (const button of document.querySelectorAll("[data-undo]")) button.addEventListener("click", undo);

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (event.target instanceof HTMLInputElement || $("login").hidden === false) return;
    if (KEYS[event.key] && !$("task").hidden) {
      event.preventDefault();
      answer(KEYS[event.key]);
    } else if (event.key === "u" || event.key === "U") {
      event.preventDefault();
      undo();
    }
  });

  if (annotator) {
    $("name").value = annotator;
    start(annotator);
  } else {
    show("login");
    $("name").focus();
  }
})();
