// MOM dashboard: the page's behaviour. Login and logout; a poll every POLL_MS of /cluster,
// /health, /stats, every queue's depth and every exchange's bindings, drawn into the tables
// (rates come from successive /stats readings); the declare, bind, subscribe, publish and
// peek forms.

import * as api from "./api.js";
import { call, request, seg } from "./api.js";
import { count, dateTime, el, fillTable, rate, setOptions, setSuggestions, time } from "./dom.js";

const POLL_MS = 1500;
/** Rates are averaged over the readings of about this long. */
const RATE_WINDOW_MS = 5000;
/** How long a peeked message stays leased (and hidden from other consumers). */
const PEEK_LEASE_MS = 5000;

const $ = (id) => document.getElementById(id);

// ---- session ----

function showLogin(message = "") {
  stopPolling();
  clearTimeout(refreshTimer);
  $("dashboard").hidden = true;
  $("session").hidden = true;
  $("login").hidden = false;
  $("login-result").textContent = message;
  $("login-result").className = message ? "result error" : "result";
  $("login-username").focus();
}

function showDashboard(current) {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("session").hidden = false;
  $("whoami").textContent = `${current.user} (${current.role})`;
  scheduleRefresh(current);
  startPolling();
}

let refreshTimer = null;

/** Renews the token at 80% of its life, so a dashboard left open stays logged in. */
function scheduleRefresh(current) {
  clearTimeout(refreshTimer);
  const wait = Math.max(5000, (current.expiresAt - Date.now()) * 0.8);
  refreshTimer = setTimeout(async () => {
    try {
      scheduleRefresh(await api.refresh());
    } catch (e) {
      if (e.status !== 401) refreshTimer = setTimeout(() => scheduleRefresh(current), 10_000);
    }
  }, wait);
}

api.whenUnauthorized(() => {
  api.forgetSession();
  showLogin("Your session ended (token expired or revoked): log in again.");
});

async function submitLogin(register) {
  const form = $("login-form");
  if (!form.reportValidity()) return;
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  $("login-result").textContent = register ? "Registering…" : "Logging in…";
  $("login-result").className = "result";
  try {
    const current = register ? await api.register(username, password) : await api.login(username, password);
    $("login-password").value = "";
    showDashboard(current);
  } catch (e) {
    $("login-result").textContent = e.message;
    $("login-result").className = "result error";
  }
}

// ---- polling ----

let pollTimer = null;
let polling = false;
let pollAgain = false;
let active = false;

function startPolling() {
  active = true;
  pollNow();
}

function stopPolling() {
  active = false;
  clearTimeout(pollTimer);
}

/** Polls at once (after a form changed something), or right after the poll under way. */
function pollNow() {
  if (polling) {
    pollAgain = true;
    return;
  }
  clearTimeout(pollTimer);
  poll();
}

async function poll() {
  if (!active) return;
  if (!api.session()) {
    showLogin("Your session expired: log in again.");
    return;
  }
  polling = true;
  try {
    const [cluster, health, stats] = await Promise.all([
      call("GET", "/cluster"),
      request("GET", "/health", undefined, { auth: false, accept: [503] }).then((r) => r.data),
      call("GET", "/stats"),
    ]);
    // A resource may vanish, or be unreadable to the caller, between the listing and this.
    const settle = (promise) => promise.catch((error) => ({ error }));
    const [depths, exchanges] = await Promise.all([
      Promise.all(stats.queues.map((q) => settle(call("GET", `/queues/${seg(q.name)}`)))),
      Promise.all(stats.exchanges.map((x) => settle(call("GET", `/exchanges/${seg(x.name)}`)))),
    ]);
    if (!active) return;
    drawCluster(cluster, health);
    drawResources(stats, depths, exchanges);
    $("updated").textContent = `updated ${time(Date.now())}`;
    showBanner("");
  } catch (e) {
    if (e.status !== 401) showBanner(`Not updated: ${e.message}`);
  } finally {
    polling = false;
    if (active) {
      pollTimer = setTimeout(poll, pollAgain ? 0 : POLL_MS);
      pollAgain = false;
    }
  }
}

function showBanner(message) {
  $("banner").hidden = !message;
  $("banner").textContent = message;
}

// ---- cluster ----

/** Addresses of nodes seen live, to still show them once a node is dead. */
const lastAddress = new Map();

