/* ShopBot operator console, browser side. Plain ES2019, no dependencies, no build step.
   Rule: every text that comes from shoppers, the bot or operators reaches the page as a text node
   (see h() below); nothing here assigns innerHTML. */
(() => {
"use strict";

const API = "/console/api";
const VIEWS = ["waiting", "mine", "open", "resolved"];
const TITLE = "ShopBot · Operator console";
const CHANNELS = { webchat: "Web chat", telegram: "Telegram", rest: "API" };
const STATES = { waiting: "Waiting", human: "With operator", bot: "With bot", resolved: "Resolved" };
const inView = {
  waiting: (c) => c.state === "waiting",
  mine: (c) => c.state === "human" && !!S.me && c.operator === S.me.username,
  open: (c) => c.state === "waiting" || c.state === "human",
  resolved: (c) => c.state === "resolved",
};

const S = {
  me: null, csrf: "", view: "waiting",
  items: new Map(),                       // id -> latest inbox ITEM
  lists: { waiting: [], mine: [], open: [], resolved: [] },   // ids per view
  waiting: new Set(), fresh: new Map(),   // waiting ids (to announce new ones); id -> arrival time (row flash)
  openId: null, conv: null, ui: null, seen: new Set(),
  canned: [], cannedMatches: [], cannedActive: 0, cannedDismissed: null,
  busy: {}, lastTyping: 0, typingTimer: 0, statusTimer: 0,
  ws: null, wsWanted: false, wsOpened: false, wsAttempt: 0, wsTimer: 0,
};

const $ = (sel, root) => (root || document).querySelector(sel);

/** Build an element. Children that are not Nodes become text nodes, never markup. */
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat(3)) {
    if (kid == null || kid === false) continue;
    el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

// ---- time ----
function toMs(at) {
  if (at == null || at === "") return NaN;
  if (typeof at === "number") return at < 1e12 ? at * 1000 : at;
  const n = Number(at);
  return Number.isNaN(n) ? Date.parse(at) : toMs(n);
}
function clock(at) {
  const ms = toMs(at);
  if (Number.isNaN(ms)) return "";
  const d = new Date(ms);
  const opts = { hour: "2-digit", minute: "2-digit" };
  if (d.toDateString() !== new Date().toDateString()) Object.assign(opts, { month: "short", day: "numeric" });
  return d.toLocaleString([], opts);
}
function span(ms) {
  const m = Math.max(0, Math.floor((Date.now() - ms) / 60000));
  if (m < 1) return "<1 min";
  if (m < 60) return m + " min";
  const hrs = Math.floor(m / 60);
  return hrs < 24 ? hrs + " h" + (m % 60 ? " " + (m % 60) + " min" : "") : Math.floor(hrs / 24) + " d";
}
function sinceText(kind, ms) {
  if (Number.isNaN(ms)) return "";
  if (kind === "waiting") return "waiting " + span(ms);
  return Date.now() - ms < 60000 ? "just now" : span(ms) + " ago";
}
function sinceEl(kind, at) {
  const ms = toMs(at);
  return h("span", { class: "since", "data-since": kind, "data-ts": ms, title: clock(at) }, sinceText(kind, ms));
}
function tickTimes() {
  document.querySelectorAll("[data-since]").forEach((el) => {
    el.textContent = sinceText(el.dataset.since, Number(el.dataset.ts));
  });
}

// ---- status line, announcements ----
function status(msg, kind) {
  const el = $("#status");
  el.textContent = msg || "";
  el.dataset.kind = kind || "info";
  clearTimeout(S.statusTimer);
  if (msg && kind !== "error") S.statusTimer = setTimeout(() => { if (el.textContent === msg) el.textContent = ""; }, 6000);
}
function fail(e) {
  if (e && e.status === 401 && !e.login) return;  // the login form is already showing
  status(e && e.message ? e.message : "Something went wrong.", "error");
}
function announce(msg) {
  const el = $("#announcer");
  el.textContent = "";
  setTimeout(() => { el.textContent = msg; }, 50);
}

// ---- server API ----
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
function detailOf(data, res) {
  const d = data && data.detail;
  if (typeof d === "string" && d) return d;
  if (Array.isArray(d)) return d.map((x) => (x && x.msg) || String(x)).join("; ");
  return "The server answered " + res.status + (res.statusText ? " " + res.statusText : "") + ".";
}
async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (S.csrf && !opts.login) headers["X-CSRF-Token"] = S.csrf;
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, "Cannot reach the server. Check the connection and try again.");
  }
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (res.ok) return data || {};
  const err = new ApiError(res.status, detailOf(data, res));
  if (res.status === 401 && !opts.login) loggedOut(S.me ? "Your session has ended. Please log in again." : "");
  err.login = !!opts.login;
  throw err;
}
const convPath = (id, action) => "/conversations/" + encodeURIComponent(id) + (action ? "/" + action : "");

