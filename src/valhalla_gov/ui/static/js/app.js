// The GO page: renders the summary, playbook, history and audit tail, and
// sends the operator's actions. Server text is only ever set as text
// (textContent / text nodes), never parsed as HTML.

import {
  api,
  ApiError,
  apiResponse,
  clearToken,
  getToken,
  serverNow,
  setToken,
  setTokenName,
  UNVERIFIED_TEXT,
} from "./api.js";
import { onTrust } from "./trust.js";
import {
  BAND_MEANING,
  STATUS_LABEL,
  formatClock,
  formatDateTime,
  formatDuration,
  formatTime,
  isoDuration,
  parseTime,
  summarizePayload,
} from "./format.js";
import { subscribe } from "./live.js";
import { barChart, stackedChart } from "./charts.js";

const REFRESH_MS = 15000;
const HISTORY_PAGE_SIZE = 10;
const AUDIT_TAIL = 10;

const $ = (id) => document.getElementById(id);

const state = {
  summary: null,
  cone: null,
  whoami: null,
  history: { cursors: [null], index: 0, nextCursor: null, loading: false, seq: 0 },
  nextStepId: null,
  refreshSeq: 0,
  signedIn: false, // the page has a credential the server accepted
  live: null, // the event stream (live.js)
  liveState: "connecting",
  liveRefresh: { timer: null, last: 0, history: false },
};

// ---------------------------------------------------------------- helpers

/** Build an element. Children are nodes or plain strings (added as text). */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function timeEl(iso) {
  return h("time", { datetime: iso || null }, formatDateTime(iso));
}

function statusChip(status) {
  if (!status) return h("span", { class: "muted" }, "–");
  return h("span", { class: "chip", "data-status": status }, STATUS_LABEL[status] || status);
}

function bandText(band) {
  return band ? `${band} (${BAND_MEANING[band] || "unknown"})` : "–";
}

function scopesOf(who) {
  return who && Array.isArray(who.scopes) ? who.scopes : [];
}

/** Without an identity yet, let the server decide; a viewer cannot act. */
function canOperate() {
  if (!state.whoami) return true;
  const scopes = scopesOf(state.whoami);
  return scopes.includes("operator") || scopes.includes("owner");
}

// ----------------------------------------------------------- panel states

// Each panel shows only what it has read from the server. Until then, and
// whenever it cannot read, a status line says why (loading, no access, an
// error) instead of a default that could be mistaken for the truth.
const PANELS = {
  band: { id: "band-card", what: "cone band" },
  health: { id: "health-card", what: "health" },
  session: { id: "session-card", what: "session" },
  playbook: { id: "playbook", what: "playbook" },
  history: { id: "history", what: "history" },
  audit: { id: "audit", what: "audit tail" },
};

function panelReady(name) {
  return $(PANELS[name].id).dataset.state === "ready";
}

/** status: "loading" | "ready" | "error" | "unauthorised" */
function setPanel(name, status, err = null) {
  const { id, what } = PANELS[name];
  const panel = $(id);
  const line = panel.querySelector(".panel-status");
  panel.dataset.state = status;
  line.dataset.kind = status;
  if (status === "ready") {
    panel.dataset.read = formatTime(serverNow());
    line.textContent = "";
    line.hidden = true;
    return;
  }
  let text = "Loading…";
  if (status === "unauthorised") {
    text =
      err && err.status === 403
        ? `Your token may not read the ${what}${err.detail ? `: ${err.detail}` : ""}.`
        : `Can't read the ${what} until you enter a token.`;
  } else if (status === "error") {
    const why =
      err instanceof ApiError ? err.message : `The page hit a problem (${err && err.message}).`;
    const kept = panel.dataset.read ? ` Showing what was read at ${panel.dataset.read}.` : "";
    text = `Could not read the ${what}. ${why}${kept}`;
  }
  line.textContent = text;
  line.hidden = false;
}

function panelFailed(name, err) {
  const denied = err instanceof ApiError && (err.status === 401 || err.status === 403);
  setPanel(name, denied ? "unauthorised" : "error", err);
}

// --------------------------------------------------------------- messages

function say(text, kind = "info") {
  const box = $("message");
  // Re-announcing the same text every 15 s would only be noise.
  if (box.textContent === text && box.dataset.kind === kind) return;
  box.dataset.kind = kind;
  box.textContent = text;
}

function clearMessage(kind) {
  const box = $("message");
  if (kind && box.dataset.kind !== kind) return;
  box.textContent = "";
  delete box.dataset.kind;
}

/** Turn any failure into a sentence on the page (the sign-in screen on 401). */
function report(err, context, kind = "error") {
  if (!(err instanceof ApiError)) {
    console.error(err);
    say(`${context}: the page hit an unexpected problem (${err && err.message}).`, kind);
    return;
  }
  if (err.needsToken) {
    // A refusal of a credential the page has since replaced is old news.
    if (err.sentToken === getToken()) credentialRefused(err.sentToken);
    return;
  }
  say(`${context}. ${err.message}`, kind);
}