function drawCluster(cluster, health) {
  $("controller").textContent = cluster.controller ?? "none elected";
  const badge = $("health");
  badge.textContent = health.status;
  badge.className = `badge health-${health.status}`;
  badge.title = health.reasons.join("\n") || "every partition has a live leader and all its replicas in sync";
  const reasons = health.reasons.slice(0, 6).map((r) => el("li", {}, r));
  if (health.reasons.length > 6) reasons.push(el("li", {}, `… and ${health.reasons.length - 6} more`));
  $("health-reasons").replaceChildren(...reasons);

  const live = new Set(cluster.nodes.filter((n) => n.live).map((n) => n.id));
  const nodeRows = cluster.nodes.map((node) => {
    if (node.live && node.address) lastAddress.set(node.id, node.address);
    const state = node.live ? "live" : "dead";
    const leads = cluster.partitions.filter((p) => p.leader === node.id && p.leader_live).length;
    const inSync = cluster.partitions.filter((p) => p.isr.includes(node.id)).length;
    const address = node.address || lastAddress.get(node.id);
    return el(
      "tr",
      { class: `node node-${state}`, dataset: { node: node.id, state } },
      el("td", {}, node.id),
      el("td", { dataset: { field: "state" } }, el("span", { class: `badge state-${state}` }, state)),
      el("td", { class: "mono" }, address ? (node.live ? address : `${address} (last seen)`) : "—"),
      el("td", { class: "num" }, leads),
      el("td", { class: "num" }, `${inSync} of ${cluster.partitions.length}`),
    );
  });
  fillTable($("nodes"), nodeRows, "No broker node has registered yet.");

  const partitionRows = cluster.partitions.map((p) => {
    const chips = p.replicas.map((replica) => {
      const classes = ["chip", p.isr.includes(replica) ? "in-sync" : "out-of-sync"];
      if (!live.has(replica)) classes.push("dead");
      if (replica === p.leader) classes.push("leader");
      const title = [
        replica === p.leader ? "leader" : "follower",
        p.isr.includes(replica) ? "in sync" : "out of sync",
        live.has(replica) ? "live" : "dead",
      ].join(", ");
      return el("span", { class: classes.join(" "), title }, replica);
    });
    const followers = p.replicas.filter((r) => r !== p.leader);
    const lag = followers.map((r) => {
      const behind = p.lag ? p.lag[r] : undefined;
      return el(
        "span",
        { class: `lag${behind ? " behind" : ""}` },
        `${r}: ${behind === null || behind === undefined ? "—" : count(behind)}`,
      );
    });
    const synced = p.isr.length === p.replicas.length;
    return el(
      "tr",
      { dataset: { partition: p.partition } },
      el("td", { class: "num" }, p.partition),
      el("td", { class: p.leader_live ? "" : "bad", title: p.leader_live ? "" : "leader is dead; electing" }, p.leader || "—"),
      el("td", { class: "num" }, p.epoch),
      el("td", { class: "nowrap" }, chips),
      el("td", { class: synced ? "num" : "num warn" }, `${p.isr.length}/${p.replicas.length}`),
      el("td", {}, lag),
    );
  });
  fillTable($("partitions"), partitionRows, "No partition is assigned yet.");
}

// ---- queues, exchanges, topics ----

/**
 * Rates from counters read at different times: each reading is kept for RATE_WINDOW_MS and a
 * rate compares the newest with the oldest of the same gateway instance (another instance
 * means other counters).
 */
class Rates {
  constructor() {
    this.readings = [];
  }

  /** Starts a reading of `/stats`. */
  begin(stats) {
    this.current = { instance: stats.instance, at: stats.now_ms, counts: new Map() };
    this.readings = this.readings.filter(
      (r) => r.instance === stats.instance && stats.now_ms - r.at <= RATE_WINDOW_MS,
    );
  }

  /** Records `value` under `key` and answers its rate per second (null: nothing to compare). */
  perSecond(key, value) {
    this.current.counts.set(key, value);
    const earlier = this.readings.find((r) => r.counts.has(key));
    if (!earlier) return null;
    const seconds = (this.current.at - earlier.at) / 1000;
    const delta = value - earlier.counts.get(key);
    return seconds > 0 && delta >= 0 ? delta / seconds : null;
  }

  end() {
    this.readings.push(this.current);
  }
}

const rates = new Rates();

