/*! ShopBot chat widget: <script src="https://bot.example.com/widget.js" data-title="Shop" async></script>
 * ES2019, no dependencies. A closed shadow root keeps the shop's CSS out and the conversation in;
 * text from anyone enters the DOM as text nodes only. Messages wait in a localStorage outbox until
 * the server acks them (it de-duplicates by id), so nothing typed offline or before a reload is lost. */
(() => {
"use strict";
if (window.ShopBot) return; // included twice: the first one stays

const VERSION = "1.0.0";
const MAX_LEN = 4000; // the server's limit for one message
const DEFAULT_COLOR = "#1f4d3a"; // text on the brand colour is white: 9.6:1 (WCAG AA asks for 4.5:1)
const script = document.currentScript;

// UI strings; a missing key falls back to English.
const STRINGS = {
  en: {
    open: "Open chat", close: "Close chat", input: "Message", placeholder: "Type your message…", send: "Send",
    log: "Conversation", connecting: "Connecting…", reconnecting: "Reconnecting…",
    offline: "You're offline. We'll send your messages when you're back.", refused: "Chat isn't available right now.",
    you: "You", team: "Support team", typing: "{name} is typing…", sending: "Sending…", up: "Helpful",
    down: "Not helpful", rate: "Rate this answer", replies: "Suggested replies",
    tooLong: "Messages can have 4000 characters at most; yours was cut."
  },
  de: {
    open: "Chat öffnen", close: "Chat schließen", input: "Nachricht", placeholder: "Nachricht eingeben…",
    send: "Senden", log: "Unterhaltung", connecting: "Verbinde…", reconnecting: "Verbinde erneut…",
    offline: "Sie sind offline. Wir senden Ihre Nachrichten, sobald Sie wieder online sind.",
    refused: "Der Chat ist gerade nicht verfügbar.", you: "Sie", team: "Support-Team", typing: "{name} schreibt…",
    sending: "Wird gesendet…", up: "Hilfreich", down: "Nicht hilfreich", rate: "Antwort bewerten",
    replies: "Antwortvorschläge", tooLong: "Nachrichten haben höchstens 4000 Zeichen; Ihre wurde gekürzt."
  },
  fr: {
    open: "Ouvrir le chat", close: "Fermer le chat", placeholder: "Écrivez votre message…", send: "Envoyer",
    connecting: "Connexion…", reconnecting: "Reconnexion…",
    offline: "Vous êtes hors ligne. Vos messages partiront dès votre retour.",
    refused: "Le chat n'est pas disponible pour le moment.", you: "Vous", team: "Équipe support",
    typing: "{name} écrit…", sending: "Envoi…", up: "Utile", down: "Pas utile", rate: "Évaluer cette réponse",
    replies: "Réponses suggérées", tooLong: "Les messages ont au plus 4000 caractères ; le vôtre a été raccourci."
  },
  es: {
    open: "Abrir chat", close: "Cerrar chat", input: "Mensaje", placeholder: "Escribe tu mensaje…", send: "Enviar",
    log: "Conversación", connecting: "Conectando…", reconnecting: "Reconectando…",
    offline: "Estás sin conexión. Enviaremos tus mensajes cuando vuelvas.",
    refused: "El chat no está disponible en este momento.", you: "Tú", team: "Equipo de soporte",
    typing: "{name} está escribiendo…", sending: "Enviando…", up: "Útil", down: "No útil",
    rate: "Valorar esta respuesta", replies: "Respuestas sugeridas",
    tooLong: "Los mensajes tienen como máximo 4000 caracteres; el tuyo se acortó."
  }
};

// Static 24x24 path data, never built from input.
const ICONS = {
  chat: "M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2zM6 9h12v2H6zm0 3h8v2H6zm0-6h12v2H6z",
  close: "M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z",
  down: "M7.4 8.6 12 13.2l4.6-4.6L18 10l-6 6-6-6z",
  send: "M2 21 23 12 2 3v7l15 2-15 2z",
  thumb: "M1 21h4V9H1zm22-11a2 2 0 0 0-2-2h-6.3l1.1-5.5L14.2 1 7.6 7.6A2 2 0 0 0 7 9v10a2 2 0 0 0 2 2h9l4-9z"
};

// The typing and status lines are never display:none, so screen readers announce what goes in.
// The focus ring (blue, white halo) shows on the page, on white and on the brand colour.
const STYLES = `:host{all:initial}
.root{--p:${DEFAULT_COLOR};font:15px/1.45 system-ui,"Segoe UI",Roboto,sans-serif;color:#1b1f1d;text-align:left}
*{box-sizing:border-box}
[hidden]{display:none!important}
button{font:inherit;color:inherit;cursor:pointer;margin:0;border:0;background:none;display:grid;place-items:center}
svg{width:20px;height:20px;fill:currentColor}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
:focus-visible{outline:3px solid #0b57d0;outline-offset:2px;box-shadow:0 0 0 2px #fff}
.header :focus-visible{outline-color:#fff;box-shadow:none}
.launcher,.panel{position:fixed;right:20px;z-index:2147483000}
.left .launcher,.left .panel{right:auto;left:20px}
.launcher,.send{border-radius:50%;background:var(--p);color:#fff}
.launcher{bottom:20px;width:60px;height:60px;box-shadow:0 6px 20px #0004}
.launcher svg{width:28px;height:28px}
.panel{bottom:92px;width:380px;height:min(620px,calc(100vh - 112px));display:flex;flex-direction:column;background:#fff;border-radius:16px;box-shadow:0 12px 48px #0005;overflow:hidden;animation:sb-in .18s ease-out}
@keyframes sb-in{from{opacity:0;transform:translateY(12px)}}
.header{display:flex;align-items:center;gap:10px;padding:12px 10px 12px 16px;background:var(--p);color:#fff}
.title{flex:1;margin:0;font-size:16px;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.close{width:36px;height:36px;border-radius:8px}
.close:hover{background:#fff3}
.avatar{width:28px;height:28px;border-radius:50%;object-fit:cover;background:#fff;flex:none}
.header .avatar{width:36px;height:36px}
.log{flex:1;overflow-y:auto;overscroll-behavior:contain;padding:16px;display:flex;flex-direction:column;gap:12px;background:#f7f8f7}
.msg{display:flex;gap:8px;align-items:flex-start;max-width:88%}
.msg.user{align-self:flex-end;flex-direction:column;align-items:flex-end;gap:4px}
.body{display:flex;flex-direction:column;align-items:flex-start;gap:6px;min-width:0}
.bubble{padding:9px 13px;border-radius:16px 16px 16px 4px;background:#e9eeeb;overflow-wrap:anywhere}
.bubble a{color:#0b57d0}
.user .bubble{background:var(--p);color:#fff;border-radius:16px 16px 4px 16px}
.user .bubble a{color:inherit}
.operator .bubble{background:#fff6e5;border:1px solid #e8c98f}
.who{font-size:12px;font-weight:600;color:#7a4300}
.pending .bubble{opacity:.7}
.state{font-size:12px;color:#5b625f}
.quick{display:flex;flex-wrap:wrap;gap:6px}
.quick button{padding:6px 12px;border:1.5px solid var(--p);border-radius:999px;background:#fff;font-size:14px}
.quick button:hover:enabled{background:var(--p);color:#fff}
.quick button:disabled{opacity:.5;cursor:default}
.quick .chosen:disabled{opacity:1}
.rating{display:flex;gap:2px;margin-top:-2px}
.rating button{width:30px;height:30px;border-radius:8px;color:#5b625f}
.rating button:hover{background:#e3e7e5}
.rating [aria-pressed=true]{color:var(--p);background:#dfe9e4}
.rating svg{width:16px;height:16px}
.thumb-down svg{transform:rotate(180deg)}
.notice{align-self:center;max-width:90%;padding:4px 10px;font-size:13px;text-align:center;color:#5b625f}
.notice.warning{background:#fff4d6;color:#6b4500;border-radius:8px}
.typing{padding:0 16px;background:#f7f8f7;font-size:13px;font-style:italic;color:#5b625f}
.typing:not(:empty){padding-bottom:8px}
.status{font-size:13px;text-align:center;background:#fff4d6;color:#6b4500}
.status:not(:empty){padding:6px 12px}
.composer{display:flex;gap:8px;align-items:flex-end;margin:0;padding:10px 12px;border-top:1px solid #e1e5e3}
textarea{flex:1;min-height:42px;max-height:132px;resize:none;padding:10px 12px;border:1px solid #aab3ae;border-radius:12px;font:inherit;color:inherit;background:#fff}
textarea:focus-visible{outline-width:2px;outline-offset:0;border-color:transparent;box-shadow:none}
.send{width:42px;height:42px;flex:none}
@media (max-width:480px){.panel{inset:0!important;width:auto;height:auto;border-radius:0}.open .launcher{display:none}}
@media (prefers-reduced-motion:reduce){*{animation:none!important}}`;

// ---- helpers

/** createElement with attributes ("text": textContent, "cls": class) and children. No innerHTML. */
function h(tag, attrs = {}, kids = []) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") el.textContent = v;
    else if (v !== null && v !== undefined) el.setAttribute(k === "cls" ? "class" : k, v);
  }
  kids.forEach((kid) => kid && el.appendChild(kid));
  return el;
}

