// The admin API client: the bearer token from localStorage, JSON in and out, errors as { status, code, message }.
const TOKEN_KEY = 'footprint.admin_token';

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY) || '',
  set: (t) => localStorage.setItem(TOKEN_KEY, t),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

export async function get(path, params) {
  const qs = params ? '?' + new URLSearchParams(params).toString() : '';
  let res;
  try {
    res = await fetch(`/admin/v1${path}${qs}`, { headers: { Authorization: `Bearer ${token.get()}` } });
  } catch (e) {
    throw new ApiError(0, 'network', 'The collector cannot be reached.');
  }
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    /* not JSON */
  }
  if (!res.ok) throw new ApiError(res.status, body?.code || 'http_' + res.status, body?.message || res.statusText);
  return body;
}