// ---- login / logout ----
function showLogin() {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#login-status-slot").appendChild($("#status"));
  const form = $("#login-form");
  form.elements.password.value = "";
  form.elements.username.focus();
}
function start(data) {
  S.me = data.operator || { username: "", display_name: "" };
  S.csrf = data.csrf || "";
  $("#operator-name").textContent = S.me.display_name || S.me.username;
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#app-status-slot").appendChild($("#status"));
  api("GET", "/canned").then((d) => { S.canned = (d && d.responses) || []; }).catch(fail);
  refreshAll().then(() => {
    const id = decodeURIComponent(location.hash.slice(1));
    if (id && !S.openId) openConversation(id, false);
  });
  connectWs();
  renderInbox();
}
function loggedOut(msg) {
  stopWs();
  Object.assign(S, { me: null, csrf: "", openId: null, conv: null, ui: null, items: new Map(),
    lists: { waiting: [], mine: [], open: [], resolved: [] }, waiting: new Set() });
  $("#conversation").replaceChildren(PLACEHOLDERS.conv.cloneNode(true));
  $("#side").replaceChildren(PLACEHOLDERS.side.cloneNode(true));
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  document.title = TITLE;
  showLogin();
  status(msg, "info");
}
async function onLogin(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const user = form.elements.username, pass = form.elements.password;
  const button = form.querySelector("button[type=submit]");
  if (!user.value.trim() || !pass.value) {
    status("Enter your username and password.", "error");
    (user.value.trim() ? pass : user).focus();
    return;
  }
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  try {
    const data = await api("POST", "/login", { username: user.value.trim(), password: pass.value }, { login: true });
    pass.value = "";
    status("");
    start(data);
  } catch (e) {
    status(e.message, "error");
    pass.focus();
    pass.select();
  } finally {
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }
}
async function onLogout() {
  try { await api("POST", "/logout"); } catch (e) { /* logged out either way */ }
  if (S.me) loggedOut("You have logged out.");
}

// ---- inbox ----
function sortList(view) {
  const at = (id) => Number((S.items.get(id) || {}).last_activity) || 0;
  S.lists[view].sort((a, b) => at(b) - at(a));
}
/** Store an ITEM and move it between lists by its state (except `trusted`, whose list the server gave). */
function upsert(item, trusted) {
  if (S.openId === item.id) item = Object.assign({}, item, { unread: 0 });
  S.items.set(item.id, item);
  for (const view of VIEWS) {
    if (view === trusted) continue;
    const list = S.lists[view], i = list.indexOf(item.id), belongs = inView[view](item);
    if (belongs && i < 0) list.push(item.id);
    if (!belongs && i >= 0) list.splice(i, 1);
    sortList(view);
  }
  if (item.state === "waiting") S.waiting.add(item.id); else S.waiting.delete(item.id);
}
async function loadView(view) {
  const data = await api("GET", "/conversations?view=" + view);
  const items = (data && data.conversations) || [];
  S.lists[view] = items.map((c) => c.id);
  items.forEach((c) => upsert(c, view));
  sortList(view);
}
async function refreshAll() {
  try {
    await Promise.all(VIEWS.map(loadView));
  } catch (e) { fail(e); }
  renderInbox();
}
function setView(view, focusTab) {
  S.view = view;
  renderInbox();
  if (focusTab) $('[data-view="' + view + '"]').focus();
  loadView(view).then(renderInbox, fail);
}