function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.appendChild(document.createElementNS(ns, "path")).setAttribute("d", ICONS[name]);
  return svg;
}

const str = (value) => (typeof value === "string" ? value : "");
const isObject = (value) => !!value && typeof value === "object" && !Array.isArray(value);

function parseJson(text) {
  try { return JSON.parse(text); } catch (e) { return null; }
}

/** An http(s) URL (relative ones resolve against the page), else null: no javascript:, data:... */
function safeUrl(value) {
  try {
    const url = new URL(str(value) || "x:", document.baseURI);
    return /^https?:$/.test(url.protocol) ? url : null;
  } catch (e) { return null; }
}

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => (b + 256).toString(16).slice(1)).join("");
}

/** localStorage under a prefix; memory where storage is blocked (private modes, sandboxed frames). */
function makeStore(prefix) {
  const memory = {};
  return {
    get(key) {
      try { return localStorage.getItem(prefix + key); } catch (e) { return memory[key] || null; }
    },
    set(key, value) {
      try {
        if (value === null) localStorage.removeItem(prefix + key); else localStorage.setItem(prefix + key, value);
      } catch (e) { memory[key] = value; }
    }
  };
}

const URL_RE = /https?:\/\/[^\s<>"'`]+/gi;

/** Appends text as text nodes: http(s) URLs become links, newlines become <br>. */
function appendRichText(parent, text) {
  str(text).split(/\r?\n/).forEach((line, i) => {
    if (i) parent.appendChild(h("br"));
    let last = 0;
    let match;
    URL_RE.lastIndex = 0;
    while ((match = URL_RE.exec(line))) {
      const raw = match[0].replace(/[.,;:!?)\]}]+$/, ""); // "see https://x.com/faq." - the dot ends the sentence
      const url = safeUrl(raw);
      if (!url) continue;
      parent.append(line.slice(last, match.index), h("a", { href: url.href, target: "_blank", rel: "noopener noreferrer", text: raw }));
      last = match.index + raw.length;
    }
    parent.append(line.slice(last)); // append(string) makes a text node
  });
}

