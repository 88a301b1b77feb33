// diffuse's web page: submits jobs to /api/jobs, polls their progress, shows the results.
// Plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const FIELDS = ["prompt", "negative_prompt", "model", "sampler", "scheduler", "steps", "cfg_scale",
                "width", "height", "seed", "batch_size"];
const POLL_MS = 200;
const jobs = new Map();  // id -> {card, state, info}
let apiKey = localStorage.getItem("diffuse.apiKey") || "";

async function api(method, path, body) {
  const headers = {};
  if (apiKey) headers["Authorization"] = "Bearer " + apiKey;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (res.status === 401) $("api-key-row").hidden = false;
  if (!res.ok) {
    const err = new Error(data && data.error ? data.error + (data.detail ? ": " + data.detail : "") : "HTTP " + res.status);
    err.status = res.status;
    throw err;
  }
  return data;
}

function showMessage(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

function fillSelect(select, options, selected) {
  select.replaceChildren();
  for (const [value, label] of options) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    select.appendChild(o);
  }
  if (selected !== undefined && options.some(([v]) => v === selected)) select.value = selected;
}

async function loadLists() {
  try {
    const [models, samplers, schedulers, options] = await Promise.all([
      api("GET", "/sdapi/v1/sd-models"), api("GET", "/sdapi/v1/samplers"),
      api("GET", "/sdapi/v1/schedulers"), api("GET", "/sdapi/v1/options")]);
    fillSelect($("model"), models.map((m) => [m.title, m.model_name]), options.sd_model_checkpoint);
    fillSelect($("sampler"), samplers.map((s) => [s.name, s.name]), "Euler a");
    fillSelect($("scheduler"), schedulers.map((s) => [s.name, s.label]), "automatic");
    $("server-status").textContent = models.length + " model" + (models.length === 1 ? "" : "s");
    document.body.dataset.ready = "true";
    showMessage("");
  } catch (e) {
    $("server-status").textContent = "not connected";
    showMessage(e.message);
  }
}

function formRequest() {
  const num = (id) => Number($(id).value);
  return {
    prompt: $("prompt").value,
    negative_prompt: $("negative_prompt").value,
    model: $("model").value || undefined,
    sampler_name: $("sampler").value || undefined,
    scheduler: $("scheduler").value || undefined,
    steps: num("steps"), cfg_scale: num("cfg_scale"), width: num("width"), height: num("height"),
    seed: num("seed"), batch_size: num("batch_size"),
  };
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function newCard(id, req) {
  const card = el("article", "job");
  card.dataset.jobId = id;
  const head = el("div", "job-head");
  head.append(el("span", "job-state", "queued"), el("span", "job-prompt", req.prompt || "(no prompt)"));
  const cancel = el("button", "job-cancel secondary", "Cancel");
  cancel.type = "button";
  cancel.addEventListener("click", () => cancelJob(id));
  head.appendChild(cancel);
  const progress = el("progress");
  progress.max = 1;
  progress.value = 0;
  card.append(head, progress, el("div", "job-detail muted", ""), el("div", "images"));
  $("gallery").prepend(card);
  return card;
}

function describe(info) {
  if (info.state === "queued") return "queued" + (info.queue_position > 0 ? " (" + info.queue_position + " ahead)" : "");
  if (info.state === "running") {
    if (!info.steps) return "loading…";
    return "step " + info.step + "/" + info.steps + (info.eta > 0 ? ", about " + info.eta.toFixed(1) + " s left" : "");
  }
  if (info.state === "done") return "done";
  return info.state + (info.detail ? ": " + info.detail : "");
}

function render(id, info) {
  const job = jobs.get(id);
  job.info = info;
  job.state = info.state;
  const card = job.card;
  card.dataset.state = info.state;
  card.querySelector(".job-state").textContent = info.state;
  card.querySelector("progress").value = info.progress;
  card.querySelector(".job-detail").textContent = describe(info);
  card.querySelector(".job-detail").classList.toggle("job-error", info.state === "failed");
  card.querySelector(".job-cancel").hidden = finished(info.state);
  if (info.state === "done" && info.images && !card.querySelector("img")) {
    const box = card.querySelector(".images");
    info.images.forEach((im, i) => {
      const fig = el("figure");
      const img = el("img", "result");
      img.alt = info.parameters.prompt || "result";
      img.src = "data:image/png;base64," + im.image;
      img.dataset.seed = im.seed;
      const reuse = el("button", "reuse secondary", "Reuse");
      reuse.type = "button";
      reuse.title = "Put these parameters (and this seed) back into the form";
      reuse.addEventListener("click", () => reuseParameters(info.parameters, im.seed));
      const link = el("a", "download", "PNG");
      link.href = img.src;
      link.download = "diffuse-" + im.seed + ".png";
      fig.append(img, el("figcaption", "params", im.infotext), reuse, document.createTextNode(" "), link);
      box.appendChild(fig);
    });
  }
  updateMain();
}

function finished(state) { return state === "done" || state === "failed" || state === "cancelled"; }

// The main progress bar follows the newest unfinished job.
function activeJob() {
  let last = null;
  for (const [id, job] of jobs) if (!finished(job.state)) last = id;
  return last;
}

function updateMain() {
  const id = activeJob();
  $("cancel").disabled = id === null;
  if (id === null) {
    $("progress").value = 0;
    $("progress-text").textContent = "idle";
    return;
  }
  const info = jobs.get(id).info;
  $("progress").value = info ? info.progress : 0;
  $("progress-text").textContent = info ? describe(info) : "queued";
}

async function poll(id) {
  while (true) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    let info;
    try {
      info = await api("GET", "/api/jobs/" + id);
    } catch (e) {
      if (e.status === 404) { render(id, { ...jobs.get(id).info, state: "failed", detail: "the server forgot this job" }); return; }
      continue;  // the server may be busy: try again
    }
    render(id, info);
    if (finished(info.state)) return;
  }
}

async function generate(ev) {
  ev.preventDefault();
  const req = formRequest();
  try {
    const info = await api("POST", "/api/jobs", req);
    showMessage("");
    jobs.set(info.id, { card: newCard(info.id, req), state: info.state, info });
    render(info.id, info);
    poll(info.id);
  } catch (e) {
    showMessage(e.message);
  }
}

async function cancelJob(id) {
  try {
    const info = await api("POST", "/api/jobs/" + id + "/cancel");
    render(id, { ...jobs.get(id).info, ...info });
  } catch (e) {
    showMessage(e.message);
  }
}

function reuseParameters(p, seed) {
  for (const f of FIELDS) {
    const key = f === "sampler" ? "sampler_name" : f;
    if (p[key] !== undefined && p[key] !== null) $(f).value = p[key];
  }
  $("seed").value = seed;
  $("prompt").focus();
}

$("form").addEventListener("submit", generate);
$("cancel").addEventListener("click", () => { const id = activeJob(); if (id !== null) cancelJob(id); });
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit(); });
$("api-key").value = apiKey;
$("api-key-save").addEventListener("click", () => {
  apiKey = $("api-key").value.trim();
  localStorage.setItem("diffuse.apiKey", apiKey);
  $("api-key-row").hidden = true;
  loadLists();
});
loadLists();