function preview(msg) {
  if (!msg) return h("span", { class: "muted" }, "No messages yet");
  const who = { user: "Shopper", bot: "Bot", operator: "Operator" }[msg.role] || msg.role;
  const text = String(msg.text || "").replace(/\s+/g, " ").trim();
  return [h("span", { class: "who" }, who + ": "), text.length > 140 ? text.slice(0, 139) + "…" : text];
}
function ownerLabel(op) {
  if (!op) return "Unassigned";
  return S.me && op === S.me.username ? "You" : op;
}
function channelBadge(ch) {
  return h("span", { class: "badge badge-ch", "data-channel": ch }, CHANNELS[ch] || ch || "?");
}
function stateChip(c) {
  const label = c.state === "human" ? ownerLabel(c.operator) : STATES[c.state] || c.state;
  return h("span", { class: "chip", "data-state": c.state }, label);
}
function inboxRow(c) {
  const unread = S.openId === c.id ? 0 : Number(c.unread) || 0;
  const waiting = c.state === "waiting" && c.waiting_since != null;
  const row = h("li", {
    class: "row" + (unread ? " is-unread" : "") + (S.fresh.has(c.id) ? " is-new" : ""),
    tabindex: "0", "data-conversation-id": c.id, "data-state": c.state, "data-unread": unread,
    "aria-current": S.openId === c.id ? "true" : null,
  },
  h("div", { class: "row-top" }, channelBadge(c.channel), stateChip(c),
    sinceEl(waiting ? "waiting" : "ago", waiting ? c.waiting_since : c.last_activity)),
  h("div", { class: "row-preview" }, preview(c.last_message)),
  h("div", { class: "row-bottom" },
    h("span", { class: "reason" }, c.reason || ""),
    unread ? h("span", { class: "unread" }, String(unread), h("span", { class: "sr-only" }, " unread")) : null));
  if (S.fresh.has(c.id)) row.style.animationDelay = S.fresh.get(c.id) - Date.now() + "ms";  // re-renders continue the flash
  return row;
}
function renderInbox() {
  for (const view of VIEWS) {
    const tab = $('[data-view="' + view + '"]');
    tab.setAttribute("aria-selected", String(view === S.view));
    tab.tabIndex = view === S.view ? 0 : -1;
    $('[data-count="' + view + '"]').textContent = String(S.lists[view].length);
  }
  $("#inbox-panel").setAttribute("aria-labelledby", "tab-" + S.view);
  const list = $("#inbox-list");
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.conversationId : null;
  const rows = S.lists[S.view].map((id) => S.items.get(id)).filter(Boolean).map(inboxRow);
  const empty = { waiting: "Nobody is waiting.", mine: "You own no conversations.",
    open: "No open conversations.", resolved: "No resolved conversations." }[S.view];
  list.replaceChildren(...(rows.length ? rows : [h("li", { class: "empty" }, empty)]));
  const again = focused && rows.find((r) => r.dataset.conversationId === focused);
  if (again) again.focus();
  const n = S.lists.waiting.length;
  document.title = (n ? "(" + n + ") " : "") + TITLE;
}
function onInboxKey(ev) {
  const row = ev.target.closest("[data-conversation-id]");
  if (!row) return;
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    openConversation(row.dataset.conversationId, true);
  } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    ev.preventDefault();
    const next = ev.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling;
    if (next && next.dataset.conversationId) next.focus();
  }
}
function onTabKey(ev) {
  const i = VIEWS.indexOf(S.view);
  const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: VIEWS.length - 1 }[ev.key];
  if (to === undefined) return;
  ev.preventDefault();
  setView(VIEWS[(to + VIEWS.length) % VIEWS.length], true);
}