function rateLimitText(err) {
  const wait = err.retryAfter;
  let when = "";
  if (wait !== null) {
    const at = formatTime(serverNow() + wait * 1000);
    when = ` Try again in ${formatDuration(wait)} (at about ${at}).`;
  }
  // The server's own words ("rate limit reached: 1 per 3600s ..."), capitalised.
  const said = err.detail || "rate limit reached";
  return `${said.charAt(0).toUpperCase()}${said.slice(1)}.${when}`;
}

// ---------------------------------------------------------------- sign-in

const SIGNIN_TEXT = {
  first: "This page shows and changes your governance data, so it needs to know it is you.",
  refused:
    "This browser's sign-in no longer works (it was revoked, or the server's data was " +
    "replaced). Sign in again.",
  usedLink:
    "That sign-in link does not work any more: it was used already, or it is older than " +
    "15 minutes. Print a new one.",
  badToken: "The server did not accept that token. Check it, or sign in with a link.",
  signedOut: "Signed out: this browser has forgotten its credential.",
};

/** The code of a sign-in link (`#signin=CODE`), taken out of the address
 * bar at once: it stays in no history entry, bookmark or screenshot. */
function takeSigninCode() {
  if (!location.hash.startsWith("#signin=")) return "";
  const code = decodeURIComponent(location.hash.slice("#signin=".length));
  history.replaceState(null, "", location.pathname + location.search);
  return code;
}

/** Trade a link's one-time code for this browser's own credential. */
async function signInWithCode(code) {
  try {
    // No credential goes with it: the code is the credential here.
    const created = await api("POST", "/core/auth/signin", { code }, { auth: false });
    setToken(created.token, created.name);
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      showSignin(SIGNIN_TEXT.usedLink);
    } else {
      showSignin(`Could not sign in: ${err.message || err}`);
    }
    return false;
  }
}

/** The calm screen a page without a credential shows instead of its panels. */
function showSignin(reason = SIGNIN_TEXT.first) {
  state.signedIn = false;
  state.whoami = null;
  $("signin-reason").textContent = reason;
  $("signin").hidden = false;
  $("main").hidden = true;
  $("sign-out").hidden = true;
  $("live-status").hidden = true;
  $("identity").textContent = "Not signed in.";
  clearMessage();
  if (state.live) {
    state.live.stop();
    state.live = null;
  }
}

/** The server refused the credential this page holds: forget it, sign in again. */
function credentialRefused(sent) {
  if (!state.signedIn && !sent) return;
  clearToken();
  showSignin(SIGNIN_TEXT.refused);
}

async function onTokenSubmit(event) {
  event.preventDefault();
  const input = $("token-input");
  const token = input.value.trim();
  if (!token) {
    input.focus();
    return;
  }
  setToken(token);
  input.value = "";
  if (!(await enter())) {
    clearToken();
    showSignin(SIGNIN_TEXT.badToken);
    input.focus();
  }
}

function onSignOut() {
  clearToken();
  showSignin(SIGNIN_TEXT.signedOut);
}

/** With a credential in hand: who is it? Then the page itself. */
async function enter() {
  let who;
  try {
    who = await api("GET", "/core/whoami");
  } catch (err) {
    if (err instanceof ApiError && err.needsToken) return false;
    showSignin(`Cannot reach the server to sign in: ${err.message}`);
    return false;
  }
  // The hello names the token; a typed one learns its name here.
  if (who && typeof who.name === "string") setTokenName(who.name);
  state.whoami = who;
  state.signedIn = true;
  $("signin").hidden = true;
  $("main").hidden = false;
  $("sign-out").hidden = false;
  $("live-status").hidden = false;
  renderIdentity();
  if (state.live) state.live.restart();
  else startLive();
  await Promise.all([refresh(), loadHistory(0), loadInsights()]);
  return true;
}

// --------------------------------------------------------------- identity

function renderIdentity() {
  const who = state.whoami;
  $("identity").textContent = who
    ? `Signed in as ${who.name} (${scopesOf(who).join(", ")}).`
    : "Not signed in.";
  $("band-panel").hidden = !scopesOf(who).includes("owner");
  updateControls();
}

// ---------------------------------------------------------------- refresh

