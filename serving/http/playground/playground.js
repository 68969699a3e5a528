// The playground: ganserve's own HTTP API, called from the page (nothing here talks to
// anything but the server that served it). The API key, if any, lives in this tab's
// sessionStorage and goes out as `Authorization: Bearer KEY`; the server stores none.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: "", card: null, latent: null };  // latent: the last projected image's

class ApiError extends Error {
  constructor(status, message) {
    super(`${status}: ${message}`);
    this.status = status;
  }
}

function route(path) {
  // The default model's routes, or /models/NAME/... for another model of the repository.
  return state.model ? `/models/${encodeURIComponent(state.model)}${path}` : path;
}

async function call(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = $("key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch (ignored) { /* not JSON: keep the status text */ }
    throw new ApiError(response.status, message);
  }
  return response;
}

function post(path, body) {
  return call(route(path), { method: "POST", headers: { "Content-Type": "application/json" },
                              body: JSON.stringify(body) });
}

function say(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

function fail(error) {
  if (error instanceof ApiError && error.status === 401) {
    say(`${error.message}. Enter a key in the API key field above.`, true);
  } else {
    say(error.message, true);
  }
}

// --- generate -----------------------------------------------------------------------------------

function generateBody() {
  const body = { seed: Number($("seed").value), n: Number($("count").value), format: "json" };
  if ($("truncation-on").checked) body.truncation = Number($("truncation").value);
  if ($("class").value !== "") body.class_label = Number($("class").value);
  const guidance = $("guidance").value;
  if (guidance) {
    const [field, value] = guidance.split(":");
    body[field] = Number(value);
  }
  return body;
}

async function generate() {
  say("generating…");
  const started = performance.now();
  const answer = await (await post("/generate", generateBody())).json();
  const grid = $("grid");
  grid.replaceChildren(...answer.images.map((png, i) => {
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    image.src = `data:image/png;base64,${png}`;
    image.alt = `seed ${answer.seeds[i]}`;
    image.dataset.seed = answer.seeds[i];
    image.title = "click: interpolate from this seed; shift-click: to it";
    image.addEventListener("click", (event) => { $(event.shiftKey ? "to" : "from").value = answer.seeds[i]; });
    const caption = document.createElement("figcaption");
    caption.textContent = `seed ${answer.seeds[i]}` + (answer.labels ? ` · class ${answer.labels[i]}` : "");
    figure.append(image, caption);
    return figure;
  }));
  const drawn = answer.candidates_drawn ? ` (${answer.candidates_drawn} candidates drawn)` : "";
  say(`${answer.images.length} images from ${answer.model.name} ${answer.model.version} in `
      + `${Math.round(performance.now() - started)} ms${drawn}`);
}

// --- interpolate --------------------------------------------------------------------------------

async function interpolate() {
  const body = { seed_from: Number($("from").value), seed_to: Number($("to").value),
                 frames: Number($("frames").value), format: "png" };
  if ($("truncation-on").checked) body.truncation = Number($("truncation").value);
  if ($("class").value !== "") body.class_label = Number($("class").value);
  const blob = await (await post("/interpolate", body)).blob();
  const image = document.createElement("img");
  image.src = URL.createObjectURL(blob);
  image.alt = `seed ${body.seed_from} to seed ${body.seed_to}`;
  $("strip").replaceChildren(image);
  say(`${body.frames} frames from seed ${body.seed_from} to seed ${body.seed_to}`);
}

// --- score --------------------------------------------------------------------------------------

async function score(file) {
  const form = new FormData();
  form.append("images", file, file.name || "image.png");
  form.append("resize", "true");
  const answer = await (await call(route("/score"), { method: "POST", body: form })).json();
  const result = answer.results[0];
  const row = document.createElement("div");
  row.className = "score";
  const image = document.createElement("img");
  image.src = URL.createObjectURL(file);
  const text = document.createElement("span");
  text.className = "p-real";
  text.textContent = `p_real ${result.p_real.toFixed(3)} · logit ${result.logit.toFixed(3)} · ${file.name || "image"}`;
  row.append(image, text);
  $("scores").prepend(row);
  say(`scored by ${answer.model.name} ${answer.model.version}`);
}

function setUpDropZone(dropId, fileId, use) {
  // A file dropped on the zone, or chosen with the (hidden) file input inside it, goes to `use`.
  const drop = $(dropId);
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) use(file).catch(fail);
  });
  $(fileId).addEventListener("change", () => { if ($(fileId).files[0]) use($(fileId).files[0]).catch(fail); });
}

// --- project ------------------------------------------------------------------------------------

function pictureOf(src, alt) {
  const image = document.createElement("img");
  image.src = src;
  image.alt = alt;
  return image;
}