function drawResources(stats, depths, exchangeDetails) {
  rates.begin(stats);
  $("stats-since").textContent = `since ${dateTime(stats.started_at_ms)}`;

  const queueRows = stats.queues.map((q, i) => {
    const depth = depths[i];
    const denied = depth.error ? depth.error.message : null;
    return el(
      "tr",
      { dataset: { queue: q.name } },
      el("td", {}, q.name),
      el("td", { class: "num", dataset: { field: "ready" }, title: denied }, denied ? "?" : count(depth.ready)),
      el("td", { class: "num", dataset: { field: "leased" }, title: denied }, denied ? "?" : count(depth.leased)),
      el("td", { class: "num", dataset: { field: "delivered" } }, count(q.delivered)),
      el("td", { class: "num", dataset: { field: "deliver-rate" } }, rate(rates.perSecond(`qd/${q.name}`, q.delivered))),
      el("td", { class: "num", dataset: { field: "ack-rate" }, title: `${q.acked} acked` }, rate(rates.perSecond(`qa/${q.name}`, q.acked))),
      el("td", { class: "num", dataset: { field: "consumers" } }, q.consumers),
    );
  });
  fillTable($("queues"), queueRows, "No queue you can see. Declare one below.");

  const exchangeRows = stats.exchanges.map((x, i) => {
    const detail = exchangeDetails[i];
    const bindings = detail.error
      ? "?"
      : detail.bindings.map((b) => el("span", { class: "chip binding", title: `routing key ${JSON.stringify(b.routing_key)}` }, `${b.queue} ← ${b.routing_key || "(empty key)"}`));
    return el(
      "tr",
      { dataset: { exchange: x.name } },
      el("td", {}, x.name),
      el("td", {}, x.kind),
      el("td", { dataset: { field: "bindings" } }, bindings.length === 0 ? "none" : bindings),
      el("td", { class: "num", dataset: { field: "published" } }, count(x.published)),
      el("td", { class: "num", dataset: { field: "publish-rate" } }, rate(rates.perSecond(`x/${x.name}`, x.published))),
    );
  });
  fillTable($("exchanges"), exchangeRows, "No exchange you can see.");

  const topicRows = stats.topics.map((t) =>
    el(
      "tr",
      { dataset: { topic: t.name } },
      el("td", {}, t.name),
      el("td", { class: "num", title: t.subscribers.join(", ") }, t.subscribers.length),
      el("td", { class: "num", dataset: { field: "published" } }, count(t.published)),
      el("td", { class: "num", dataset: { field: "publish-rate" } }, rate(rates.perSecond(`t/${t.name}`, t.published))),
    ),
  );
  fillTable($("topics"), topicRows, "No topic you can see.");

  const subscriptionRows = stats.subscriptions.map((s) => {
    const key = `${s.topic}/${s.subscriber}`;
    return el(
      "tr",
      { dataset: { subscription: key } },
      el("td", {}, s.topic),
      el("td", {}, s.subscriber),
      el("td", { class: "num", dataset: { field: "delivered" } }, count(s.delivered)),
      el("td", { class: "num", dataset: { field: "deliver-rate" } }, rate(rates.perSecond(`sd/${key}`, s.delivered))),
      el("td", { class: "num", dataset: { field: "ack-rate" }, title: `${s.acked} acked` }, rate(rates.perSecond(`sa/${key}`, s.acked))),
      el("td", { class: "num", dataset: { field: "consumers" } }, s.consumers),
    );
  });
  fillTable($("subscriptions"), subscriptionRows, "No subscription you can see.");
  rates.end();

  // Suggestions and choices for the forms.
  setSuggestions($("exchange-names"), stats.exchanges.map((x) => x.name));
  setSuggestions($("queue-names"), stats.queues.map((q) => q.name));
  setSuggestions($("topic-names"), stats.topics.map((t) => t.name));
  setOptions($("peek-mailbox"), [
    ...stats.queues.map((q) => [`queue/${q.name}`, `queue ${q.name}`]),
    ...stats.subscriptions.map((s) => [`subscription/${s.topic}/${s.subscriber}`, `subscription ${s.topic} / ${s.subscriber}`]),
  ]);
}

// ---- forms ----

/** Runs a form's action, showing its outcome (or error) next to the button. */
function onSubmit(formId, action) {
  const form = $(formId);
  const result = form.querySelector("output");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.className = "result";
    result.textContent = "…";
    try {
      result.textContent = await action(form);
      result.className = "result ok";
      pollNow();
    } catch (e) {
      result.textContent = e.message;
      result.className = "result error";
    }
  });
}