/** Reload the summary, the cone and the audit tail (and page 1 of history). */
async function refresh({ withHistory = false } = {}) {
  if (!state.signedIn) return;
  const seq = ++state.refreshSeq;
  const jobs = [
    api("GET", "/core/go/summary"),
    api("GET", "/core/cone/state"),
    api("GET", `/core/audit/events?limit=${AUDIT_TAIL}`),
  ];
  if (withHistory && state.history.index === 0) jobs.push(loadHistory(0, { quiet: true }));
  const [summary, cone, audit] = await Promise.allSettled(jobs);
  if (seq !== state.refreshSeq) return; // a newer refresh has started; let it win

  try {
    if (summary.status === "fulfilled") {
      state.summary = summary.value;
      renderSummary(summary.value);
      for (const name of ["session", "health", "playbook"]) setPanel(name, "ready");
    } else {
      for (const name of ["session", "health", "playbook"]) panelFailed(name, summary.reason);
    }
    if (cone.status === "fulfilled") {
      state.cone = cone.value;
      renderCone(cone.value);
      setPanel("band", "ready");
    } else {
      panelFailed("band", cone.reason);
    }
    if (audit.status === "fulfilled") {
      renderAudit(audit.value.items || []);
      setPanel("audit", "ready");
    } else {
      panelFailed("audit", audit.reason);
    }
  } catch (err) {
    report(err, "Could not show the latest state");
    return;
  }

  const failed = [summary, cone, audit].find((r) => r.status === "rejected");
  if (failed) {
    report(failed.reason, "Could not refresh", "refresh");
  } else {
    clearMessage("refresh");
  }
}

// ------------------------------------------------------------- rendering

function renderSummary(summary) {
  renderHealth(summary.health || {});
  if (!state.cone) renderBandLetter(summary.checklist && summary.checklist.cone_band);
  renderSession(summary.session || {});
  renderPlaybook(summary.checklist || { steps: [] }, summary.next || {});
  updateControls();
}

function renderBandLetter(band) {
  const letter = $("band-letter");
  letter.textContent = band || "–";
  letter.dataset.band = band || "";
  $("band-meaning").textContent = band ? BAND_MEANING[band] || "" : "";
}

function renderCone(cone) {
  renderBandLetter(cone.band);
  $("band-reason").textContent = cone.reason || "";
  const by = cone.updated_by ? ` by ${cone.updated_by}` : "";
  $("band-updated").textContent = cone.updated_at_utc
    ? `Set ${formatDateTime(cone.updated_at_utc)}${by}.`
    : "Not changed since the first start.";
  const select = $("band-select");
  if (!select.dataset.touched) select.value = cone.band;
}

function renderHealth(health) {
  const status = health.status || "";
  $("health-dot").dataset.status = status;
  $("health-status").textContent = STATUS_LABEL[status] || "Unknown";
  const reasons = Array.isArray(health.reasons) ? health.reasons : [];
  $("health-reasons").replaceChildren(
    ...(reasons.length ? reasons.map((r) => h("li", {}, r)) : [h("li", {}, "All checks pass.")]),
  );
}

function renderSession(session) {
  const active = Boolean(session.active);
  const details = $("session-details");
  $("session-timer-line").hidden = !active;
  $("session-start").hidden = active;
  $("session-end").hidden = !active;
  $("session-notes-hint").textContent = active
    ? "Saved with the end of the session."
    : "Saved with the start of the session.";

  if (active) {
    $("session-state").textContent = `Active since ${formatDateTime(session.started_at_utc)}${
      session.started_by ? `, started by ${session.started_by}` : ""
    }.`;
    const facts = [
      ["At start", `band ${bandText(session.cone_band)}, ${session.status || "–"}`],
      ["Steps done in it", String((session.steps_completed || []).length)],
    ];
    const notes = session.start_notes ?? session.notes;
    if (notes) facts.push(["Start notes", notes]);
    details.replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    details.hidden = false;
    tick();
  } else {
    const last = session.ended_at_utc
      ? ` The last one ended ${formatDateTime(session.ended_at_utc)}` +
        ` after ${formatDuration(session.duration_seconds)}.`
      : "";
    $("session-state").textContent = `No active session.${last}`;
    details.replaceChildren();
    details.hidden = true;
  }
}

/** The elapsed timer, once a second, from the server's start time. */
function tick() {
  const session = state.summary && state.summary.session;
  if (!session || !session.active) return;
  const started = parseTime(session.started_at_utc);
  if (Number.isNaN(started)) return;
  const seconds = Math.max(0, (serverNow() - started) / 1000);
  const timer = $("session-elapsed");
  timer.textContent = formatClock(seconds);
  timer.setAttribute("datetime", isoDuration(seconds));
}

function renderPlaybook(checklist, next) {
  const step = next.next_step || null;
  const waiting = (checklist.steps || []).some((s) => !s.done);
  // ready: a step to do; waiting: steps left but none doable now; done: all done.
  $("next-step").dataset.state = step ? "ready" : waiting ? "waiting" : "done";
  $("next-title").textContent = step ? step.title : next.message || "Nothing to do.";
  $("next-why").textContent = step ? step.why || "" : "";

  const done = checklist.done_count ?? 0;
  const total = checklist.total ?? (checklist.steps || []).length;
  $("progress-text").textContent = `${done} of ${total} steps done`;
  const progress = $("playbook-progress");
  progress.max = Math.max(1, total);
  progress.value = done;

  const blocked = Array.isArray(checklist.blocked_reasons) ? checklist.blocked_reasons : [];
  const blockedList = $("blocked-reasons");
  blockedList.replaceChildren(...blocked.map((r) => h("li", {}, r)));
  blockedList.hidden = blocked.length === 0;

  renderChecklist(checklist.steps || [], step ? step.id : null, checklist.cone_band);
}