// ---- websocket ----
function setLive(state, text) {
  const el = $("#live");
  el.dataset.live = state;
  el.textContent = text;
}
function connectWs() {
  S.wsWanted = true;
  clearTimeout(S.wsTimer);
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/console/ws";
  let ws;
  try { ws = new WebSocket(url); } catch (e) { scheduleReconnect(); return; }
  S.ws = ws;
  setLive("connecting", "Connecting…");
  ws.onopen = () => {
    const again = S.wsOpened;
    S.wsOpened = true;
    S.wsAttempt = 0;
    setLive("on", "Live");
    if (again) resync();
  };
  ws.onmessage = (ev) => {
    let frame;
    try { frame = JSON.parse(ev.data); } catch (e) { return; }
    onFrame(frame);
  };
  ws.onclose = (ev) => {
    if (S.ws !== ws) return;
    S.ws = null;
    if (!S.wsWanted) return;
    if (ev.code === 4401) {   // not logged in (any more): /me confirms and shows the login form
      api("GET", "/me").then((me) => { S.csrf = me.csrf; scheduleReconnect(); }, () => {});
      return;
    }
    scheduleReconnect();
  };
}
function scheduleReconnect() {
  const delay = Math.min(30000, 1000 * 2 ** S.wsAttempt) * (0.75 + Math.random() * 0.5);
  S.wsAttempt += 1;
  setLive("off", "Reconnecting…");
  clearTimeout(S.wsTimer);
  S.wsTimer = setTimeout(() => { if (S.wsWanted) connectWs(); }, delay);
}
function stopWs() {
  S.wsWanted = false;
  S.wsOpened = false;
  S.wsAttempt = 0;
  clearTimeout(S.wsTimer);
  const ws = S.ws;
  S.ws = null;
  if (ws) ws.close(1000);
}
function resync() {
  refreshAll();
  if (S.openId) openConversation(S.openId, false);
}
function onFrame(f) {
  if (f.type === "conversation" && f.conversation) {
    const c = f.conversation;
    if (c.state === "waiting" && !S.waiting.has(c.id)) {
      announce("New conversation waiting on " + (CHANNELS[c.channel] || c.channel) + (c.reason ? ": " + c.reason : ""));
      S.fresh.set(c.id, Date.now());
      setTimeout(() => S.fresh.delete(c.id), 4000);
    }
    upsert(c);
    if (S.conv && S.conv.id === c.id) {
      Object.assign(S.conv, { state: c.state, operator: c.operator });
      updateControls();
    }
    renderInbox();
  } else if (f.type === "message" && f.turn && S.conv && f.conversation_id === S.conv.id) {
    appendTurn(f.turn);
    if (f.turn.role === "user") hideTyping();
  } else if (f.type === "typing" && S.conv && f.conversation_id === S.conv.id && f.who !== "operator") {
    const el = S.ui.typing;
    el.hidden = false;
    clearTimeout(S.typingTimer);
    S.typingTimer = setTimeout(hideTyping, 4000);
  }
}
function hideTyping() {
  clearTimeout(S.typingTimer);
  if (S.ui) S.ui.typing.hidden = true;
}

// ---- conversation ----
const mine = () => !!(S.conv && S.me && S.conv.state === "human" && S.conv.operator === S.me.username);

async function openConversation(id, moveFocus) {
  const switching = S.openId !== id;
  S.openId = id;
  if (location.hash.slice(1) !== encodeURIComponent(id)) history.replaceState(null, "", "#" + encodeURIComponent(id));
  const item = S.items.get(id);
  if (item) S.items.set(id, Object.assign({}, item, { unread: 0 }));
  renderInbox();
  if (switching) $("#conversation").setAttribute("aria-busy", "true");
  try {
    const conv = await api("GET", convPath(id));
    if (S.openId === id) renderConversation(conv, moveFocus);
  } catch (e) {
    if (S.openId === id && e.status === 404) { S.openId = null; renderInbox(); }
    fail(e);
  } finally {
    $("#conversation").removeAttribute("aria-busy");
  }
}

