/**
 * Typed client for the serving REST API (docs/CONTRACT.md).
 *
 * It depends only on a `Transport`; the plugin passes one built on `ServerConnection.makeRequest`
 * (Jupyter's token or cookie + XSRF header), and unit tests pass a fake, so no JupyterLab module is
 * needed to test how URLs, bodies and errors are handled.
 */

import type {
  LiveVerdict,
  RolloutRequest,
  RolloutState,
  ShadowComparison,
  ShadowConfig
} from './delivery';
import { parseErrorBody } from './errors';
import type { History, InferenceTableView, ServingEvent } from './history';
import type { OpenApiDoc } from './playground';
import { StreamResult, streamQuery } from './stream';
import type { ConfigInput, CreateRequest, Endpoint, QueryResult, RegisteredModel } from './types';

/** Sends a request to a path relative to the server's base URL. */
export type Transport = (path: string, init: RequestInit) => Promise<Response>;

const API = 'api/2.0/serving-endpoints';

export class ServingClient {
  constructor(
    private readonly transport: Transport,
    private readonly now: () => number = () => Date.now()
  ) {}

  async listEndpoints(): Promise<Endpoint[]> {
    const body = await this.json<{ endpoints?: Endpoint[] }>(API, { method: 'GET' });
    return body.endpoints ?? [];
  }

  getEndpoint(name: string): Promise<Endpoint> {
    return this.json<Endpoint>(endpointPath(name), { method: 'GET' });
  }

  /**
   * The list answers summaries; the panel shows replicas, routes and tables, which only the full
   * endpoint carries, so each one is fetched. An endpoint deleted in between is just left out.
   */
  async listEndpointDetails(): Promise<Endpoint[]> {
    const summaries = await this.listEndpoints();
    const details = await Promise.all(
      summaries.map(s =>
        this.getEndpoint(s.name).catch(err => {
          if (err?.status === 404) {
            return null;
          }
          throw err;
        })
      )
    );
    return details.filter((e): e is Endpoint => e !== null);
  }

  createEndpoint(request: CreateRequest): Promise<Endpoint> {
    return this.json<Endpoint>(API, { method: 'POST', body: JSON.stringify(request) });
  }

  updateConfig(name: string, config: ConfigInput): Promise<Endpoint> {
    return this.json<Endpoint>(`${endpointPath(name)}/config`, {
      method: 'PUT',
      body: JSON.stringify(config)
    });
  }

  cancelUpdate(name: string): Promise<Endpoint> {
    return this.json<Endpoint>(`${endpointPath(name)}/cancel-update`, { method: 'POST' });
  }

  async deleteEndpoint(name: string): Promise<void> {
    await this.json<unknown>(endpointPath(name), { method: 'DELETE' });
  }

  async logs(name: string, served: string): Promise<string> {
    const path = `${endpointPath(name)}/served-models/${encodeURIComponent(served)}/logs`;
    const body = await this.json<{ logs?: string }>(path, { method: 'GET' });
    return body.logs ?? '';
  }

  /** The metrics history sampled after `sinceMs` (all of it for 0). */
  history(name: string, sinceMs = 0): Promise<History> {
    return this.json<History>(`${observePath(name)}/history?since_ms=${sinceMs}`, {
      method: 'GET'
    });
  }

  async events(name: string, sinceMs = 0): Promise<ServingEvent[]> {
    const path = `${observePath(name)}/events?since_ms=${sinceMs}`;
    const body = await this.json<{ events?: ServingEvent[] }>(path, { method: 'GET' });
    return body.events ?? [];
  }

  /** The latest rows and the A/B comparison, against `control` (default: most traffic). */
  inferenceTable(name: string, limit = 50, control?: string): Promise<InferenceTableView> {
    const choice = control ? `&control=${encodeURIComponent(control)}` : '';
    const path = `${observePath(name)}/inference-table?limit=${limit}${choice}`;
    return this.json<InferenceTableView>(path, { method: 'GET' });
  }

  /** The endpoint's rollout (running or ended), or null when it never had one. */
  async rollout(name: string): Promise<RolloutState | null> {
    try {
      return await this.json<RolloutState>(`${observePath(name)}/rollout`, { method: 'GET' });
    } catch (err) {
      if ((err as { status?: number })?.status === 404) {
        return null;
      }
      throw err;
    }
  }