// ---- options

function optionsFromTag(tag) {
  const d = tag ? tag.dataset : {};
  const o = {};
  for (const k of ["title", "primaryColor", "position", "greeting", "avatar", "language", "server"]) {
    if (d[k] !== undefined) o[k] = d[k];
  }
  if (d.context !== undefined) o.context = parseJson(d.context);
  if (d.customerId !== undefined) o.customer = { id: d.customerId, signature: d.customerSignature };
  if (d.open !== undefined) o.open = d.open === "" || d.open === "true";
  return o;
}

/** A JSON-safe copy of the shop's context object ({} for anything else, cycles included). */
function pickContext(value) {
  let copy = null;
  try { copy = isObject(value) && JSON.parse(JSON.stringify(value)); } catch (e) { /* a cycle, a BigInt */ }
  return isObject(copy) ? copy : {};
}

function normalize(raw) {
  const code = str(raw.language || document.documentElement.lang).toLowerCase().split(/[-_]/)[0];
  const color = str(raw.primaryColor).trim();
  const scriptUrl = script && safeUrl(script.src);
  const c = raw.customer;
  return {
    title: str(raw.title).trim().slice(0, 80) || "Chat",
    color: color && !/[;{}<>\\]/.test(color) && CSS.supports("color", color) ? color : DEFAULT_COLOR,
    position: raw.position === "left" ? "left" : "right",
    greeting: str(raw.greeting).trim(),
    avatar: safeUrl(raw.avatar),
    language: STRINGS[code] ? code : "en",
    server: safeUrl(raw.server) || new URL(scriptUrl ? scriptUrl.origin : location.origin),
    context: pickContext(raw.context),
    customer: isObject(c) && str(c.id) && str(c.signature) ? { id: c.id, signature: c.signature } : null,
    open: raw.open === true
  };
}

