// The page of `polymodal serve`: builds the form from GET /model, fills it from GET /examples,
// posts one patient to POST /predict (multipart: uploads ride along) and shows the answer.
"use strict";

const state = { card: null, examples: [], paths: {} };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function fieldId(column) {
  return "field-" + column.replace(/[^A-Za-z0-9_-]/g, "_");
}

function buildForm(card) {
  const holder = document.getElementById("modalities");
  for (const [name, m] of Object.entries(card.inputs.modalities)) {
    const set = el("fieldset", { class: "modality" }, el("legend", { text: `${name} (${m.kind})` }));
    for (const column of m.fields) {
      const id = fieldId(column);
      const input = m.kind === "text"
        ? el("textarea", { id, name: column, rows: "3" })
        : el("input", { id, name: column, type: "text",
                        inputmode: m.numeric.includes(column) ? "decimal" : "text" });
      set.append(el("div", { class: "row" }, el("label", { for: id, text: column }), input));
    }
    for (const column of m.files) {
      const id = fieldId(column);
      const note = el("span", { id: id + "-path", class: "path muted" });
      set.append(el("div", { class: "row" },
        el("label", { for: id, text: `${column} (file)` }),
        el("input", { id, name: column, type: "file", "aria-describedby": id + "-path" }),
        note));
    }
    holder.append(set);
  }
}

function clearForm() {
  document.getElementById("patient-form").reset();
  state.paths = {};
  for (const note of document.querySelectorAll(".path")) note.textContent = "";
}

function loadExample() {
  const patient = state.examples[Number(document.getElementById("example").value)];
  if (!patient) return;
  clearForm();
  document.getElementById("patient-id").value = patient.id || "";
  for (const [column, value] of Object.entries(patient.fields)) {
    const input = document.getElementById(fieldId(column));
    if (input) input.value = value;
  }
  state.paths = { ...patient.files };
  for (const [column, path] of Object.entries(patient.files)) {
    const note = document.getElementById(fieldId(column) + "-path");
    if (note) note.textContent = `example file: ${path} (an upload replaces it)`;
  }
  setStatus(`Example patient ${patient.id} loaded: press Predict.`);
}

function requestBody() {
  const form = document.getElementById("patient-form");
  const fields = {};
  const files = {};
  const body = new FormData();
  for (const m of Object.values(state.card.inputs.modalities)) {
    for (const column of m.fields) {
      const value = form.elements[column].value.trim();
      if (value !== "") fields[column] = value;
    }
    for (const column of m.files) {
      const upload = form.elements[column].files[0];
      if (upload) body.append(column, upload, upload.name);
      else if (state.paths[column]) files[column] = state.paths[column];
    }
  }
  const id = document.getElementById("patient-id").value.trim();
  const request = {
    patient: { id: id || null, fields, files },
    leave_one_out: document.getElementById("leave-one-out").checked,
    explain: document.getElementById("explain").checked,
  };
  body.append("request", JSON.stringify(request));
  return body;
}

function setStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

function format(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  if (Array.isArray(value)) return value.map(format).join(", ");
  return String(value);
}

function predictionTable(predictions) {
  const table = el("table", { class: "predictions" },
    el("caption", { text: "Model outputs" }),
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "target" }),
      el("th", { scope: "col", text: "output" }), el("th", { scope: "col", text: "value" }))));
  const tbody = el("tbody");
  for (const [target, columns] of Object.entries(predictions)) {
    for (const [column, value] of Object.entries(columns)) {
      const cell = el("td", { class: "value", "data-column": column }, format(value));
      if (typeof value === "number" && value >= 0 && value <= 1 && /prob/.test(column)) {
        cell.append(" ", el("meter", { min: "0", max: "1", value: String(value),
                                       "aria-label": `${column} ${format(value)}` }));
      }
      tbody.append(el("tr", {}, el("td", { text: target }), el("td", { text: column }), cell));
    }
  }
  table.append(tbody);
  return table;
}

// Per target, its first numeric output (a probability, a risk, a value): what the
// leave-one-out table compares.
function headlineColumns(predictions) {
  const found = [];
  for (const [target, columns] of Object.entries(predictions)) {
    const column = Object.keys(columns).find((c) => typeof columns[c] === "number");
    if (column) found.push([target, column]);
  }
  return found;
}

function signed(change) {
  return (change >= 0 ? "+" : "") + change.toFixed(3);
}