  startRollout(name: string, request: RolloutRequest): Promise<RolloutState> {
    return this.json<RolloutState>(`${observePath(name)}/rollout`, {
      method: 'PUT',
      body: JSON.stringify(request)
    });
  }

  /** Pause, resume or cancel the running rollout. */
  rolloutAction(name: string, action: 'pause' | 'resume' | 'cancel'): Promise<RolloutState> {
    return this.json<RolloutState>(`${observePath(name)}/rollout/${action}`, { method: 'POST' });
  }

  /** The shadow config, the mirror's counters and live vs shadow on the same requests. */
  shadowComparison(name: string): Promise<ShadowComparison> {
    return this.json<ShadowComparison>(`${observePath(name)}/shadow/comparison`, { method: 'GET' });
  }

  putShadow(name: string, config: ShadowConfig): Promise<ShadowConfig> {
    return this.json<ShadowConfig>(`${observePath(name)}/shadow`, {
      method: 'PUT',
      body: JSON.stringify(config)
    });
  }

  async deleteShadow(name: string): Promise<void> {
    await this.json<unknown>(`${observePath(name)}/shadow`, { method: 'DELETE' });
  }

  /** The live A/B verdict (the rollout guard's always-valid method), against `control`. */
  verdict(name: string, control?: string): Promise<LiveVerdict> {
    const choice = control ? `?control=${encodeURIComponent(control)}` : '';
    return this.json<LiveVerdict>(`${observePath(name)}/verdict${choice}`, { method: 'GET' });
  }

  /** The endpoint's OpenAPI document (one path per served entity, from the model signatures). */
  openapi(name: string): Promise<OpenApiDoc> {
    return this.json<OpenApiDoc>(`${endpointPath(name)}/openapi`, { method: 'GET' });
  }

  async registeredModels(): Promise<RegisteredModel[]> {
    const body = await this.json<{ registered_models?: RegisteredModel[] }>(
      'api/2.0/jupyter-serving/registered-models',
      { method: 'GET' }
    );
    return body.registered_models ?? [];
  }

  /**
   * Query the endpoint (or one served entity, bypassing the split). Non-2xx answers are results,
   * not exceptions: the playground shows the server's error body as the response.
   */
  async query(name: string, body: string, served?: string): Promise<QueryResult> {
    const path = invocationsPath(name, served);
    const started = this.now();
    const response = await this.transport(path, {
      method: 'POST',
      body,
      headers: { 'Content-Type': 'application/json' }
    });
    const text = await response.text();
    return {
      status: response.status,
      ok: response.ok,
      body: text,
      servedModelName: response.headers.get('served-model-name'),
      requestId: response.headers.get('x-request-id'),
      elapsedMs: this.now() - started
    };
  }

  /**
   * Query with `"stream": true`, handing each chunk's text to `onText` as it arrives (stream.ts);
   * `signal` stops it. Resolves with how the stream ended.
   */
  queryStream(
    name: string,
    body: string,
    onText: (text: string) => void,
    served?: string,
    signal?: AbortSignal
  ): Promise<StreamResult> {
    return streamQuery(
      this.transport,
      invocationsPath(name, served),
      body,
      onText,
      signal,
      this.now
    );
  }

  private async json<T>(path: string, init: RequestInit): Promise<T> {
    const headers = init.body ? { 'Content-Type': 'application/json' } : undefined;
    const response = await this.transport(path, { ...init, headers });
    const text = await response.text();
    if (!response.ok) {
      throw parseErrorBody(response.status, response.statusText, text);
    }
    return (text ? JSON.parse(text) : {}) as T;
  }
}

function observePath(name: string): string {
  return `api/2.0/jupyter-serving/endpoints/${encodeURIComponent(name)}`;
}

/** The endpoint's invocations URL, or one served entity's (bypassing the traffic split). */
function invocationsPath(name: string, served?: string): string {
  const base = `serving-endpoints/${encodeURIComponent(name)}`;
  return served
    ? `${base}/served-models/${encodeURIComponent(served)}/invocations`
    : `${base}/invocations`;
}

function endpointPath(name: string): string {
  return `${API}/${encodeURIComponent(name)}`;
}
