// MageFlow dashboard: no build step, no dependencies. Served with a strict CSP
// (no inline scripts); the action token lives in sessionStorage only.
"use strict";

const TOKEN_KEY = "mageflow-token";
let config = { read_only: true, hatchet_url: null, actions: [] };

function takeToken() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function pill(status) {
  return el("span", { class: `pill ${status}`, "data-testid": "status" }, status);
}

function say(text, ok) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = ok ? "message ok" : "message";
}

async function getJSON(url) {
  const res = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

async function loadConfig() {
  config = await getJSON("/api/config");
  const mode = document.getElementById("mode");
  if (config.read_only) mode.textContent = "read-only";
  else if (!sessionStorage.getItem(TOKEN_KEY)) mode.textContent = "no action token: open the URL printed at start";
}

// -- flows list ---------------------------------------------------------------

async function listFlows() {
  const form = document.getElementById("filters");
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form).entries()) {
    if (value !== "") params.append(name, value);
  }
  const rows = document.getElementById("rows");
  try {
    const flows = await getJSON(`/api/flows?${params}`);
    rows.replaceChildren(
      ...flows.map((f) =>
        el(
          "tr",
          { "data-key": f.key },
          el("td", {}, f.created.replace("T", " ").slice(0, 19)),
          el("td", {}, pill(f.status)),
          el("td", {}, f.kind),
          el("td", {}, f.task_name),
          el("td", { class: "key" }, el("a", { href: `/flow/${encodeURIComponent(f.key)}` }, f.key)),
          el(
            "td",
            {},
            Object.entries(f.task_identifiers)
              .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
              .join(" "),
          ),
        ),
      ),
    );
    say(flows.length ? "" : "no flows match", true);
  } catch (err) {
    say(err.message, false);
  }
}

function initIndex() {
  const form = document.getElementById("filters");
  const params = new URLSearchParams(window.location.search);
  for (const name of ["status", "task", "identifier", "limit"]) {
    if (params.get(name)) form.elements[name].value = params.get(name);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    listFlows();
  });
  listFlows();
  setInterval(listFlows, 3000);
}

// -- flow page ----------------------------------------------------------------

let selected = null;
let rootKey = null;

function counter(progress) {
  const p = progress;
  const total = Math.max(p.admitted, 1);
  const bar = el(
    "div",
    { class: "bar" },
    el("span", { class: "b-done" }),
    el("span", { class: "b-failed" }),
    el("span", { class: "b-running" }),
  );
  bar.children[0].style.width = `${(100 * p.done) / total}%`;
  bar.children[1].style.width = `${(100 * p.failed) / total}%`;
  bar.children[2].style.width = `${(100 * p.running) / total}%`;
  const step = p.current_step === null || p.current_step === undefined ? "" : ` · step ${p.current_step + 1}`;
  return el(
    "div",
    {},
    el(
      "div",
      { class: "counter", "data-testid": "counter" },
      `${p.done}/${p.admitted} done · ${p.running} running · ${p.queued} queued · ${p.failed} failed${step}`,
    ),
    bar,
  );
}

function renderNode(node) {
  const box = el(
    "div",
    {
      class: `node s-${node.status}${node.key === selected ? " selected" : ""}`,
      "data-key": node.key,
      "data-status": node.status,
      onclick: (event) => {
        event.stopPropagation();
        select(node.key);
      },
    },
    el(
      "div",
      { class: "node-head" },
      el("span", { class: "kind" }, node.kind),
      el("span", { class: "task" }, node.task_name),
      pill(node.status),
    ),
    el("div", { class: "nkey" }, node.key),
  );
  if (node.progress) box.append(counter(node.progress));
  if (node.error) box.append(el("div", { class: "err" }, `${node.error.type}: ${node.error.message}`));
  const members = node.members || [];
  if (members.length) {
    const group = el("div", { class: `members ${node.kind}` });
    members.forEach((m, i) => {
      if (node.kind === "chain" && i > 0) group.append(el("span", { class: "arrow" }, "→"));
      group.append(renderFlow(m));
    });
    if (node.more_members) group.append(el("span", { class: "nkey" }, `… ${node.more_members} more`));
    box.append(group);
  }
  return box;
}