/** Update the step list in place, so notes being typed survive a refresh. */
function renderChecklist(steps, nextId, band) {
  const list = $("checklist");
  const existing = new Map([...list.children].map((li) => [li.dataset.stepId, li]));
  const previousNext = state.nextStepId;
  steps.forEach((step, index) => {
    const li = existing.get(step.id) || buildStep(step.id);
    existing.delete(step.id);
    updateStep(li, step, step.id === nextId, band);
    if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
  });
  for (const stale of existing.values()) stale.remove();

  // The next step opens its notes; the one before closes, unless in use.
  if (nextId !== previousNext) {
    const old = previousNext && list.querySelector(`[data-step-id="${CSS.escape(previousNext)}"]`);
    if (old && !old.contains(document.activeElement) && !isDirty(old)) {
      old.querySelector("details").open = false;
    }
    const fresh = nextId && list.querySelector(`[data-step-id="${CSS.escape(nextId)}"]`);
    if (fresh) fresh.querySelector("details").open = true;
    state.nextStepId = nextId;
  }
}

function isDirty(li) {
  const notes = li.querySelector("textarea");
  return notes.value !== (notes.dataset.server || "");
}

function buildStep(id) {
  const doneId = `step-done-${id}`;
  const notesId = `step-notes-${id}`;
  const li = h("li", { class: "step", "data-step-id": id });
  const checkbox = h("input", { type: "checkbox", id: doneId, class: "step-done" });
  const title = h("label", { for: doneId, class: "step-title" });
  const head = h("div", { class: "step-head" }, checkbox, title, h("span", { class: "badges" }));
  const notes = h("textarea", { id: notesId, rows: 2, maxlength: 10000, class: "step-notes" });
  // The hidden " for “title”" spans make each label and button name unique.
  const save = h(
    "button",
    { type: "button", class: "step-save" },
    "Save notes",
    h("span", { class: "visually-hidden step-save-for" }),
  );
  const details = h(
    "details",
    { class: "step-details" },
    h("summary", {}, "Why and notes", h("span", { class: "visually-hidden step-summary-for" })),
    h("p", { class: "step-why small" }),
    h(
      "label",
      { for: notesId, class: "step-notes-label" },
      "Notes",
      h("span", { class: "visually-hidden step-notes-for" }),
    ),
    notes,
    h("div", { class: "actions" }, save),
  );
  li.append(
    head,
    h("p", { class: "step-blocked small", hidden: true }),
    h("p", { class: "step-notes-preview small", hidden: true }),
    details,
  );

  checkbox.addEventListener("change", () => saveStep(li, checkbox.checked, "toggle"));
  save.addEventListener("click", () => {
    const current = findStep(id);
    saveStep(li, current ? current.done : checkbox.checked, "notes");
  });
  return li;
}

function updateStep(li, step, isNext, band) {
  const busy = li.dataset.busy === "1";
  li.classList.toggle("is-next", isNext);
  li.classList.toggle("is-done", Boolean(step.done));
  li.classList.toggle("is-blocked", Boolean(step.blocked) && !step.done);
  if (isNext) li.setAttribute("aria-current", "step");
  else li.removeAttribute("aria-current");

  const checkbox = li.querySelector(".step-done");
  if (!busy) checkbox.checked = Boolean(step.done);
  // A blocked step cannot be ticked here; one already done can be undone.
  checkbox.disabled = busy || !canOperate() || (Boolean(step.blocked) && !step.done);

  li.querySelector(".step-title").textContent = step.title;
  const forTitle = ` for “${step.title}”`;
  li.querySelector(".step-save-for").textContent = forTitle;
  li.querySelector(".step-summary-for").textContent = forTitle;
  li.querySelector(".step-notes-for").textContent = forTitle;
  li.querySelector(".step-why").textContent = step.why || "";
  li.querySelector(".step-save").disabled = busy || !canOperate();

  const badges = [];
  if (isNext) badges.push(h("span", { class: "badge badge-next" }, "Next"));
  if (step.done) badges.push(h("span", { class: "badge badge-done" }, "Done"));
  else if (step.blocked) badges.push(h("span", { class: "badge badge-blocked" }, "Blocked"));
  else if (step.fits === false) {
    badges.push(h("span", { class: "badge badge-wait" }, "Not in this band"));
  }
  li.querySelector(".badges").replaceChildren(...badges);

  const why = [];
  if (!step.done && step.blocked) why.push(`Blocked: ${step.blocked_reason || "health is red"}.`);
  if (!step.done && step.fits === false) {
    why.push(`Waits for band ${step.band_min} or better; the band is ${band}.`);
  }
  const blockedLine = li.querySelector(".step-blocked");
  blockedLine.textContent = why.join(" ");
  blockedLine.hidden = why.length === 0;

  const preview = li.querySelector(".step-notes-preview");
  preview.textContent = step.notes ? `Notes: ${step.notes}` : "";
  preview.hidden = !step.notes;

  // Keep what the operator is typing; otherwise follow the server.
  const notes = li.querySelector(".step-notes");
  const serverNotes = step.notes || "";
  if (!isDirty(li)) notes.value = serverNotes;
  notes.dataset.server = serverNotes;
}

