// The API docs: Swagger UI over /openapi.json, which needs the viewer scope.
// The credential the GO page keeps goes out only through trust.js: the
// server proves itself (POST /core/auth/hello) before each request that
// carries it, so a program that took the port while the server was down
// gets nothing.
import { authFetch, getToken, TrustError, verifiedServer } from "./trust.js";

const message = document.getElementById("docs-message");
const SIGN_IN =
  "The API description needs you signed in: sign in on the GO page (/), then reload.";
const UNVERIFIED =
  "Can't reach the server you signed in to: the API description was not loaded, and " +
  "your sign-in was not sent. Reload to try again.";

/** Swagger UI's "Try it out": the credential only to a server proven just now. */
async function withToken(request) {
  const token = getToken();
  if (token && !request.headers.Authorization) {
    if (!(await verifiedServer({ fresh: true }))) throw new Error(UNVERIFIED);
    request.headers.Authorization = `Bearer ${token}`;
  }
  return request;
}

async function start() {
  let resp;
  try {
    resp = await authFetch("/openapi.json", { cache: "no-store" });
  } catch (err) {
    if (!(err instanceof TrustError)) message.textContent = `Cannot reach the server (${err}).`;
    else message.textContent = err.refused ? SIGN_IN : UNVERIFIED;
    return;
  }
  if (resp.status === 401) {
    message.textContent = SIGN_IN;
    return;
  }
  if (!resp.ok) {
    message.textContent = `The API description could not be loaded (HTTP ${resp.status}).`;
    return;
  }
  window.SwaggerUIBundle({
    spec: await resp.json(),
    dom_id: "#swagger-ui",
    requestInterceptor: withToken,
  });
}

start().catch((err) => {
  message.textContent = `The API description could not be loaded: ${err}`;
});