function who(t) {
  if (t.role === "user") return "Shopper";
  if (t.role === "bot") return "Bot";
  if (S.me && t.operator === S.me.username) return (S.me.display_name || t.operator) + " (you)";
  return t.operator || "Operator";
}
function turnKeys(t) {
  return [t.id != null ? "id:" + t.id : null, [t.role, t.at, t.text].join("\u0001")].filter(Boolean);
}
function turnEl(t) {
  const role = t.role === "bot" || t.role === "operator" ? t.role : "user";
  const conf = typeof t.confidence === "number" ? t.confidence.toFixed(2) : null;
  const tags = [t.route, t.intent, conf].filter((x) => x != null && x !== "");
  return h("div", { class: "msg msg-" + role, "data-role": role, "data-turn-id": t.id },
    h("div", { class: "msg-meta" }, h("span", { class: "msg-who" }, who(t)),
      tags.length ? h("span", { class: "msg-tags" }, tags.join(" · ")) : null,
      h("time", { title: clock(t.at) }, clock(t.at))),
    h("div", { class: "bubble" }, String(t.text == null ? "" : t.text)));
}
function appendTurn(t, force) {
  if (!S.ui) return;
  const keys = turnKeys(t);
  if (keys.some((k) => S.seen.has(k))) return;
  keys.forEach((k) => S.seen.add(k));
  const box = S.ui.transcript;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const empty = $(".empty", box);
  if (empty) empty.remove();
  box.appendChild(turnEl(t));
  if (atBottom || force) box.scrollTop = box.scrollHeight;
}
function noteEl(n) {
  return h("li", { class: "note" },
    h("div", { class: "note-meta" }, h("strong", null, ownerLabel(n.operator)), " · ", h("time", null, clock(n.at))),
    h("div", { class: "note-text" }, String(n.text == null ? "" : n.text)));
}

/** Clone a <template> and collect its [data-ui] elements by name. */
function stamp(id) {
  const frag = document.getElementById(id).content.cloneNode(true);
  const ui = {};
  frag.querySelectorAll("[data-ui]").forEach((el) => { ui[el.dataset.ui] = el; });
  return [frag, ui];
}
const onEnter = (fn) => (e) => { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); fn(); } };
const submit = (fn) => (e) => { e.preventDefault(); fn(e); };

function renderConversation(c, moveFocus) {
  const old = S.ui && S.conv && S.conv.id === c.id ? S.ui : null;
  const keep = old && { reply: old.reply.value, note: old.noteText.value,
    focus: document.activeElement === old.reply ? "reply" : document.activeElement === old.noteText ? "note" : null };
  hideTyping();
  closeCanned();
  S.conv = c;
  S.seen = new Set();
  const [main, ui] = stamp("tpl-conversation"), [side, sideUi] = stamp("tpl-side");
  S.ui = Object.assign(ui, sideUi);
  ui.cid.textContent = String(c.id).slice(0, 12);
  ui.cid.title = String(c.id);
  ui.take.onclick = onTake;
  ui.handback.onclick = openHandback;
  ui.resolve.onclick = onResolve;
  ui.hbCancel.onclick = closeHandback;
  ui.hbForm.onsubmit = submit(onHandback);
  ui.hbNote.onkeydown = (e) => { if (e.key === "Escape") { e.preventDefault(); closeHandback(); } };
  ui.composer.onsubmit = submit(sendReply);
  ui.reply.onkeydown = onReplyKey;
  ui.reply.oninput = onReplyInput;
  ui.reply.onblur = () => setTimeout(() => { if (S.ui === ui && document.activeElement !== ui.reply) closeCanned(); }, 150);
  ui.draft.onclick = onDraft;
  ui.noteForm.onsubmit = submit(addNote);
  ui.noteText.onkeydown = onEnter(addNote);
  fillSummary(ui, c.summary || {});
  $("#conversation").replaceChildren(main);
  $("#side").replaceChildren(side);

  const turns = c.transcript || [];
  if (!turns.length) ui.transcript.appendChild(h("p", { class: "empty" }, "No messages yet."));
  turns.forEach((t) => appendTurn(t, true));
  const notes = c.notes || [];
  ui.notes.replaceChildren(...(notes.length ? notes.map(noteEl) : [h("li", { class: "empty" }, "No notes yet.")]));
  if (keep) {
    ui.reply.value = keep.reply;
    ui.noteText.value = keep.note;
  }
  updateControls();
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
  if (keep && keep.focus) (keep.focus === "reply" && !ui.reply.disabled ? ui.reply : ui.noteText).focus();
  else if (moveFocus) focusBest();
}
function focusBest() {
  const ui = S.ui;
  if (!ui) return;
  if (!ui.reply.disabled) ui.reply.focus();
  else if (!ui.take.disabled) ui.take.focus();
  else ui.title.focus();
}
function updateControls() {
  const c = S.conv, ui = S.ui;
  if (!c || !ui) return;
  const own = mine();
  ui.chips.replaceChildren(channelBadge(c.channel), h("span", { class: "chip", "data-state": c.state }, STATES[c.state] || c.state),
    h("span", { class: "owner" }, "Owner: ", h("strong", null, ownerLabel(c.operator))));
  ui.take.disabled = !(c.state === "waiting" || c.state === "bot") || !!S.busy.take;
  ui.handback.disabled = !own || !!S.busy.handback;
  ui.resolve.disabled = !own || !!S.busy.resolve;
  ui.reply.disabled = !own;
  ui.send.disabled = !own || !!S.busy.send;
  ui.draft.disabled = !own || !!S.busy.draft;
  ui.draft.setAttribute("aria-busy", String(!!S.busy.draft));
  ui.reply.placeholder = own ? "Write a reply… (type / for canned responses)"
    : c.state === "resolved" ? "This conversation is resolved." : "Take over the conversation to reply.";
  if (!own) { closeHandback(); closeCanned(); }
}