function renderFlow(node) {
  const ok = node.success_callbacks || [];
  const bad = node.error_callbacks || [];
  if (!ok.length && !bad.length) return renderNode(node);
  const callbacks = el("div", { class: "callbacks" });
  for (const cb of ok) callbacks.append(el("span", { class: "cb-label on-success" }, "on success"), renderFlow(cb));
  for (const cb of bad) callbacks.append(el("span", { class: "cb-label on-error" }, "on error"), renderFlow(cb));
  return el("div", { class: "flowrow" }, renderNode(node), el("span", { class: "arrow" }, "⇢"), callbacks);
}

// --hatchet-url is a template with {run_id}, or a base that /runs/<id> is appended to
function runLink(template, runId) {
  const id = encodeURIComponent(runId);
  if (template.includes("{run_id}")) return template.replaceAll("{run_id}", id);
  return `${template.replace(/\/$/, "")}/runs/${id}`;
}

function field(name, value) {
  if (value === null || value === undefined || value === "") return [];
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return [el("dt", {}, name), el("dd", { "data-field": name }, text)];
}

async function select(key) {
  selected = key;
  document.querySelectorAll(".node").forEach((n) => n.classList.toggle("selected", n.dataset.key === key));
  document.getElementById("d-title").textContent = key;
  try {
    const info = await getJSON(`/api/signatures/${encodeURIComponent(key)}`);
    const fields = document.getElementById("d-fields");
    const run = info.run_id && config.hatchet_url
      ? el("a", { href: runLink(config.hatchet_url, info.run_id), target: "_blank", rel: "noopener" }, info.run_id)
      : info.run_id;
    const runNodes = run ? [el("dt", {}, "hatchet run"), el("dd", { "data-field": "run_id" }, run)] : [];
    fields.replaceChildren(
      ...field("status", info.status),
      ...field("task", info.task_name),
      ...runNodes,
      ...field("identifiers", Object.keys(info.task_identifiers).length ? info.task_identifiers : null),
      ...field("kwargs", Object.keys(info.kwargs).length ? info.kwargs : null),
      ...field("input", info.input),
      ...field("result", info.result),
      ...field("error", info.error ? `${info.error.type}: ${info.error.message}\n\n${info.error.traceback}` : null),
      ...field("progress", info.progress),
      ...field("parent", info.parent),
      ...field("dispatch id", info.dispatch_id),
      ...field("created", info.created),
      ...field("expires in", info.ttl_ms > 0 ? `${Math.round(info.ttl_ms / 1000)} s` : null),
    );
    renderActions(key);
  } catch (err) {
    say(err.message, false);
  }
}

function renderActions(key) {
  const box = document.getElementById("actions");
  if (config.read_only) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(
    ...config.actions.map((action) =>
      el("button", { class: action, "data-action": action, onclick: () => act(key, action) }, action),
    ),
  );
}

async function act(key, action) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  try {
    const res = await fetch(`/api/signatures/${encodeURIComponent(key)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Mageflow-Token": token },
      body: "{}",
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || res.statusText);
    say(`${action}: ${key} is now ${body.status}`, true);
    select(key);
  } catch (err) {
    say(`${action} refused: ${err.message}`, false);
  }
}

function initFlow() {
  rootKey = decodeURIComponent(window.location.pathname.replace(/^\/flow\//, ""));
  selected = rootKey;
  document.getElementById("flow-title").textContent = rootKey;
  const live = document.getElementById("live");
  const source = new EventSource(`/api/flows/${encodeURIComponent(rootKey)}/events`);
  source.onopen = () => {
    live.textContent = "live";
  };
  source.onerror = () => {
    live.textContent = "reconnecting…";
  };
  source.onmessage = (event) => {
    const tree = JSON.parse(event.data);
    if (tree.error) {
      say(tree.error, false);
      return;
    }
    live.textContent = "live";
    document.getElementById("graph").replaceChildren(renderFlow(tree));
    if (selected) select(selected);
  };
  select(rootKey);
}

async function main() {
  takeToken();
  await loadConfig();
  if (document.body.dataset.page === "flow") initFlow();
  else initIndex();
}

main();
