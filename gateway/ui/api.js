// MOM dashboard: talking to the gateway. JSON requests with the user's token, and the
// session (token, user, role, expiry) kept in sessionStorage, so it ends with the tab.

const SESSION_KEY = "mom.session";

/** A refused or failed request: `status` is the HTTP status (0: the gateway did not answer). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Called when the gateway refuses the token (expired, revoked): the page shows the login. */
let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export function session() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    return saved && saved.expiresAt > Date.now() ? saved : null;
  } catch {
    return null;
  }
}

function saveSession(user, reply) {
  const saved = {
    user,
    role: reply.role,
    token: reply.token,
    expiresAt: Date.now() + reply.expires_in * 1000,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(saved));
  return saved;
}

export function forgetSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

/**
 * One request; resolves to `{status, data}` for a 2xx answer (or one listed in `accept`),
 * rejects with an ApiError otherwise.
 */
export async function request(method, path, body, { auth = true, accept = [] } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const current = session();
  if (auth && current) headers.Authorization = `Bearer ${current.token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, `the gateway does not answer (${e.message})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text };
    }
  }
  if (!response.ok && !accept.includes(response.status)) {
    if (response.status === 401 && auth) onUnauthorized();
    const why = (data && data.error) || response.statusText || "request failed";
    throw new ApiError(response.status, `${why} (${response.status})`);
  }
  return { status: response.status, data };
}

/** As `request`, resolving to the body only. */
export async function call(method, path, body, options) {
  return (await request(method, path, body, options)).data;
}

/** A path segment: names are plain, but never trust that. */
export const seg = encodeURIComponent;

export async function login(username, password) {
  const reply = await call("POST", "/auth/login", { username, password }, { auth: false });
  return saveSession(username, reply);
}

/** Creates the user (when registration is open), then logs in. */
export async function register(username, password) {
  await call("POST", "/auth/register", { username, password }, { auth: false });
  return login(username, password);
}

/** A fresh token for the current session, before the old one expires. */
export async function refresh() {
  const current = session();
  if (!current) return null;
  const reply = await call("POST", "/auth/refresh");
  return saveSession(current.user, reply);
}