function findStep(id) {
  const steps = (state.summary && state.summary.checklist && state.summary.checklist.steps) || [];
  return steps.find((s) => s.id === id) || null;
}

async function saveStep(li, done, why) {
  const id = li.dataset.stepId;
  const step = findStep(id);
  const title = step ? step.title : id;
  const notesBox = li.querySelector(".step-notes");
  const notes = notesBox.value.trim() ? notesBox.value : null;
  li.dataset.busy = "1";
  li.querySelector(".step-done").disabled = true;
  li.querySelector(".step-save").disabled = true;
  try {
    await api("POST", "/core/go/complete", { step_id: id, done, notes });
    notesBox.dataset.server = notesBox.value;
    if (why === "notes") say(`Saved the notes for “${title}”.`, "ok");
    else say(done ? `Marked “${title}” done.` : `Marked “${title}” not done.`, "ok");
  } catch (err) {
    report(err, `Could not save “${title}”`);
  } finally {
    delete li.dataset.busy;
    await refresh();
  }
}

function renderHistory(items) {
  const list = $("history-list");
  list.replaceChildren(...items.map(historyItem));
  $("history-empty").hidden = items.length > 0 || state.history.index > 0;
}

function historyItem(s) {
  const startBand = s.cone_band ?? (s.snapshot && s.snapshot.cone && s.snapshot.cone.band);
  const startStatus = s.status ?? (s.snapshot && s.snapshot.status && s.snapshot.status.status);
  const end = s.end_snapshot || {};
  const endBand = end.cone && end.cone.band;
  const endStatus = end.status && end.status.status;
  const seconds =
    s.duration_seconds ?? (parseTime(s.ended_at_utc) - parseTime(s.started_at_utc)) / 1000;

  const facts = [
    ["Started", [timeEl(s.started_at_utc), s.started_by ? ` by ${s.started_by}` : ""]],
    ["Ended", [timeEl(s.ended_at_utc), s.ended_by ? ` by ${s.ended_by}` : ""]],
    ["Duration", formatDuration(seconds)],
    ["Band", `${startBand || "–"} → ${endBand || "–"}`],
    ["Status", [statusChip(startStatus), " → ", statusChip(endStatus)]],
    ["Steps done", String((s.steps_completed || []).length)],
  ];
  if (s.start_notes) facts.push(["Start notes", s.start_notes]);
  if (s.end_notes) facts.push(["End notes", s.end_notes]);
  if (!s.start_notes && !s.end_notes && s.notes) facts.push(["Notes", s.notes]);

  return h(
    "li",
    { class: "history-item", "data-session-id": s.id || null },
    h("h3", { class: "history-title" }, `Session of ${formatDateTime(s.started_at_utc)}`),
    h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
  );
}

function renderAudit(items) {
  $("audit-list").replaceChildren(
    ...items.map((e) =>
      h(
        "li",
        { class: "audit-item" },
        h(
          "p",
          { class: "audit-head" },
          h("code", { class: "audit-event" }, e.event || "?"),
          " ",
          h("span", { class: "muted small" }, timeEl(e.ts_utc), e.actor ? ` · ${e.actor}` : ""),
        ),
        h("p", { class: "audit-payload small" }, summarizePayload(e.payload)),
      ),
    ),
  );
  $("audit-empty").hidden = items.length > 0;
}

/** Controls an identity without the operator scope cannot use. */
function updateControls() {
  const allowed = canOperate();
  for (const id of ["session-start", "session-end", "session-notes"]) {
    const control = $(id);
    if (control.dataset.busy !== "1") control.disabled = !allowed;
  }
  const hint = $("session-notes-hint");
  if (!allowed) {
    hint.textContent = "Your token may only read; starting and ending need the operator scope.";
  }
}

// ------------------------------------------------------------ live updates