function fillSummary(ui, s) {
  const kv = (k, v) => [h("dt", null, k), h("dd", null, v)];
  const none = (text) => h("p", { class: "muted" }, text);
  ui.facts.append(...kv("Reason", s.reason || "—"),
    ...(s.waiting_since != null ? kv("Waiting since", [clock(s.waiting_since), " (", sinceEl("ago", s.waiting_since), ")"]) : []));
  const shopper = s.shopper || {};  // what the shopper's channel told us: page, verified customer, shop context
  if (shopper.customer_id) ui.facts.append(...kv("Customer", String(shopper.customer_id) + " (verified)"));
  if (shopper.page) ui.facts.append(...kv("Page", String(shopper.page)));
  if (shopper.context) ui.facts.append(...kv("Context", JSON.stringify(shopper.context)));
  const intents = s.intents || [];
  ui.intents.appendChild(intents.length ? h("ul", { class: "intents" }, intents.map((it) => {
    const conf = Number(it.confidence) || 0;
    const fill = h("span");
    fill.style.width = Math.round(Math.min(1, Math.max(0, conf)) * 100) + "%";
    return h("li", null, h("div", { class: "intent-line" }, h("span", { class: "intent" }, it.intent),
      h("span", { class: "bar", "aria-hidden": "true" }, fill), h("span", { class: "num" }, conf.toFixed(2))),
    it.text ? h("div", { class: "quote" }, it.text) : null);
  })) : none("None recognised."));
  const slots = Object.entries(s.slots || {});
  ui.slots.appendChild(slots.length ? h("dl", { class: "kv" }, slots.map(([k, v]) =>
    kv(k, typeof v === "string" ? v : JSON.stringify(v)))) : none("None filled."));
  const verdicts = s.verdicts || [];
  const dir = { in: "shopper message", out: "bot reply" };
  ui.verdicts.appendChild(verdicts.length ? h("ul", { class: "verdicts" }, verdicts.map((v) => {
    const cats = Object.entries(v.categories || {}).map(([k, n]) => k + " " + (typeof n === "number" ? n.toFixed(2) : n));
    return h("li", null, h("span", { class: "chip", "data-action": v.action }, v.action || "?"), " ",
      h("span", { class: "muted" }, dir[v.direction] || v.direction || ""),
      cats.length ? h("div", { class: "small" }, cats.join(", ")) : null,
      (v.reasons || []).length ? h("div", { class: "small muted" }, v.reasons.join("; ")) : null);
  })) : none("Nothing flagged."));
  const last = s.last_messages || [];
  ui.last.appendChild(last.length ? h("ol", { class: "last" }, last.map((m) =>
    h("li", null, h("span", { class: "who" }, who(m) + ": "), m.text))) : none("None."));
}

