// Talking to the Valhalla GO API: fetch, the stored token, readable errors.

import { authFetch, distrust, getToken, TrustError } from "./trust.js";

// The credential and the door it goes out through live in trust.js.
export { clearToken, getToken, getTokenName, setToken, setTokenName } from "./trust.js";

// The elapsed timer counts from the server's start time. When the browser's
// clock is far off the server's, follow the server (its Date header has a
// one-second resolution, so small differences are ignored).
let clockOffsetMs = 0;

function observeServerDate(header) {
  const serverMs = header ? Date.parse(header) : NaN;
  if (Number.isNaN(serverMs)) return;
  const offset = serverMs - Date.now();
  clockOffsetMs = Math.abs(offset) > 5000 ? offset : 0;
}

export function serverNow() {
  return Date.now() + clockOffsetMs;
}

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the server could not be reached
   * @param {string} message readable text for the operator
   * @param {{detail?: string, body?: any, retryAfter?: number|null, sentToken?: string}} extra
   *   sentToken: the token the request carried ("" for none)
   */
  constructor(
    status,
    message,
    { detail = "", body = null, retryAfter = null, sentToken = "" } = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.body = body;
    this.retryAfter = retryAfter;
    this.sentToken = sentToken;
  }

  get needsToken() {
    return this.status === 401;
  }
}

/** FastAPI's `detail` is a string, or a list of validation errors (422). */
export function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        if (!item || typeof item !== "object") return String(item);
        // loc looks like ["body", "reason"]; "body" says nothing to a person.
        const where = Array.isArray(item.loc) ? item.loc.filter((p) => p !== "body").join(".") : "";
        return where ? `${where}: ${item.msg}` : String(item.msg ?? "");
      })
      .join("; ");
  }
  if (detail && typeof detail === "object") return JSON.stringify(detail);
  return "";
}

/** Retry-After is seconds, or (rarely) an HTTP date. */
function parseRetryAfter(header) {
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, Math.round(seconds));
  const when = Date.parse(header);
  return Number.isNaN(when) ? null : Math.max(0, Math.round((when - Date.now()) / 1000));
}

function readableError(status, detail) {
  const said = detail ? `: ${detail}` : "";
  switch (status) {
    case 401:
      return `The server asks for an API token${said}`;
    case 403:
      return `Not allowed${said}`;
    case 404:
      return `Not found${said}`;
    case 409:
      return `Conflict${said}`;
    case 422:
      return `The server did not accept the input${said}`;
    case 429:
      return `Too many requests${said}`;
    case 503:
      return `The service is unavailable${said}`;
    default:
      if (status >= 500) return `The server had an error (HTTP ${status})${said}`;
      return `The request failed (HTTP ${status})${said}`;
  }
}

/**
 * Call the API and return the parsed JSON body; throw ApiError otherwise.
 * @param {string} method
 * @param {string} path
 * @param {object} [body] sent as JSON
 * @param {{auth?: boolean}} [options] as apiResponse's
 */
export async function api(method, path, body, options) {
  return (await apiResponse(method, path, body, options)).data;
}

export const UNVERIFIED_TEXT =
  "Can't reach the server you signed in to. The page checks again by itself, and sends " +
  "your sign-in nowhere else meanwhile.";

/**
 * As api(), with the answer's headers too: `{ data, headers }`.
 * @param {string} method
 * @param {string} path
 * @param {object} [body] sent as JSON
 * @param {{auth?: boolean}} [options] auth false: send no credential (the sign-in)
 */
export async function apiResponse(method, path, body, { auth = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = auth ? getToken() : "";
  const send = auth ? authFetch : (where, init) => fetch(where, init);

  let response;
  let text;
  try {
    response = await send(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    text = await response.text();
  } catch (err) {
    if (err instanceof TrustError) {
      if (err.refused) throw new ApiError(401, readableError(401, ""), { sentToken: token });
      throw new ApiError(0, UNVERIFIED_TEXT, { sentToken: token });
    }
    distrust(); // cut before or during the answer
    const said = "Cannot reach the server. Check the connection; the page keeps retrying.";
    throw new ApiError(0, said, { sentToken: token });
  }
  observeServerDate(response.headers.get("Date"));

  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null; // a proxy's HTML error page, for instance
    }
  }
  // Not what this server answers (an error page, a body that is not JSON):
  // whatever answered must prove itself before the credential goes again.
  if (response.status >= 500 || (text && data === null)) distrust();
  if (response.ok) return { data, headers: response.headers };

  const detail = detailText(data && typeof data === "object" ? data.detail : "");
  throw new ApiError(response.status, readableError(response.status, detail), {
    detail,
    body: data,
    retryAfter: parseRetryAfter(response.headers.get("Retry-After")),
    sentToken: token,
  });
}