const LIVE_TEXT = {
  connecting: "Live updates: connecting…",
  live: "Live: changes from any screen show here at once.",
  lost: "Live updates lost: reconnecting…",
  unverified: "Live updates paused: can't reach the server you signed in to; checking again.",
  unauthorized: "Live updates need a valid API token.",
  limited: "Live updates paused: too many pages open for this token; retrying.",
};
// At most one refresh per this many ms while events pour in (cone decisions
// from busy engines are audited too); the last event always gets one.
const LIVE_REFRESH_MS = 300;

function startLive() {
  state.live = subscribe({ onEvent: onLiveEvent, onState: renderLive });
}

function renderLive(liveState) {
  const wasLive = state.liveState === "live";
  state.liveState = liveState;
  const line = $("live-status");
  line.dataset.state = liveState;
  line.textContent = LIVE_TEXT[liveState] || "";
  // Back after a gap (or the first time): catch up on whatever happened
  // before the stream was open, beyond what it replays.
  if (liveState === "live" && !wasLive) {
    refresh({ withHistory: true });
    loadInsights();
  }
}

function onLiveEvent(event) {
  const pending = state.liveRefresh;
  if (event.type.startsWith("GO_SESSION")) pending.history = true;
  if (pending.timer !== null) return;
  const wait = Math.max(0, pending.last + LIVE_REFRESH_MS - Date.now());
  pending.timer = setTimeout(() => {
    const withHistory = pending.history;
    pending.timer = null;
    pending.history = false;
    pending.last = Date.now();
    refresh({ withHistory });
    if (withHistory) loadInsights();
  }, wait);
}

// --------------------------------------------------------------- insights

const BANDS = ["A", "B", "C", "D"];
const BUCKET_WORD = { day: "day", week: "week", month: "month" };
const dayLabel = new Intl.DateTimeFormat(undefined, {
  day: "numeric",
  month: "short",
  timeZone: "UTC",
});
const monthLabel = new Intl.DateTimeFormat(undefined, {
  month: "short",
  year: "2-digit",
  timeZone: "UTC",
});

function bucketLabel(iso, bucket) {
  const ms = parseTime(iso);
  if (Number.isNaN(ms)) return "?";
  return (bucket === "month" ? monthLabel : dayLabel).format(ms);
}

async function loadInsights() {
  const bucket = $("insights-bucket").value;
  const seq = (state.insightsSeq = (state.insightsSeq || 0) + 1);
  try {
    const report = await api("GET", `/core/go/insights?bucket=${encodeURIComponent(bucket)}`);
    if (seq !== state.insightsSeq) return;
    renderInsights(report);
  } catch (err) {
    if (seq !== state.insightsSeq) return;
    const text =
      err instanceof ApiError && err.needsToken
        ? "Insights need an API token."
        : `Could not load the insights. ${err.message || ""}`;
    $("insights-status").textContent = text;
    $("insights-status").hidden = false;
  }
}

function renderInsights(report) {
  const items = Array.isArray(report.items) ? report.items : [];
  const bucket = report.bucket || "week";
  const word = BUCKET_WORD[bucket] || bucket;
  const labels = items.map((i) => bucketLabel(i.start, bucket));
  const total = items.reduce((sum, i) => sum + (i.sessions || 0), 0);
  const range = items.length ? `${labels[0]} – ${labels[labels.length - 1]}` : "";
  $("insights-range").textContent = items.length ? `last ${items.length} ${word}s: ${range}` : "";
  const status = $("insights-status");
  status.textContent = total ? "" : `No ended sessions in these ${items.length} ${word}s yet.`;
  status.hidden = total > 0;

  const sessions = items.map((i) => i.sessions || 0);
  const busiest = sessions.indexOf(Math.max(...sessions, 0));
  const medians = items.map((i) => (i.median_seconds === null ? null : i.median_seconds));
  const known = medians.filter((m) => m !== null);
  const bandTotals = Object.fromEntries(
    BANDS.map((b) => [b, items.reduce((sum, i) => sum + ((i.bands || {})[b] || 0), 0)]),
  );
  const bandWords = BANDS.filter((b) => bandTotals[b]).map((b) => `${bandTotals[b]} in band ${b}`);

  const charts = [
    {
      title: `Sessions per ${word}`,
      desc: total
        ? `${total} sessions in ${items.length} ${word}s (${range}); the most, ${sessions[busiest]}, ` +
          `in the ${word} of ${labels[busiest]}.`
        : `No sessions in ${items.length} ${word}s (${range}).`,
      svg: (t, d) =>
        barChart({ title: t, desc: d, labels, values: sessions, format: (v) => String(v) }),
    },
    {
      title: `Median session length per ${word}`,
      desc: known.length
        ? `From ${formatDuration(Math.min(...known))} to ${formatDuration(Math.max(...known))}` +
          ` in the ${known.length} ${word}s with sessions.`
        : "No sessions, so no lengths yet.",
      svg: (t, d) =>
        barChart({
          title: t,
          desc: d,
          labels,
          values: medians,
          format: formatDuration,
          className: "chart-bar chart-bar-time",
        }),
    },
    {
      title: "Band at each start",
      desc: total
        ? `Sessions by cone band when they started, ${word} by ${word}: ${bandWords.join(", ")}.`
        : "No sessions, so no bands yet.",
      svg: (t, d) =>
        stackedChart({
          title: t,
          desc: d,
          labels,
          series: BANDS.map((b) => ({
            key: b,
            label: `band ${b}`,
            values: items.map((i) => (i.bands || {})[b] || 0),
          })),
        }),
      legend: true,
    },
  ];

  const figures = charts.map((c) =>
    h(
      "figure",
      { class: "chart" },
      h("figcaption", { class: "chart-title" }, c.title),
      c.svg(c.title, c.desc),
      c.legend
        ? h(
            "ul",
            { class: "chart-legend", "aria-hidden": "true" },
            BANDS.map((b) =>
              h("li", {}, h("span", { class: `swatch chart-seg-${b}` }), `${b} ${BAND_MEANING[b]}`),
            ),
          )
        : null,
      h("p", { class: "chart-desc small" }, c.desc),
    ),
  );
  $("insights-charts").replaceChildren(...figures, insightsTable(items, labels, word));
}