// ---- actions ----
async function act(name, fn) {
  if (S.busy[name] || !S.conv) return;
  const id = S.conv.id;
  S.busy[name] = true;
  updateControls();
  try {
    return await fn(id, () => S.conv && S.conv.id === id);
  } catch (e) {
    fail(e);
    return undefined;
  } finally {
    S.busy[name] = false;
    updateControls();
  }
}
function applyConversation(c, moveFocus) {
  const item = S.items.get(c.id);
  upsert(Object.assign({ id: c.id, channel: c.channel, last_activity: Date.now() / 1000 }, item || {},
    { state: c.state, operator: c.operator }));
  renderInbox();
  if (S.openId === c.id) renderConversation(c, moveFocus);
}
function onTake() {
  act("take", async (id) => {
    try {
      applyConversation(await api("POST", convPath(id, "take")), true);
      status("You took over this conversation.", "ok");
    } catch (e) {
      if (e.status === 409) openConversation(id, false);
      throw e;
    }
  });
}
function onResolve() {
  act("resolve", async (id) => {
    applyConversation(await api("POST", convPath(id, "resolve")), true);
    status("Conversation resolved.", "ok");
  });
}
function openHandback() {
  S.ui.hbForm.hidden = false;
  S.ui.hbNote.focus();
}
function closeHandback() {
  if (!S.ui || S.ui.hbForm.hidden) return;
  const hadFocus = S.ui.hbForm.contains(document.activeElement);
  S.ui.hbForm.hidden = true;
  S.ui.hbNote.value = "";
  if (hadFocus && !S.ui.handback.disabled) S.ui.handback.focus();
}
function onHandback() {
  const note = S.ui.hbNote.value.trim();
  act("handback", async (id) => {
    applyConversation(await api("POST", convPath(id, "handback"), { note: note || null }), true);
    status("Handed back to the bot.", "ok");
  });
}
function sendReply() {
  const ta = S.ui && S.ui.reply;
  const text = ta ? ta.value.trim() : "";
  if (!text || !mine()) return;
  act("send", async (id, still) => {
    const data = await api("POST", convPath(id, "reply"), { text });
    if (!still()) return;
    if (S.ui.reply.value.trim() === text) S.ui.reply.value = "";
    autosize();
    closeCanned();
    if (data && data.turn) appendTurn(data.turn, true);
    S.lastTyping = 0;
    status("Reply sent.", "ok");
  }).then(() => { if (S.ui && !S.ui.reply.disabled) S.ui.reply.focus(); });
}
function onDraft() {
  act("draft", async (id, still) => {
    const data = await api("POST", convPath(id, "draft"));
    if (!still()) return;
    const ta = S.ui.reply;
    ta.value = (data && data.text) || "";
    autosize();
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
    status("AI draft inserted: check and edit it before sending.", "ok");
  });
}
function addNote() {
  const text = S.ui ? S.ui.noteText.value.trim() : "";
  if (!text) return;
  act("note", async (id, still) => {
    const data = await api("POST", convPath(id, "note"), { text });
    if (!still()) return;
    S.ui.noteText.value = "";
    const empty = $(".empty", S.ui.notes);
    if (empty) empty.remove();
    S.ui.notes.appendChild(noteEl((data && data.note) || { operator: S.me.username, text, at: Date.now() / 1000 }));
    status("Note added.", "ok");
  });
}