function leaveOneOutTable(answer) {
  const headline = headlineColumns(answer.predictions);
  const header = el("tr", {}, el("th", { scope: "col", text: "left out" }));
  for (const [, column] of headline) {
    header.append(el("th", { scope: "col", text: column }), el("th", { scope: "col", text: "change" }));
  }
  const table = el("table", { class: "without" },
    el("caption", { text: "Each present modality left out (the others kept)" }), el("thead", {}, header));
  const tbody = el("tbody");
  const full = el("tr", {}, el("td", { text: "nothing" }));
  for (const [target, column] of headline) {
    full.append(el("td", { text: format(answer.predictions[target][column]) }), el("td", { text: "–" }));
  }
  tbody.append(full);
  for (const [modality, predictions] of Object.entries(answer.without)) {
    const row = el("tr", {}, el("td", { text: modality }));
    for (const [target, column] of headline) {
      const value = predictions ? predictions[target][column] : null;
      const before = answer.predictions[target][column];
      const change = typeof value === "number" && typeof before === "number" ? value - before : null;
      row.append(el("td", { text: predictions ? format(value) : "no data left: no prediction" }),
                 el("td", { text: change === null ? "–" : signed(change) }));
    }
    tbody.append(row);
  }
  table.append(tbody);
  return table;
}

function explanationBlock(explanation) {
  const block = el("div", { class: "explanation" },
    el("h3", { text: `What drove ${explanation.task} (${explanation.score})` }));
  const table = el("table", { class: "elements" },
    el("caption", { text: "Data elements by how much the prediction moves without them" }),
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "element" }),
      el("th", { scope: "col", text: "kind" }), el("th", { scope: "col", text: "detail" }),
      el("th", { scope: "col", text: "effect" }))));
  const tbody = el("tbody");
  for (const e of explanation.elements) {
    tbody.append(el("tr", {}, el("td", { text: e.element }), el("td", { text: e.kind }),
      el("td", { text: e.detail || "" }),
      el("td", { text: e.effect === null ? "–" : signed(e.effect) })));
  }
  table.append(tbody);
  block.append(table);
  for (const overlay of explanation.overlays) {
    block.append(el("figure", {},
      el("img", { src: overlay.png, alt: `Region relevance over ${overlay.label}: brighter regions moved the prediction more` }),
      el("figcaption", { text: `${overlay.label}: regions that moved the prediction` })));
  }
  return block;
}

function showAnswer(data) {
  const answer = data.predictions[0];
  const result = document.getElementById("result");
  result.replaceChildren();
  const used = answer.modalities_used.length ? answer.modalities_used.join(", ") : "none";
  const missing = answer.modalities_missing.length ? answer.modalities_missing.join(", ") : "none";
  result.append(el("p", { id: "modalities-used" }, el("strong", { text: "Present: " }), used,
                   el("br"), el("strong", { text: "Missing: " }), missing));
  if (answer.note) result.append(el("p", { class: "error", text: answer.note }));
  result.append(predictionTable(answer.predictions));
  if (answer.without) result.append(leaveOneOutTable(answer));
  if (answer.explanation) result.append(explanationBlock(answer.explanation));
  for (const warning of data.warnings) result.append(el("p", { class: "warning", text: "warning: " + warning }));
  setStatus(`Prediction for patient ${answer.id}.`);
}

function errorText(data, response) {
  if (data && Array.isArray(data.detail)) {
    return data.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return `the service answered ${response.status} ${response.statusText}`;
}

async function predict(event) {
  event.preventDefault();
  const section = document.getElementById("result-section");
  section.setAttribute("aria-busy", "true");
  setStatus("Predicting…");
  try {
    const response = await fetch("predict", { method: "POST", body: requestBody() });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      document.getElementById("result").replaceChildren();
      setStatus("Error: " + errorText(data, response), true);
    } else {
      showAnswer(data);
    }
  } catch (err) {
    setStatus("Error: the service cannot be reached (" + err + ")", true);
  } finally {
    section.setAttribute("aria-busy", "false");
  }
}

async function start() {
  state.card = await (await fetch("model")).json();
  buildForm(state.card);
  state.examples = await (await fetch("examples")).json();
  if (state.examples.length) {
    const select = document.getElementById("example");
    state.examples.forEach((p, i) => select.append(el("option", { value: String(i), text: p.id })));
    document.getElementById("examples-row").hidden = false;
  }
  document.getElementById("load-example").addEventListener("click", loadExample);
  document.getElementById("patient-form").addEventListener("submit", predict);
  document.getElementById("clear").addEventListener("click", (event) => {
    event.preventDefault();
    clearForm();
  });
  document.body.dataset.ready = "true";
}

start().catch((err) => setStatus("Error: cannot read the model (" + err + ")", true));