/** Every number behind the charts, as a table (the charts' full text alternative). */
function insightsTable(items, labels, word) {
  const head = ["Sessions", "Median", "Total", "Steps", "Band at start", "Health at start"];
  const counts = (obj) =>
    Object.entries(obj || {})
      .filter(([, n]) => n)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ") || "–";
  return h(
    "details",
    { class: "chart-numbers" },
    h("summary", {}, "The numbers behind the charts"),
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        {},
        h("caption", { class: "visually-hidden" }, `GO sessions per ${word}`),
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col" }, word[0].toUpperCase() + word.slice(1)),
            head.map((t) => h("th", { scope: "col" }, t))),
        ),
        h(
          "tbody",
          {},
          items.map((item, i) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, labels[i]),
              h("td", {}, String(item.sessions)),
              h("td", {}, item.median_seconds === null ? "–" : formatDuration(item.median_seconds)),
              h("td", {}, item.sessions ? formatDuration(item.total_seconds) : "–"),
              h("td", {}, String(item.steps_completed)),
              h("td", {}, counts(item.bands)),
              h("td", {}, counts(item.statuses)),
            ),
          ),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------- history

async function loadHistory(index, { quiet = false } = {}) {
  const history = state.history;
  const cursor = history.cursors[index];
  const query = new URLSearchParams({ limit: String(HISTORY_PAGE_SIZE) });
  if (cursor) query.set("cursor", cursor);
  const seq = ++history.seq;
  history.loading = true;
  updatePager();
  try {
    const page = await api("GET", `/core/go/sessions?${query}`);
    if (seq !== history.seq) return; // the operator paged on meanwhile
    history.index = index;
    history.cursors.length = index + 1;
    history.nextCursor = page.next_cursor || null;
    renderHistory(page.items || []);
    setPanel("history", "ready");
  } catch (err) {
    if (seq === history.seq) panelFailed("history", err);
    if (!quiet) report(err, "Could not load the history");
  } finally {
    if (seq === history.seq) {
      history.loading = false;
      updatePager();
    }
  }
}

function updatePager() {
  const history = state.history;
  $("history-newer").disabled = history.loading || history.index === 0;
  $("history-older").disabled = history.loading || !history.nextCursor;
  $("history-page").textContent = `Page ${history.index + 1}`;
}

function onOlder() {
  const history = state.history;
  if (!history.nextCursor) return;
  history.cursors[history.index + 1] = history.nextCursor;
  loadHistory(history.index + 1);
}

function onNewer() {
  if (state.history.index > 0) loadHistory(state.history.index - 1);
}

// ---------------------------------------------------------------- actions

/** Disable the given buttons while `work` runs (no double submits). */
async function busy(controls, work) {
  for (const c of controls) {
    c.dataset.busy = "1";
    c.disabled = true;
  }
  try {
    await work();
  } finally {
    for (const c of controls) {
      delete c.dataset.busy;
      c.disabled = false;
    }
    updateControls();
  }
}

async function onSessionSubmit(event) {
  event.preventDefault();
  // The form is only shown once the session has been read; never act on a guess.
  if (!panelReady("session")) return;
  const active = Boolean(state.summary && state.summary.session && state.summary.session.active);
  const action = (event.submitter && event.submitter.value) || (active ? "end" : "start");
  const box = $("session-notes");
  const notes = box.value.trim() ? box.value : null;
  await busy([$("session-start"), $("session-end")], async () => {
    if (action === "start") await startSession(box, notes);
    else await endSession(box, notes);
  });
}

