// The kgzsl page: pick an image, type candidate labels (suggested by /labels), see /predict's scores and
// /explain's drawing of the top label. Server text is always set with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let image = null;        // the chosen File
let canAbstain = false;  // the run has a calibrated "none of these" threshold
let run = null;          // /health's answer: the run, its class count and the server's limits
let active = -1;         // highlighted suggestion
let request = null;      // the AbortController of the classification in progress (a newer one cancels it)

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.detail || `HTTP ${response.status}`;
  } catch (e) {
    return `HTTP ${response.status}`;
  }
}

async function loadRun() {
  const response = await fetch("/health");
  run = await response.json();
  canAbstain = run.abstain;
  $("run").textContent = `run ${run.run} (${run.model}) · backbone ${run.backbone} · ${run.nodes.toLocaleString()} classes`;
  document.title = `kgzsl · ${run.run}`;
}

function clearResults() {
  $("results").replaceChildren();
  $("none").hidden = true;
  $("why").hidden = true;
}

function choose(file) {
  if (!file) return;
  if (request) request.abort();  // an answer for the previous image is no longer wanted
  clearResults();
  image = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").alt = `the chosen image, ${file.name}`;
  $("preview").hidden = false;
  const limit = run && run.limits ? run.limits.max_body_bytes : Infinity;
  if (file.size > limit) {  // refused by the server anyway: say so before uploading it
    image = null;
    $("preview").hidden = true;
    return say(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB, over this server's limit of ` +
      `${(limit / 2 ** 20).toFixed(1)} MB: choose a smaller image`, true);
  }
  say(`${file.name} (${Math.round(file.size / 1024)} KB)`);
}

// ---- label suggestions (an ARIA combobox): the fragment after the last comma is looked up
function fragment() {
  const text = $("labels").value;
  return text.slice(text.lastIndexOf(",") + 1).trim();
}

function pick(label) {
  const text = $("labels").value;
  const head = text.slice(0, text.lastIndexOf(",") + 1);
  $("labels").value = `${head}${head ? " " : ""}${label}, `;
  hideSuggestions();
  $("labels").focus();
}

function hideSuggestions() {
  $("suggestions").hidden = true;
  $("suggestions").replaceChildren();
  $("labels").setAttribute("aria-expanded", "false");
  $("labels").removeAttribute("aria-activedescendant");
  active = -1;
}

let pending = null;
async function suggest() {
  const q = fragment();
  if (!q) return hideSuggestions();
  const response = await fetch(`/labels?q=${encodeURIComponent(q)}&limit=8`);
  // stale (more was typed) or no longer wanted (the field lost focus, the form was sent)
  if (!response.ok || q !== fragment() || document.activeElement !== $("labels")) return;
  const items = await response.json();
  const list = $("suggestions");
  list.replaceChildren(...items.map((s, i) => {
    const li = document.createElement("li");
    li.id = `suggestion-${i}`;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    li.dataset.label = s.label;
    const name = document.createElement("span");
    name.className = "name";
    const word = document.createElement("span");
    word.textContent = s.label;
    const synset = document.createElement("small");
    synset.textContent = s.label === s.synset ? s.lemma : s.synset;
    name.append(word, synset);
    li.append(name);
    if (s.definition) {  // which sense this is, readable without a mouse
      const definition = document.createElement("span");
      definition.className = "definition";
      definition.textContent = s.definition;
      li.append(definition);
      li.title = s.definition;
    }
    li.addEventListener("mousedown", (event) => { event.preventDefault(); pick(s.label); });
    return li;
  }));
  list.hidden = items.length === 0;
  $("labels").setAttribute("aria-expanded", String(items.length > 0));
  $("labels").removeAttribute("aria-activedescendant");
  active = -1;
}

function highlight(step) {
  const items = $("suggestions").children;
  if (!items.length) return;
  active = (active + step + items.length) % items.length;
  [...items].forEach((li, i) => {
    li.classList.toggle("active", i === active);
    li.setAttribute("aria-selected", String(i === active));
  });
  $("labels").setAttribute("aria-activedescendant", items[active].id);
}

// ---- prediction and explanation
function labelList() {
  return $("labels").value.split(",").map((s) => s.trim()).filter((s) => s).join(",");
}