/** ws(s)://host[/base]/ws/chat for an http(s) server base URL. */
const socketUrl = (server) => server.origin.replace(/^http/, "ws") + server.pathname.replace(/\/+$/, "") + "/ws/chat";

// ---- state: one widget per page

let cfg, t, store, ui;
let ws = null;
let ready = false;            // the socket has its session: messages may go
let sentHere = new Set();     // ids sent on this socket: never one twice
let attempt = 0;              // failed connections since the last session (backoff)
let retryTimer = 0;
let wentOffline = false;      // the socket may have died silently meanwhile
let isOpen = false;
let lastTyping = 0;
let typingTimer = 0;
let bubbles = new Map();      // reply_id -> bot message (draft or final)
let finished = new Set();     // reply_ids with a final reply: later drafts are stale
let pendingNodes = new Map(); // message id -> shopper message waiting for its ack
const ratings = new Map();    // reply_id -> "up" | "down"

// ---- the outbox: [{id, text, display}] in localStorage until acked

function readOutbox() {
  const list = parseJson(store.get("outbox"));
  return Array.isArray(list) ? list.filter((m) => m && str(m.id) && str(m.text)) : [];
}

const writeOutbox = (list) => store.set("outbox", list.length ? JSON.stringify(list) : null);

// ---- the socket

function send(frame) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  try { ws.send(JSON.stringify(frame)); return true; } catch (e) { return false; }
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = 0;
  if (ws) return;
  if (navigator.onLine === false) return setStatus("offline"); // the online event brings us back
  setStatus(attempt ? "reconnecting" : "connecting");
  const token = store.get("token");
  let sock;
  try { sock = new WebSocket(socketUrl(cfg.server)); } catch (e) { return retry(); }
  ws = sock;
  ready = wentOffline = false;
  sentHere = new Set();
  sock.onopen = () => send({ type: "hello", token: token || null, page: location.href, context: cfg.context,
    customer: cfg.customer, language: cfg.language });
  sock.onmessage = (event) => sock === ws && onFrame(event.data);
  sock.onclose = (event) => sock === ws && onClosed(event.code, !!token);
}

function onClosed(code, hadToken) {
  ws = null;
  ready = false;
  showTyping(false);
  if (code === 4401 && hadToken) { // the token is no good: start over as a new session, now
    store.set("token", null);
    connect();
  } else if (code === 1008) { // refused by policy: no timer; opening, sending or going online retries
    setStatus("refused");
  } else {
    retry();
  }
}

/** Exponential backoff with jitter: about 0.5 s, 1, 2, 4... at most 15 s. */
function retry() {
  const delay = Math.min(15000, 500 * 2 ** attempt * (0.75 + Math.random() * 0.5));
  attempt += 1;
  setStatus(navigator.onLine === false ? "offline" : "reconnecting");
  retryTimer = setTimeout(connect, delay);
}

/** Connects now unless a socket is open or a retry is on its way. */
function ensureConnected() {
  if (!ws && !retryTimer) connect();
}

function onOnline() {
  if (ws && !wentOffline) return;
  if (ws) ws.close(); // it may have died while the network was gone; a fresh one resends the outbox
  ws = null;
  connect();
}

// ---- frames from the server

function onFrame(data) {
  const f = parseJson(data);
  if (!isObject(f)) return; // binary or not JSON: ignored
  try {
    if (f.type === "session") onSession(f);
    else if (f.type === "ack") onAck(str(f.id));
    else if (f.type === "typing") showTyping(f.on === true, f.who === "operator");
    else if (f.type === "draft") onDraft(str(f.reply_id), f.text);
    else if (f.type === "reply") onReply(f);
    else if (f.type === "notice") addNotice(f.text, f.level === "warning" ? "warning" : "info");
    else if (f.type === "error") addNotice(f.text, "warning");
    // other types are for newer widgets
  } catch (e) { /* a malformed frame must never break the widget */ }
}

