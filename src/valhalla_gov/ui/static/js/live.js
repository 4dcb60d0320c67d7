// Live updates: GET /core/events/stream read with fetch() and a streaming
// body reader. EventSource cannot send an Authorization header, and the
// API token must not go into a URL (logs, history); fetch can send it.
// The stream is parsed as the SSE spec says (id / event / data / retry
// fields, a blank line ends an event), and resumed with Last-Event-ID.
// It carries the credential, so it goes through trust.js like every call;
// its end is the first sign that the server went away, so any end or
// failure marks the server unverified.

import { authFetch, distrust, TrustError } from "./trust.js";

const STREAM_PATH = "/core/events/stream";
// The server sends a comment at least every 15 s: silence for longer than
// this means a dead connection (a laptop lid, a lost network), not a quiet log.
const SILENCE_MS = 40000;
const MAX_BACKOFF_MS = 30000;

/**
 * Open the stream and keep it open.
 * @param {{
 *   onEvent: (event: {id: string, type: string, data: any}) => void,
 *   onState: (state: "connecting"|"live"|"lost"|"unverified"|"unauthorized"|"limited", detail?: string) => void,
 * }} handlers
 * @returns {{restart: () => void, stop: () => void}}
 */
export function subscribe({ onEvent, onState }) {
  let lastId = "";
  let retryMs = 2000;
  let failures = 0;
  let controller = null;
  let timer = null;
  let stopped = false;
  let generation = 0;

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(connect, ms);
  }

  function backoff() {
    failures += 1;
    // Grows on repeated failures, with jitter so many pages do not return at once.
    const base = Math.min(MAX_BACKOFF_MS, retryMs * 2 ** Math.min(failures - 1, 4));
    return base / 2 + Math.random() * (base / 2);
  }

  async function connect() {
    if (stopped) return;
    const mine = ++generation;
    controller = new AbortController();
    const headers = { Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    onState("connecting");
    let response;
    try {
      response = await authFetch(STREAM_PATH, {
        headers,
        cache: "no-store",
        signal: controller.signal,
      });
    } catch (err) {
      if (mine !== generation) return;
      if (err instanceof TrustError) {
        // Nothing was sent. trust.js retries the hello; the app restarts
        // this stream when the server has proven itself.
        onState(err.refused ? "unauthorized" : "unverified");
        schedule(backoff());
      } else {
        lost();
      }
      return;
    }
    if (mine !== generation) return;
    // Not an open stream: without one, nothing tells that the server went
    // away before the next call, so the next call proves it first.
    if (response.status !== 200) distrust();
    if (response.status === 401 || response.status === 403) {
      onState("unauthorized");
      schedule(MAX_BACKOFF_MS); // or sooner: restart() when the token changes
      return;
    }
    if (response.status === 429) {
      const wait = Number(response.headers.get("Retry-After")) || 5;
      onState("limited");
      schedule(wait * 1000 + Math.random() * 1000);
      return;
    }
    if (!response.ok || !response.body) {
      lost();
      return;
    }
    failures = 0;
    onState("live");
    try {
      await read(response.body, mine);
    } catch {
      /* aborted or cut: reconnect below */
    }
    if (mine === generation && !stopped) lost();
  }

  function lost() {
    distrust();
    onState("lost");
    schedule(backoff());
  }

  async function read(body, mine) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = { id: null, type: "", data: [] };
    let watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || mine !== generation) return;
        clearTimeout(watchdog);
        watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
        buffer += value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (const line of lines) {
          if (line === "") {
            if (event.data.length) dispatch(event);
            event = { id: null, type: "", data: [] };
            continue;
          }
          if (line.startsWith(":")) continue; // a comment: keep-alive
          const colon = line.indexOf(":");
          const field = colon === -1 ? line : line.slice(0, colon);
          let text = colon === -1 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "data") event.data.push(text);
          else if (field === "event") event.type = text;
          else if (field === "id" && !text.includes("\0")) event.id = text;
          else if (field === "retry" && /^\d+$/.test(text)) retryMs = Number(text);
        }
      }
    } finally {
      clearTimeout(watchdog);
    }
  }

  function dispatch(event) {
    if (event.id !== null) lastId = event.id;
    let data = null;
    try {
      data = JSON.parse(event.data.join("\n"));
    } catch {
      return; // not ours to show
    }
    onEvent({ id: lastId, type: event.type || "message", data });
  }

  function restart() {
    failures = 0;
    generation += 1;
    if (controller) controller.abort();
    schedule(0);
  }

  function stop() {
    stopped = true;
    generation += 1;
    clearTimeout(timer);
    if (controller) controller.abort();
  }

  schedule(0);
  return { restart, stop };
}