function show(record) {
  const results = $("results");
  results.replaceChildren(...record.predictions.map((p) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = p.label;
    const synset = document.createElement("span");
    synset.className = "synset";
    synset.textContent = p.synset === p.wnid ? p.synset : `${p.synset} (${p.wnid})`;  // own classes: the id once
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("div");
    fill.style.width = `${(100 * p.score).toFixed(1)}%`;
    bar.append(fill);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `${(100 * p.score).toFixed(1)}%`;
    li.append(name, synset, bar, score);
    return li;
  }));
  $("none").hidden = !record.abstained;
  if (record.abstained) {
    $("none-why").textContent = `(best logit ${record.max_logit.toFixed(3)} below ${record.threshold.toFixed(3)})`;
  }
}

async function explainTop(top, file, signal) {
  const form = new FormData();
  form.append("image", file);
  // the exact class the prediction named: its synset (a word may name several), or the id of a class of your own
  form.append("label", /\.n\.\d+$/.test(top.synset) ? top.synset : top.wnid);
  const response = await fetch("/explain?format=png", { method: "POST", body: form, signal });
  if (!response.ok) return say(`explanation failed: ${await errorText(response)}`, true);
  const drawing = await response.blob();
  $("why-img").src = URL.createObjectURL(drawing);
  $("why-img").alt = `graph: the seen classes whose rows carried ${top.label}, and the WordNet paths to them`;
  $("why-caption").textContent = `Why ${top.label} (${top.synset}): the seen classes (blue) whose rows carried ` +
    "its predicted row, and the WordNet paths between them";
  $("why").hidden = false;
}

async function classify(event) {
  event.preventDefault();
  clearTimeout(pending);
  hideSuggestions();
  if (!image) return say("Pick or drop an image first.", true);
  if (request) request.abort();  // only the newest request's answer is shown
  request = new AbortController();
  const { signal } = request;
  const file = image;
  const form = new FormData();
  form.append("image", file);
  const labels = labelList();
  if (labels) form.append("candidate_labels", labels);
  if ($("topk").value) form.append("top_k", $("topk").value);  // empty: every label, or the 5 best classes
  if (canAbstain) form.append("abstain", "true");
  say("classifying…");
  $("why").hidden = true;
  try {
    const response = await fetch("/predict", { method: "POST", body: form, signal });
    if (!response.ok) {
      const message = await errorText(response);
      if (signal.aborted) return;
      clearResults();
      return say(message, true);
    }
    const body = await response.json();
    if (signal.aborted) return;
    const record = Array.isArray(body) ? { predictions: body } : body;
    show(record);
    const among = labels ? `${labels.split(",").length} labels` : `all ${run ? run.nodes.toLocaleString() : ""} classes`;
    say(`${record.predictions.length} best of ${among}`);
    if (record.predictions.length) await explainTop(record.predictions[0], file, signal);
  } catch (e) {
    if (e.name !== "AbortError") say(`cannot reach the server: ${e}`, true);
  }
}

// ---- wiring
$("file").addEventListener("change", (e) => choose(e.target.files[0]));
const drop = $("drop");
// anywhere in the drop zone opens the chooser (its "choose a file" label does so by itself)
drop.addEventListener("click", (e) => { if (!e.target.closest("label")) $("file").click(); });
drop.addEventListener("keydown", (e) => {  // keyboard users choose a file from the drop zone
  if (e.key === "Enter" || e.key === " ") {
    e.preventDefault();
    $("file").click();
  }
});
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  choose(e.dataTransfer.files[0]);
});
$("labels").addEventListener("input", () => {
  clearTimeout(pending);
  pending = setTimeout(suggest, 120);
});
$("labels").addEventListener("keydown", (e) => {
  if ($("suggestions").hidden) return;
  if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    e.preventDefault();
    highlight(e.key === "ArrowDown" ? 1 : -1);
  } else if (e.key === "Enter" && active >= 0) {
    e.preventDefault();
    pick($("suggestions").children[active].dataset.label);
  } else if (e.key === "Escape") {
    hideSuggestions();
  }
});
$("labels").addEventListener("blur", hideSuggestions);
$("form").addEventListener("submit", classify);
loadRun().catch((e) => say(`cannot reach the server: ${e}`, true));
