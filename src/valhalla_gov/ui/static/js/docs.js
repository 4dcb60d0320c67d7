// The API docs: Swagger UI over /openapi.json, which needs the viewer scope.
// The credential the GO page keeps is sent with every request.
import { getToken } from "./api.js";

function withToken(request) {
  const token = getToken();
  if (token && !request.headers.Authorization) {
    request.headers.Authorization = `Bearer ${token}`;
  }
  return request;
}

const message = document.getElementById("docs-message");

async function start() {
  const headers = {};
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch("/openapi.json", { headers });
  if (resp.status === 401) {
    message.textContent =
      "The API description needs you signed in: sign in on the GO page (/), then reload.";
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
