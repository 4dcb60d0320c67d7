// Formatting times and durations for people, in the browser's own locale.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });

export const BAND_MEANING = { A: "expansion", B: "caution", C: "stabilize", D: "survival" };

export const STATUS_LABEL = { green: "Green", yellow: "Yellow", red: "Red" };

/** Milliseconds since the epoch, or NaN for a missing or unreadable time. */
export function parseTime(iso) {
  return iso ? Date.parse(iso) : NaN;
}

export function formatDateTime(iso) {
  const ms = parseTime(iso);
  return Number.isNaN(ms) ? "–" : dateTime.format(ms);
}

export function formatTime(ms) {
  return Number.isNaN(ms) ? "–" : timeOnly.format(ms);
}

/** 3725 → "1 h 2 min", 125 → "2 min 5 s", 0.4 → "under 1 s". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 1) return "under 1 s";
  const total = Math.floor(seconds);
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${minutes} min`;
  if (minutes > 0) return `${minutes} min ${secs} s`;
  return `${secs} s`;
}

/** A stopwatch reading: 3725 → "1:02:05". */
export function formatClock(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = String(Math.floor((total % 3600) / 60)).padStart(2, "0");
  const secs = String(total % 60).padStart(2, "0");
  return `${hours}:${minutes}:${secs}`;
}

/** A machine-readable duration for <time datetime>: "PT1H2M5S". */
export function isoDuration(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return `PT${h}H${m}M${s}S`;
}

function isEmpty(value) {
  if (value === null || value === undefined || value === "") return true;
  return typeof value === "object" && Object.keys(value).length === 0;
}

/** An audit payload in one short line: "step_id=intake_ready, done=true". */
export function summarizePayload(payload, max = 160) {
  if (!payload || typeof payload !== "object") return "";
  const parts = Object.entries(payload)
    .filter(([, value]) => !isEmpty(value))
    .map(([key, value]) => `${key}=${typeof value === "object" ? JSON.stringify(value) : value}`);
  const line = parts.join(", ");
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
