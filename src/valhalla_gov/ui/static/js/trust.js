// The page's credential, and the one door it goes out through.
//
// While the server is down (a restart, a crash, an upgrade) another account
// on the machine can listen on its port; an open page that kept sending
// `Authorization: Bearer <token>` with its polls would hand it the owner's
// credential. So after any failed request the server counts as unverified,
// and before the credential goes out again the page asks POST
// /core/auth/hello (no credential): the server must answer
// HMAC-SHA256(key = SHA-256(token), msg = a fresh nonce). Only the server
// that issued the token keeps its SHA-256; a squatter knows neither. Every
// request that carries the credential goes through authFetch() below.

const TOKEN_KEY = "valhalla.go.token";
const NAME_KEY = "valhalla.go.token-name";
const HELLO_PATH = "/core/auth/hello";
const HELLO_TIMEOUT_MS = 10000;
const MAX_RETRY_MS = 30000;

// ------------------------------------------------------------- storage

// localStorage throws in some private modes; the page must still work there
// (the credential then lasts for this page view only).
const memory = { token: "", name: "" };

function load(key, fallback) {
  try {
    return localStorage.getItem(key) || "";
  } catch {
    return fallback;
  }
}

function store(key, value) {
  try {
    if (value) localStorage.setItem(key, value);
    else localStorage.removeItem(key);
  } catch {
    /* kept in memory only */
  }
}

export function getToken() {
  return load(TOKEN_KEY, memory.token);
}

/** The token's name, which the hello names; "" when not known yet. */
export function getTokenName() {
  return load(NAME_KEY, memory.name);
}

/** A new credential (its name if known: a typed token learns it from whoami). */
export function setToken(token, name = "") {
  memory.token = token;
  memory.name = name;
  store(TOKEN_KEY, token);
  store(NAME_KEY, name);
  verified = false; // proven for the next request, whatever was proven before
}

export function setTokenName(name) {
  memory.name = name;
  store(NAME_KEY, name);
}

export function clearToken() {
  setToken("");
}

// --------------------------------------------------------------- trust

let verified = false; // a proof was checked, and nothing has failed since
let failedOnce = false; // a request of this page view has failed
let checking = null; // the hello in flight: Promise<boolean>
let retryTimer = null;
let retryMs = 0;
let refused = false; // the last hello was answered 401
let epoch = 0; // bumped by each failure: a proof older than one proves nothing
const listeners = new Set();

/** listener(state): "trusted" | "unreachable" | "refused" (hello got 401). */
export function onTrust(listener) {
  listeners.add(listener);
}

function emit(state) {
  for (const listener of listeners) listener(state);
}

/** Any failed request (cut, aborted, not the answer expected): prove the
 * server again before the credential goes out. */
export function distrust() {
  verified = false;
  failedOnce = true;
  epoch += 1;
}

/** Raised instead of sending: `refused` when the server does not know the token. */
export class TrustError extends Error {
  constructor(refused) {
    super(refused ? "the server does not know this sign-in" : "server not verified");
    this.name = "TrustError";
    this.refused = refused;
  }
}

/**
 * May the credential go to this origin now? Runs the hello if needed (one at
 * a time); while a retry is waiting it answers false at once, sending nothing.
 * @param {{fresh?: boolean}} [options] fresh: prove it again even if verified
 */
export async function verifiedServer({ fresh = false } = {}) {
  if (fresh) verified = false;
  if (verified) return true;
  // A token this page view got without its name (typed in, or kept by an
  // earlier version of the page) cannot say hello: it is trusted to the
  // server that just served this page, until the first failure. whoami then
  // tells its name, and from there it is proven like any.
  if (!getTokenName()) return !failedOnce;
  if (retryTimer !== null) return false;
  if (!checking) checking = check().finally(() => (checking = null));
  return checking;
}

async function check() {
  let outcome = "unreachable";
  for (let tries = 0; tries < 3; tries += 1) {
    const started = epoch;
    try {
      outcome = await hello(getToken(), getTokenName());
    } catch {
      outcome = "unreachable"; // cut, timed out, or no WebCrypto
    }
    // A failure seen while the hello ran makes its answer stale: ask again.
    if (started === epoch) break;
    outcome = "unreachable";
  }
  refused = outcome === "refused";
  if (outcome === "ok") {
    const wasWaiting = retryMs > 0;
    verified = true;
    retryMs = 0;
    if (wasWaiting) emit("trusted");
    return true;
  }
  if (outcome === "refused") {
    retryMs = 0; // a new sign-in starts afresh
    emit("refused");
    return false;
  }
  // Backoff with jitter, so pages do not all return at once.
  retryMs = Math.min(MAX_RETRY_MS, Math.max(1000, retryMs * 2));
  retryTimer = setTimeout(
    () => {
      retryTimer = null;
      verifiedServer();
    },
    retryMs / 2 + Math.random() * (retryMs / 2),
  );
  emit("unreachable");
  return false;
}

