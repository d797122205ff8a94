// The kgzsl page: pick an image, type candidate labels (suggested by /labels), see /predict's scores and
// /explain's drawing of the top label. Server text is always set with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let image = null;        // the chosen File
let canAbstain = false;  // the run has a calibrated "none of these" threshold
let active = -1;         // highlighted suggestion

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${body.kind || response.status}: ${body.detail}`;
  } catch (e) {
    return `HTTP ${response.status}`;
  }
}

async function loadRun() {
  const response = await fetch("/health");
  const run = await response.json();
  canAbstain = run.abstain;
  $("run").textContent = `run ${run.run} (${run.model}) · backbone ${run.backbone} · ${run.nodes.toLocaleString()} classes`;
}

function choose(file) {
  if (!file) return;
  image = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  say(`${file.name} (${Math.round(file.size / 1024)} KB)`);
}

// ---- label suggestions: the fragment after the last comma is looked up
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
  list.replaceChildren(...items.map((s) => {
    const li = document.createElement("li");
    li.setAttribute("role", "option");
    const word = document.createElement("span");
    word.textContent = s.label;
    const synset = document.createElement("small");
    synset.textContent = s.label === s.synset ? s.lemma : s.synset;
    li.append(word, synset);
    if (s.definition) li.title = s.definition;  // which sense this is, on hover
    li.addEventListener("mousedown", (event) => { event.preventDefault(); pick(s.label); });
    return li;
  }));
  list.hidden = items.length === 0;
  active = -1;
}

function highlight(step) {
  const items = $("suggestions").children;
  if (!items.length) return;
  active = (active + step + items.length) % items.length;
  [...items].forEach((li, i) => li.classList.toggle("active", i === active));
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

async function explainTop(top) {
  const form = new FormData();
  form.append("image", image);
  form.append("label", top.label);  // scored by the sense this image fits best, as in the prediction
  const response = await fetch("/explain?format=png", { method: "POST", body: form });
  if (!response.ok) return say(`explanation failed: ${await errorText(response)}`, true);
  $("why-img").src = URL.createObjectURL(await response.blob());
  $("why-caption").textContent = `Why ${top.label} (${top.synset}): the seen classes (blue) whose rows carried ` +
    "its predicted row, and the WordNet paths between them";
  $("why").hidden = false;
}

async function classify(event) {
  event.preventDefault();
  clearTimeout(pending);
  hideSuggestions();
  if (!image) return say("Pick or drop an image first.", true);
  const form = new FormData();
  form.append("image", image);
  const labels = labelList();
  if (labels) form.append("candidate_labels", labels);
  form.append("top_k", $("topk").value || "5");
  if (canAbstain) form.append("abstain", "true");
  say("classifying…");
  $("why").hidden = true;
  const response = await fetch("/predict", { method: "POST", body: form });
  if (!response.ok) {
    $("results").replaceChildren();
    $("none").hidden = true;
    return say(await errorText(response), true);
  }
  const body = await response.json();
  const record = Array.isArray(body) ? { predictions: body } : body;
  show(record);
  say(`${record.predictions.length} of ${labels ? labels.split(",").length : "all"} candidates`);
  if (record.predictions.length) await explainTop(record.predictions[0]);
}

// ---- wiring
$("file").addEventListener("change", (e) => choose(e.target.files[0]));
const drop = $("drop");
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
    pick($("suggestions").children[active].firstChild.textContent);
  } else if (e.key === "Escape") {
    hideSuggestions();
  }
});
$("labels").addEventListener("blur", hideSuggestions);
$("form").addEventListener("submit", classify);
loadRun().catch((e) => say(`cannot reach the server: ${e}`, true));