function onSession(f) {
  if (!Array.isArray(f.history)) return; // malformed: keep what is shown
  if (str(f.token)) store.set("token", f.token);
  ready = true;
  attempt = 0;
  setStatus(navigator.onLine === false ? "offline" : "online");
  renderHistory(f.history);
  flushOutbox();
}

function onAck(id) {
  writeOutbox(readOutbox().filter((m) => m.id !== id));
  const node = pendingNodes.get(id);
  if (!node) return;
  pendingNodes.delete(id);
  node.classList.remove("pending");
  node.querySelector(".state").remove();
}

function onDraft(id, text) {
  if (!id || finished.has(id)) return;
  showTyping(false);
  const node = bubbles.get(id);
  if (!node) return bubbles.set(id, append(botMessage({ id, text, draft: true })));
  const bubble = node.querySelector(".bubble");
  bubble.textContent = "";
  appendRichText(bubble, text);
}

function onReply(f) {
  const id = str(f.reply_id);
  const buttons = Array.isArray(f.buttons) ? f.buttons : [];
  if (!str(f.text) && !buttons.length) return;
  showTyping(false);
  const node = botMessage({ id, text: f.text, buttons, operator: f.route === "operator", route: f.route });
  const old = bubbles.get(id);
  if (old && old.isConnected) old.replaceWith(node); // the draft becomes the answer, in place
  else append(node);
  if (id) { bubbles.set(id, node); finished.add(id); }
}

// ---- from the shopper

function flushOutbox() {
  if (!ready) return;
  for (const m of readOutbox()) {
    if (sentHere.has(m.id)) continue;
    const frame = { type: "message", id: m.id, text: m.text };
    if (str(m.display)) frame.display = m.display;
    if (send(frame)) sentHere.add(m.id);
  }
}

function sendMessage(text, display) {
  const item = display ? { id: newId(), text, display } : { id: newId(), text };
  writeOutbox([...readOutbox(), item]);
  append(userMessage(item, true), true);
  if (ready) flushOutbox(); else ensureConnected();
}

function submit() {
  const text = ui.input.value.trim();
  if (!text) return;
  if (text.length > MAX_LEN) addNotice(t.tooLong, "warning");
  ui.input.value = "";
  autosize();
  sendMessage(text.slice(0, MAX_LEN));
}

/** Thumbs: the protocol has no "unrate", so a second press changes nothing; offline, none does. */
function rate(id, value, group) {
  if (ratings.get(id) === value || !ready || !send({ type: "feedback", reply_id: id, value })) return;
  ratings.set(id, value);
  for (const b of group.children) b.setAttribute("aria-pressed", String(b.dataset.value === value));
}

function onInput() {
  autosize();
  if (ready && ui.input.value && Date.now() - lastTyping >= 3000) { // at most one per 3 s
    lastTyping = Date.now();
    send({ type: "typing" });
  }
}

/** maxlength cuts a long paste silently: say so. */
function onPaste(event) {
  const { value, selectionStart, selectionEnd } = ui.input;
  const pasted = event.clipboardData ? event.clipboardData.getData("text") : "";
  if (value.length - (selectionEnd - selectionStart) + pasted.length > MAX_LEN) addNotice(t.tooLong, "warning");
}

function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = Math.min(ui.input.scrollHeight + 2, 132) + "px";
}

// ---- the log

/** Appends a node and follows it, unless the shopper has scrolled up to read. */
function append(node, force) {
  const log = ui.log;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  log.appendChild(node);
  if (force || atBottom) log.scrollTop = log.scrollHeight;
  return node;
}

/** A bot or operator message: sender, text, quick replies, thumbs (when it has a reply_id). */
function botMessage(m) {
  const bubble = h("div", { cls: "bubble" });
  appendRichText(bubble, m.text);
  const who = m.operator ? h("span", { cls: "who", text: t.team }) : h("span", { cls: "sr", text: cfg.title });
  const body = h("div", { cls: "body" }, [who, str(m.text) && bubble]);
  if (m.buttons && m.buttons.length) body.appendChild(quickReplies(m.buttons));
  if (m.id && !m.draft) body.appendChild(ratingButtons(m.id));
  const cls = `msg ${m.operator ? "operator" : "bot"}${m.draft ? " draft" : ""}${m.greeting ? " greeting" : ""}`;
  return h("div", { cls, "data-reply-id": m.id || null, "data-route": str(m.route) || null,
    "aria-busy": m.draft ? "true" : null }, [avatar(), body]);
}