const value = (id) => $(id).value.trim();
const outcome = (status) => (status === 201 ? "created" : "already there");

function wireForms() {
  const exchangeKindLabel = $("declare-exchange-kind-label");
  const syncDeclareKind = () => {
    exchangeKindLabel.hidden = $("declare-kind").value !== "exchange";
  };
  $("declare-kind").addEventListener("change", syncDeclareKind);
  syncDeclareKind();

  onSubmit("declare-form", async () => {
    const kind = $("declare-kind").value;
    const name = value("declare-name");
    const body = kind === "exchange" ? { name, kind: $("declare-exchange-kind").value } : { name };
    const { status } = await request("POST", `/${kind}s`, body);
    return `${kind} ${name}: ${outcome(status)}`;
  });

  onSubmit("bind-form", async () => {
    const exchange = value("bind-exchange");
    const queue = value("bind-queue");
    const routing_key = value("bind-key");
    const { status } = await request("POST", `/exchanges/${seg(exchange)}/bindings`, { queue, routing_key });
    return `${queue} ← ${exchange} (${JSON.stringify(routing_key)}): ${outcome(status)}`;
  });

  onSubmit("subscribe-form", async () => {
    const topic = value("subscribe-topic");
    const subscriber = value("subscribe-subscriber");
    const { status } = await request("POST", `/topics/${seg(topic)}/subscriptions`, { subscriber });
    return `${subscriber} on ${topic}: ${outcome(status)}`;
  });

  $("publish-kind").addEventListener("change", () => {
    $("publish-name").setAttribute("list", `${$("publish-kind").value}-names`);
  });

  onSubmit("publish-form", async () => {
    const kind = $("publish-kind").value;
    const name = value("publish-name");
    const message = { routing_key: value("publish-key"), payload: $("publish-payload").value };
    const ttl = Number(value("publish-ttl"));
    if (ttl > 0) message.ttl_ms = ttl;
    const copies = Math.max(1, Math.min(1000, Number(value("publish-copies")) || 1));
    const path = `/${kind}s/${seg(name)}/publish`;
    if (copies === 1) {
      const reply = await call("POST", path, message);
      return `published ${reply.message_id}, routed to ${reply.routed}`;
    }
    const { status, data } = await request("POST", path, { messages: Array(copies).fill(message) }, { accept: [207, 503] });
    if (!data || !Array.isArray(data.published)) throw new api.ApiError(status, (data && data.error) || "publish failed");
    const stored = data.published.filter((p) => p.message_id).length;
    const failed = data.published.find((p) => p.error);
    if (status === 201) return `published ${stored} messages`;
    throw new api.ApiError(status, `published ${stored} of ${copies}: ${failed ? failed.error : "failed"}`);
  });

  onSubmit("peek-form", async () => {
    const [kind, ...names] = $("peek-mailbox").value.split("/");
    if (!kind) throw new Error("nothing to peek at: declare a queue or subscribe first");
    const path = kind === "queue"
      ? `/queues/${seg(names[0])}/pull`
      : `/topics/${seg(names[0])}/subscriptions/${seg(names[1])}/pull`;
    const max = Math.max(1, Math.min(100, Number(value("peek-max")) || 1));
    const { messages } = await call("POST", path, { max, visibility_timeout_ms: PEEK_LEASE_MS, wait_ms: 0 });
    const rows = messages.map((m) =>
      el(
        "tr",
        { dataset: { message: m.message_id }, title: `message ${m.message_id}` },
        el("td", { class: "payload" }, m.payload),
        el("td", {}, m.routing_key),
        el("td", {}, m.exchange),
        el("td", { class: "num" }, m.delivery_count),
        el("td", { class: "nowrap", title: dateTime(m.published_at_ms) }, time(m.published_at_ms)),
      ),
    );
    fillTable($("peeked"), rows, "Nothing ready to deliver.");
    return messages.length === 0
      ? "nothing ready"
      : `${messages.length} message(s), leased for ${PEEK_LEASE_MS / 1000} s and not acked: they will be delivered again`;
  });
}

// ---- start ----

function start() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitLogin(false);
  });
  $("register-submit").addEventListener("click", () => submitLogin(true));
  $("logout").addEventListener("click", () => {
    api.forgetSession();
    showLogin("Logged out.");
  });
  wireForms();
  const current = api.session();
  if (current) showDashboard(current);
  else showLogin();
}

start();
