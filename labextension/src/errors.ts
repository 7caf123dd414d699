/**
 * One error type for every failed call to the serving API, carrying the Databricks `error_code`.
 *
 * The serving handlers answer `{"error_code", "message"}`; Jupyter's own handlers (auth, 404 of an
 * unknown route) answer `{"message", "reason"}` or HTML. All become a `ServingApiError` here, so the
 * UI has one thing to display.
 */

export class ServingApiError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string
  ) {
    super(message);
    this.name = 'ServingApiError';
  }

  /** The route does not exist on this server (e.g. an older server without the feature). */
  get isMissingRoute(): boolean {
    return this.status === 404 && this.errorCode !== 'RESOURCE_DOES_NOT_EXIST';
  }
}

export function parseErrorBody(status: number, statusText: string, body: string): ServingApiError {
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(body);
  } catch {
    // Not JSON (a proxy's HTML page, an empty body): fall back to the HTTP status line.
  }
  if (parsed && typeof parsed === 'object') {
    const obj = parsed as Record<string, unknown>;
    const code = typeof obj.error_code === 'string' ? obj.error_code : `HTTP_${status}`;
    const message =
      (typeof obj.message === 'string' && obj.message) ||
      (typeof obj.reason === 'string' && obj.reason) ||
      statusText ||
      `HTTP ${status}`;
    return new ServingApiError(status, code, message);
  }
  const text = body.trim() && body.length < 300 && !body.includes('<') ? body.trim() : '';
  return new ServingApiError(status, `HTTP_${status}`, text || statusText || `HTTP ${status}`);
}

/** A message for any thrown value, for places that just show what went wrong. */
export function errorMessage(err: unknown): string {
  if (err instanceof ServingApiError) {
    return err.errorCode.startsWith('HTTP_') ? err.message : `${err.errorCode}: ${err.message}`;
  }
  return err instanceof Error ? err.message : String(err);
}
