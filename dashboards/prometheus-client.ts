/**
 * A minimal client of Prometheus's HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/):
 * instant and range queries, active alerts, scrape targets. Used by the dashboard renderer and by
 * the end-to-end tests' Prometheus harness.
 */

/** One series of an instant vector (value) or of a range matrix (values), as the API returns it. */
export interface Series {
  metric: Record<string, string>;
  /** [unix seconds, value as text]: Prometheus writes NaN and ±Inf as "NaN", "+Inf", "-Inf". */
  value?: [number, string];
  values?: Array<[number, string]>;
}

export interface ActiveAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  activeAt: string;
  value: string;
}

export interface ScrapeTargetHealth {
  job: string;
  url: string;
  /** "up", "down" or "unknown" (not scraped yet). */
  health: string;
  lastError: string;
}

export interface PrometheusClient {
  /** Base URL, e.g. http://127.0.0.1:9090. */
  url: string;
  /** Instant query evaluated at `time` (default: now). Throws on an API error. */
  query(expr: string, time?: Date): Promise<Series[]>;
  /** Range query from `start` to `end` every `stepSeconds`. Throws on an API error. */
  queryRange(expr: string, start: Date, end: Date, stepSeconds: number): Promise<Series[]>;
  /** The alerts currently pending or firing. */
  alerts(): Promise<ActiveAlert[]>;
  /** The active scrape targets and their health. */
  targets(): Promise<ScrapeTargetHealth[]>;
}

export function prometheusClient(baseUrl: string): PrometheusClient {
  const url = baseUrl.replace(/\/+$/, '');

  /** GET without params; POST (form-encoded) with them, since queries can be long. */
  async function api<T>(path: string, params?: Record<string, string>): Promise<T> {
    const res = await fetch(`${url}${path}`, {
      signal: AbortSignal.timeout(30_000),
      ...(params && {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(params),
      }),
    });
    const text = await res.text();
    let body: { status?: string; data?: T; errorType?: string; error?: string };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new Error(`prometheus ${path}: HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
    if (body.status !== 'success' || body.data === undefined) {
      throw new Error(`prometheus ${path} ${JSON.stringify(params ?? {})}: ${body.errorType}: ${body.error}`);
    }
    return body.data;
  }
  const seconds = (date: Date) => String(date.getTime() / 1000);

  return {
    url,
    query: async (expr, time) =>
      (await api<{ result: Series[] }>('/api/v1/query', { query: expr, ...(time && { time: seconds(time) }) })).result,
    queryRange: async (expr, start, end, stepSeconds) =>
      (
        await api<{ result: Series[] }>('/api/v1/query_range', {
          query: expr,
          start: seconds(start),
          end: seconds(end),
          step: String(stepSeconds),
        })
      ).result,
    alerts: async () => (await api<{ alerts: ActiveAlert[] }>('/api/v1/alerts')).alerts,
    targets: async () => {
      type Target = { labels: Record<string, string>; scrapeUrl: string; health: string; lastError: string };
      const data = await api<{ activeTargets: Target[] }>('/api/v1/targets?state=active');
      return data.activeTargets.map((t) => ({ job: t.labels.job ?? '', url: t.scrapeUrl, health: t.health, lastError: t.lastError }));
    },
  };
}