function avatar() {
  if (!cfg.avatar) return null;
  const img = h("img", { cls: "avatar", src: cfg.avatar.href, alt: "", referrerpolicy: "no-referrer" });
  img.onerror = () => { img.hidden = true; };
  return img;
}

function quickReplies(buttons) {
  const group = h("div", { cls: "quick", role: "group", "aria-label": t.replies });
  for (const b of buttons.slice(0, 12)) {
    if (!b || !str(b.title) || !str(b.payload)) continue;
    const button = group.appendChild(h("button", { type: "button", text: b.title }));
    button.onclick = () => {
      for (const other of group.children) other.disabled = true;
      button.classList.add("chosen");
      sendMessage(b.payload, b.title);
      ui.input.focus(); // the pressed button is disabled now: keep the keyboard in the composer
    };
  }
  return group;
}

function ratingButtons(id) {
  const group = h("div", { cls: "rating", role: "group", "aria-label": t.rate });
  for (const value of ["up", "down"]) {
    group.appendChild(h("button", { type: "button", cls: "thumb-" + value, "data-value": value, "aria-label": t[value],
      title: t[value], "aria-pressed": String(ratings.get(id) === value) }, [icon("thumb")]))
      .onclick = () => rate(id, value, group);
  }
  return group;
}

/** A shopper message; a pending one says "Sending…" until the server acks it. */
function userMessage(m, pending) {
  const bubble = h("div", { cls: "bubble" });
  appendRichText(bubble, str(m.display) || m.text);
  const node = h("div", { cls: "msg user" + (pending ? " pending" : ""), "data-id": str(m.id) || null },
    [h("span", { cls: "sr", text: t.you }), bubble, pending && h("span", { cls: "state", text: t.sending })]);
  if (pending) pendingNodes.set(m.id, node);
  return node;
}

function addNotice(text, level) {
  if (!str(text)) return;
  const node = h("div", { cls: "notice " + level, role: "note" });
  appendRichText(node, text);
  append(node);
}

/** The server's history (or the local greeting when it is empty), then what waits in the outbox. */
function renderHistory(history) {
  const delivered = new Set(history.filter((m) => m && m.role === "user").map((m) => m.id));
  const outbox = readOutbox();
  const waiting = outbox.filter((m) => !delivered.has(m.id)); // else only the ack was lost
  if (waiting.length !== outbox.length) writeOutbox(waiting);
  ui.log.textContent = "";
  bubbles = new Map();
  finished = new Set();
  pendingNodes = new Map();
  const shown = history.filter((m) => m && str(m.text) && ["user", "bot", "operator"].includes(m.role));
  if (!shown.length && cfg.greeting) ui.log.appendChild(botMessage({ text: cfg.greeting, greeting: true }));
  for (const m of shown) {
    if (m.role === "user") {
      ui.log.appendChild(userMessage(m, false));
      continue;
    }
    const id = str(m.id);
    const node = ui.log.appendChild(botMessage({ id, text: m.text, route: m.route,
      operator: m.role === "operator" || m.route === "operator" }));
    if (id) { bubbles.set(id, node); finished.add(id); }
  }
  waiting.forEach((m) => ui.log.appendChild(userMessage(m, true)));
  ui.log.scrollTop = ui.log.scrollHeight;
}

// ---- typing indicator, status line, open and close

function showTyping(on, operator) {
  clearTimeout(typingTimer);
  ui.typing.dataset.who = on ? (operator ? "operator" : "bot") : "";
  ui.typing.textContent = on ? t.typing.replace("{name}", operator ? t.team : cfg.title) : "";
  if (on) typingTimer = setTimeout(showTyping, 30000, false); // a lost "off" must not stick
}

function setStatus(state) {
  ui.status.dataset.state = state;
  ui.status.textContent = ["connecting", "reconnecting", "offline", "refused"].includes(state) ? t[state] : "";
}

function open(focus) {
  if (!isOpen) {
    isOpen = true;
    ui.root.classList.add("open");
    ui.panel.hidden = false;
    ui.launcher.setAttribute("aria-expanded", "true");
    ui.launcher.firstChild.replaceWith(icon("down"));
    ui.log.scrollTop = ui.log.scrollHeight;
    ensureConnected();
  }
  if (focus) ui.input.focus();
}