async function project(file) {
  say("projecting…");
  const form = new FormData();
  form.append("images", file, file.name || "image.png");
  form.append("resize", "true");
  if ($("class").value !== "") form.append("labels", $("class").value);
  const answer = await (await call(route("/project"), { method: "POST", body: form })).json();
  const result = answer.results[0];
  state.latent = result.latent;
  const text = document.createElement("span");
  text.className = "psnr";
  const pReal = result.p_real === null ? "" : ` · p_real ${result.p_real.toFixed(3)}`;
  text.textContent = `PSNR ${result.psnr_encoder_db.toFixed(1)} dB from the encoder, `
                     + `${result.psnr_db.toFixed(1)} dB refined${pReal}`;
  $("projection").replaceChildren(pictureOf(URL.createObjectURL(file), file.name || "image"),
                                  pictureOf(`data:image/png;base64,${result.reconstruction}`, "reconstruction"), text);
  $("project-interpolate").disabled = false;
  say(`projected by ${answer.model.name} ${answer.model.version}: ${answer.search.rounds} rounds of `
      + `${answer.search.candidates} candidates`);
}

async function interpolateFromProjection() {
  const body = { latent_from: state.latent, seed_to: Number($("to").value), frames: Number($("frames").value),
                 format: "png" };
  if ($("truncation-on").checked) body.truncation = Number($("truncation").value);
  if ($("class").value !== "") body.class_label = Number($("class").value);
  const blob = await (await post("/interpolate", body)).blob();
  $("strip").replaceChildren(pictureOf(URL.createObjectURL(blob), `the projected image to seed ${body.seed_to}`));
  say(`${body.frames} frames from the projected image to seed ${body.seed_to}`);
}

// --- the model and its card ---------------------------------------------------------------------

async function loadModels() {
  const view = await (await call("/models")).json();
  const select = $("model");
  select.replaceChildren(...view.models.map((model) => {
    const option = document.createElement("option");
    option.value = model.default ? "" : model.name;
    option.textContent = `${model.name} ${model.live || ""}${model.default ? " (default)" : ""}`;
    return option;
  }));
  select.value = state.model;
}

async function loadCard() {
  const card = await (await post("/model", {})).json();
  state.card = card;
  const rows = [["name", `${card.served_as.name} (card: ${card.name})`], ["version", card.served_as.version],
                ["architecture", card.architecture],
                ["image", `${card.image.height}×${card.image.width}×${card.image.channels} uint8`],
                ["latent", card.latent_dim], ["classes", card.num_classes || "none"],
                ["discriminator", card.has_discriminator
                  ? `AUROC ${card.calibration.auroc === null ? "n/a" : Number(card.calibration.auroc).toFixed(3)}`
                  : "none (generation only)"],
                ["runtime", `${card.runtime} on ${card.provider}, ${card.precision}`],
                ["spot check", card.spot_check.verdict]];
  $("card").replaceChildren(...rows.flatMap(([name, value]) => {
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = value;
    return [term, detail];
  }));
  const picker = $("class-picker");
  picker.hidden = !card.num_classes;
  const classes = $("class");
  classes.replaceChildren(new Option("seed % classes", ""), ...Array.from({ length: card.num_classes }, (_, i) =>
    new Option(card.class_names ? `${i}: ${card.class_names[i]}` : String(i), String(i))));
  $("drop").hidden = !card.has_discriminator;
  $("project-panel").hidden = !card.has_encoder;  // projection needs E (ganserve train-encoder)
  $("projection").replaceChildren();
  $("project-interpolate").disabled = true;
  $("guidance").disabled = !card.has_discriminator;
}

async function start() {
  say("loading…");
  try {
    await loadModels();
    await loadCard();
    await generate();
  } catch (error) {
    fail(error);
  }
}

// --- wiring -------------------------------------------------------------------------------------

$("key").value = sessionStorage.getItem("ganserve-key") || "";
$("key").addEventListener("change", () => { sessionStorage.setItem("ganserve-key", $("key").value.trim()); start(); });
$("model").addEventListener("change", () => { state.model = $("model").value; start(); });
$("generate-form").addEventListener("submit", (event) => { event.preventDefault(); generate().catch(fail); });
$("interpolate-form").addEventListener("submit", (event) => { event.preventDefault(); interpolate().catch(fail); });
$("random").addEventListener("click", () => {
  $("seed").value = Math.floor(Math.random() * 2 ** 31);
  generate().catch(fail);
});
$("truncation").addEventListener("input", () => {
  $("truncation-on").checked = true;
  $("truncation-value").textContent = $("truncation").value;
});
$("truncation-on").addEventListener("change", () => {
  $("truncation-value").textContent = $("truncation-on").checked ? $("truncation").value : "off";
});
$("project-interpolate").addEventListener("click", () => interpolateFromProjection().catch(fail));
setUpDropZone("drop", "file", score);
setUpDropZone("project-drop", "project-file", project);
start();