/** One hello: "ok" (the proof is right), "refused" (401) or "unreachable". */
async function hello(token, name) {
  const nonce = hex(crypto.getRandomValues(new Uint8Array(32)));
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), HELLO_TIMEOUT_MS);
  let response;
  let data = null;
  try {
    response = await fetch(HELLO_PATH, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ name, nonce }),
      cache: "no-store",
      signal: controller.signal,
    });
    data = await response.json();
  } catch {
    if (!response) return "unreachable";
  } finally {
    clearTimeout(timer);
  }
  if (response.status === 401) return "refused";
  if (!response.ok || !data || typeof data.proof !== "string") return "unreachable";
  return data.proof === (await proof(token, nonce)) ? "ok" : "unreachable";
}

/** hex(HMAC-SHA256(key = SHA-256(token), msg = nonce)), as the server computes it. */
export async function proof(token, nonce) {
  const text = new TextEncoder();
  if (crypto.subtle) {
    const digest = await crypto.subtle.digest("SHA-256", text.encode(token));
    const key = await crypto.subtle.importKey(
      "raw",
      digest,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    return hex(new Uint8Array(await crypto.subtle.sign("HMAC", key, text.encode(nonce))));
  }
  // Plain HTTP to a LAN address is no secure context: no crypto.subtle there.
  return hex(hmacSha256(sha256(text.encode(token)), text.encode(nonce)));
}

/**
 * fetch() with the credential, sent only to a verified server; throws
 * TrustError rather than send it to one that is not. A request that could
 * not complete marks the server unverified.
 */
export async function authFetch(path, init = {}) {
  const token = getToken();
  const headers = { ...(init.headers || {}) };
  if (token) {
    if (!(await verifiedServer())) throw new TrustError(refused);
    headers.Authorization = `Bearer ${token}`;
  }
  try {
    return await fetch(path, { ...init, headers });
  } catch (err) {
    distrust();
    throw err;
  }
}

// -------------------------------------------- SHA-256 without WebCrypto

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// FIPS 180-4: the first 32 bits of the fractional parts of the cube roots
// of the first 64 primes, and of the square roots of the first 8.
const K = new Uint32Array(64);
const H0 = new Uint32Array(8);
(() => {
  const frac = (x) => ((x - Math.floor(x)) * 2 ** 32) >>> 0;
  let found = 0;
  for (let n = 2; found < 64; n += 1) {
    let prime = true;
    for (let d = 2; d * d <= n; d += 1) if (n % d === 0) prime = false;
    if (!prime) continue;
    if (found < 8) H0[found] = frac(Math.sqrt(n));
    K[found] = frac(Math.cbrt(n));
    found += 1;
  }
})();

function sha256(message) {
  const bits = message.length * 8;
  const padded = new Uint8Array(Math.ceil((message.length + 9) / 64) * 64);
  padded.set(message);
  padded[message.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bits / 2 ** 32));
  view.setUint32(padded.length - 4, bits >>> 0);
  const h = H0.slice();
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i += 1) w[i] = view.getUint32(block + i * 4);
    for (let i = 16; i < 64; i += 1) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i += 1) {
      const t1 =
        (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      [hh, g, f, e, d, c, b, a] = [g, f, e, (d + t1) >>> 0, c, b, a, (t1 + t2) >>> 0];
    }
    [a, b, c, d, e, f, g, hh].forEach((v, i) => (h[i] = h[i] + v));
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  h.forEach((v, i) => outView.setUint32(i * 4, v));
  return out;
}

/** RFC 2104 with a 32-byte key (shorter than SHA-256's 64-byte block). */
function hmacSha256(key, message) {
  const inner = new Uint8Array(64 + message.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i += 1) {
    inner[i] = (key[i] || 0) ^ 0x36;
    outer[i] = (key[i] || 0) ^ 0x5c;
  }
  inner.set(message, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

// For the page tests: the fallback must agree with WebCrypto and the server.
export const fallbackForTests = { sha256, hmacSha256, hex };