function close(returnFocus) {
  if (!isOpen) return;
  const active = ui.shadow.activeElement; // focus inside a panel about to hide would fall to <body>
  isOpen = false;
  ui.root.classList.remove("open");
  ui.panel.hidden = true;
  ui.launcher.setAttribute("aria-expanded", "false");
  ui.launcher.firstChild.replaceWith(icon("chat"));
  if (returnFocus || (active && active !== ui.launcher)) ui.launcher.focus();
}

// ---- building and wiring

/** The markup, built with createElement only, in a closed shadow root. */
function buildUi() {
  const host = h("div", { id: "shopbot-widget" });
  // Inline !important beats the page's rules; display:contents adds no box to the page.
  host.setAttribute("style", "all:initial!important;display:contents!important");
  const shadow = host.attachShadow({ mode: "closed" });
  shadow.appendChild(h("style", { text: STYLES }));
  const button = (cls, label, name, more) =>
    h("button", { type: "button", cls, "aria-label": label, title: label, ...more }, [icon(name)]);
  const launcher = button("launcher", t.open, "chat", { title: null, "aria-expanded": "false", "aria-controls": "sb-panel" });
  const close = button("close", t.close, "close");
  const log = h("div", { cls: "log", role: "log", "aria-live": "polite", "aria-label": t.log, tabindex: "0" });
  const typing = h("div", { cls: "typing", "aria-live": "polite" });
  const status = h("div", { cls: "status", role: "status" });
  const input = h("textarea", { id: "sb-input", rows: "1", maxlength: MAX_LEN, placeholder: t.placeholder,
    autocomplete: "off", enterkeyhint: "send" });
  const form = h("form", { cls: "composer", novalidate: "" },
    [h("label", { cls: "sr", for: "sb-input", text: t.input }), input, button("send", t.send, "send", { type: "submit" })]);
  const panel = h("div", { id: "sb-panel", cls: "panel", role: "dialog", "aria-label": cfg.title, hidden: "" }, [
    h("div", { cls: "header" }, [avatar(), h("h2", { cls: "title", text: cfg.title }), close]),
    log, typing, status, form]);
  const root = shadow.appendChild(h("div", { cls: "root " + cfg.position, lang: cfg.language }, [panel, launcher]));
  root.style.setProperty("--p", cfg.color); // one property value: no way to inject other CSS
  return { host, shadow, root, launcher, panel, close, log, typing, status, form, input };
}

function start() {
  t = { ...STRINGS.en, ...STRINGS[cfg.language] };
  store = makeStore(`shopbot:${cfg.server.origin}:`);
  ui = buildUi();
  ui.launcher.onclick = () => (isOpen ? close(true) : open(true));
  ui.close.onclick = () => close(true);
  ui.panel.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    e.stopPropagation();
    close(true);
  });
  ui.form.onsubmit = (e) => {
    e.preventDefault();
    submit();
  };
  ui.input.addEventListener("keydown", (e) => {
    // Enter sends, Shift+Enter is a newline; not while an IME composes (Japanese, Chinese...).
    if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.keyCode === 229) return;
    e.preventDefault();
    submit();
  });
  ui.input.addEventListener("input", onInput);
  ui.input.addEventListener("paste", onPaste);
  addEventListener("online", onOnline);
  addEventListener("offline", () => {
    wentOffline = true;
    setStatus("offline");
  });
  document.body.appendChild(ui.host);
  setStatus("idle");
  renderHistory([]); // the greeting and what a reload left in the outbox, until the session comes
  if (store.get("token") || readOutbox().length) connect(); // a returning shopper
  if (cfg.open) open(false); // opened by the markup: leave the focus where the page has it
}

// ---- public API: nothing here reaches the conversation

function init(options) {
  if (cfg) return; // once per page
  cfg = normalize({ ...optionsFromTag(script), ...(isObject(options) ? options : {}) });
  if (document.body) start(); else addEventListener("DOMContentLoaded", start);
}

window.ShopBot = Object.freeze({
  init,
  open: () => ui && open(true),
  close: () => ui && close(false),
  version: VERSION
});

if (!script || !script.hasAttribute("data-manual-init")) init();
})();