// ---- reply box: typing signal, canned responses ----
function autosize() {
  const ta = S.ui && S.ui.reply;
  if (!ta) return;
  ta.style.height = "auto";
  ta.style.height = Math.min(ta.scrollHeight + 2, 220) + "px";
}
function onReplyInput() {
  autosize();
  updateCanned();
  const text = S.ui.reply.value;
  if (!mine() || !text.trim() || text.startsWith("/")) return;
  const now = Date.now();
  if (now - S.lastTyping < 3000) return;
  S.lastTyping = now;
  api("POST", convPath(S.conv.id, "typing")).catch(() => {});
}
const norm = (s) => String(s || "").toLowerCase().replace(/[-_\s]+/g, " ");
function updateCanned() {
  const ta = S.ui.reply;
  const m = /^\/(\S*)$/.exec(ta.value);
  if (!m || !mine() || ta.value === S.cannedDismissed) return closeCanned();
  S.cannedDismissed = null;
  const q = norm(m[1]);
  S.cannedMatches = S.canned.filter((r) => norm(r.shortcut).includes(q) || norm(r.title).includes(q));
  S.cannedActive = 0;
  renderCanned();
}
function renderCanned() {
  const ui = S.ui, list = ui.cannedList;
  const opts = S.cannedMatches.map((r, i) => h("li", {
    id: "canned-opt-" + i, role: "option", class: "canned-opt", "data-shortcut": r.shortcut,
    "aria-selected": String(i === S.cannedActive),
    onmousedown: (e) => e.preventDefault(), onclick: () => insertCanned(i),
  }, h("div", null, h("span", { class: "mono" }, "/" + r.shortcut), " ", h("strong", null, r.title)),
  h("div", { class: "small muted" }, String(r.text || "").slice(0, 110))));
  list.replaceChildren(...(opts.length ? opts : [h("li", { class: "empty", role: "option", "aria-disabled": "true" },
    S.canned.length ? "No canned response matches. Esc to close." : "No canned responses are set up. Esc to close.")]));
  list.hidden = false;
  if (opts.length) {
    ui.reply.setAttribute("aria-activedescendant", "canned-opt-" + S.cannedActive);
    opts[S.cannedActive].scrollIntoView({ block: "nearest" });
  } else ui.reply.removeAttribute("aria-activedescendant");
}
function closeCanned() {
  if (!S.ui) return;
  S.ui.cannedList.hidden = true;
  S.ui.reply.removeAttribute("aria-activedescendant");
}
function insertCanned(i) {
  const r = S.cannedMatches[i];
  if (!r) return;
  const ta = S.ui.reply;
  ta.value = String(r.text || "");
  closeCanned();
  autosize();
  ta.focus();
  ta.setSelectionRange(ta.value.length, ta.value.length);
}
function onReplyKey(e) {
  const open = !S.ui.cannedList.hidden;
  if (open) {
    const n = S.cannedMatches.length;
    if ((e.key === "ArrowDown" || e.key === "ArrowUp") && n) {
      e.preventDefault();
      S.cannedActive = (S.cannedActive + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      renderCanned();
      return;
    }
    if (e.key === "Enter" && !e.isComposing) { e.preventDefault(); insertCanned(S.cannedActive); return; }
    if (e.key === "Escape") { e.preventDefault(); S.cannedDismissed = S.ui.reply.value; closeCanned(); return; }
  }
  onEnter(sendReply)(e);
}

// ---- boot ----
const PLACEHOLDERS = {};
async function boot() {
  PLACEHOLDERS.conv = $("#conversation").firstElementChild.cloneNode(true);
  PLACEHOLDERS.side = $("#side").firstElementChild.cloneNode(true);
  $("#login-form").addEventListener("submit", onLogin);
  $("#logout").addEventListener("click", onLogout);
  document.querySelectorAll("[data-view]").forEach((tab) => {
    tab.addEventListener("click", () => setView(tab.dataset.view));
    tab.addEventListener("keydown", onTabKey);
  });
  const list = $("#inbox-list");
  list.addEventListener("click", (e) => {
    const row = e.target.closest("[data-conversation-id]");
    if (row) openConversation(row.dataset.conversationId, true);
  });
  list.addEventListener("keydown", onInboxKey);
  setInterval(tickTimes, 30000);
  try {
    start(await api("GET", "/me"));
  } catch (e) {
    if (e.status !== 401) { showLogin(); fail(e); }
  }
}
boot();  // the script is loaded with `defer`: the DOM is ready
})();