async function startSession(box, notes) {
  try {
    const session = await api("POST", "/core/go/start_session", { notes });
    box.value = "";
    say(`Session started at ${formatTime(parseTime(session.started_at_utc))}.`, "ok");
  } catch (err) {
    if (err instanceof ApiError && err.status === 409) {
      const other = (err.body && err.body.session) || {};
      const since = other.started_at_utc ? ` since ${formatDateTime(other.started_at_utc)}` : "";
      const by = other.started_by ? `, started by ${other.started_by}` : "";
      say(
        `Could not start: a session is already active${since}${by}. It is shown above; ` +
          "end it before starting another (your notes are still in the box).",
        "error",
      );
    } else if (err instanceof ApiError && err.status === 429) {
      say(`Could not start the session. ${rateLimitText(err)}`, "error");
    } else {
      report(err, "Could not start the session");
    }
  } finally {
    await refresh();
  }
}

// Sent as "true" on an answer whose write changed nothing (an end with no
// active session: the answer is then the last session, unchanged).
const NOOP_HEADER = "Valhalla-Noop";

async function endSession(box, notes) {
  let ended = false;
  try {
    const { data: session, headers } = await apiResponse("POST", "/core/go/end_session", {
      notes,
    });
    if (headers.get(NOOP_HEADER) === "true") {
      // Someone else ended it (or it never started) since the page last
      // looked: nothing was ended, and the notes went nowhere. They stay in the box.
      const lost = notes ? "; your notes were not saved (they are still in the box)" : "";
      say(`No session was active, so nothing was ended${lost}.`, "error");
      return;
    }
    box.value = "";
    ended = true;
    const at = formatTime(parseTime(session.ended_at_utc));
    say(`Session ended at ${at} after ${formatDuration(session.duration_seconds)}.`, "ok");
  } catch (err) {
    if (err instanceof ApiError && err.status === 429) {
      say(`Could not end the session. ${rateLimitText(err)}`, "error");
    } else {
      report(err, "Could not end the session");
    }
  } finally {
    await Promise.all([refresh(), ended ? loadHistory(0) : null]);
  }
}

async function onBandSubmit(event) {
  event.preventDefault();
  const select = $("band-select");
  const reasonBox = $("band-reason-input");
  const reason = reasonBox.value.trim();
  if (!reason) {
    say("Give a reason for the band change.", "error");
    reasonBox.focus();
    return;
  }
  await busy([event.submitter || $("band-form").querySelector("button")], async () => {
    try {
      const cone = await api("POST", "/core/cone/state", { band: select.value, reason });
      reasonBox.value = "";
      delete select.dataset.touched;
      say(`Band set to ${bandText(cone.band)}.`, "ok");
    } catch (err) {
      if (err instanceof ApiError && err.status === 429) {
        say(`Could not set the band. ${rateLimitText(err)}`, "error");
      } else {
        report(err, "Could not set the band");
      }
    } finally {
      await refresh();
    }
  });
}

// ------------------------------------------------------------------ trust

/** What trust.js says of the server at this address (see its header). */
function onTrustChange(trust) {
  if (trust === "unreachable") {
    say(UNVERIFIED_TEXT, "unverified");
  } else if (trust === "trusted") {
    clearMessage("unverified");
    if (!state.signedIn) {
      if (getToken()) enter();
      return;
    }
    if (state.live) state.live.restart();
    refresh({ withHistory: true });
    loadInsights();
  } else if (trust === "refused") {
    // The server here does not know this browser's sign-in (revoked, or not
    // our server): as a 401 from any call, forget it.
    clearMessage("unverified");
    credentialRefused(getToken());
  }
}

// ------------------------------------------------------------------- boot

async function boot() {
  onTrust(onTrustChange);
  $("token-form").addEventListener("submit", onTokenSubmit);
  $("sign-out").addEventListener("click", onSignOut);
  $("session-form").addEventListener("submit", onSessionSubmit);
  $("band-form").addEventListener("submit", onBandSubmit);
  $("band-select").addEventListener("change", (e) => {
    e.target.dataset.touched = "1";
  });
  $("insights-bucket").addEventListener("change", loadInsights);
  $("history-older").addEventListener("click", onOlder);
  $("history-newer").addEventListener("click", onNewer);

  window.addEventListener("unhandledrejection", (event) => {
    report(event.reason, "Something went wrong");
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refresh({ withHistory: true });
  });
  // A link opened in a tab that is already open changes only the fragment.
  window.addEventListener("hashchange", async () => {
    const code = takeSigninCode();
    if (code && (await signInWithCode(code))) await enter();
  });

  setInterval(tick, 1000);
  setInterval(() => {
    if (!document.hidden) refresh({ withHistory: true });
  }, REFRESH_MS);

  const code = takeSigninCode();
  if (code && !(await signInWithCode(code))) return;
  if (!getToken()) {
    showSignin();
    return;
  }
  if (!(await enter())) credentialRefused(getToken());
}

boot();
