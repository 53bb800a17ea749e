/**
 * Where the dashboards' data comes from, written down once: the Prometheus scrape jobs, the
 * OpenTelemetry Collector's own metrics, and the Grafana datasource plugins and variables.
 *
 * Tollgate's own metric names and label values are NOT here: they live in plugin/semconv.ts,
 * and the dashboards and rules are checked against it (test/dashboards/).
 */

/**
 * Prometheus `job` labels the dashboards and alert rules assume. Name your scrape jobs like this
 * (or relabel to these values): the `up{job=…}` panels and the TollgateSettlementDown alert in
 * alerts.yaml select on them.
 *
 * - gateway: every replica of the Express app serving `tollgate()` metrics on /metrics.
 * - settlement: every settlement processor replica. In the embedded default it is the gateway's
 *   own process: scrape that /metrics twice and relabel — keep only the settlement metrics
 *   (tollgate_settle*, tollgate_released_credits_total, tollgate_overrun_credits_total,
 *   tollgate_open_reservations: collector/metrics.ts) under this job and drop them from the
 *   gateway job. Scraping it unchanged under both jobs would double every sum() without a job filter.
 * - collector: the OpenTelemetry Collector's internal telemetry (port 8888 by default); optional,
 *   the Collector panels stay empty without it.
 */
export const SCRAPE_JOBS = {
  gateway: 'tollgate-gateway',
  settlement: 'tollgate-settlement',
  collector: 'otel-collector',
} as const;

/**
 * The Collector's internal metrics the dashboards and alerts use (all labelled `exporter`), as
 * /otel-collector.yaml exposes them: `without_type_suffix: true`, so counters have no `_total`.
 * https://opentelemetry.io/docs/collector/internal-telemetry/#lists-of-internal-metrics
 */
export const COLLECTOR_METRICS = {
  /** Items waiting in an exporter's sending_queue (spans: the billing queue uses sizer: items). */
  queueSize: 'otelcol_exporter_queue_size',
  /** The sending_queue's capacity, same unit as queueSize. */
  queueCapacity: 'otelcol_exporter_queue_capacity',
  /**
   * Spans the exporter dropped: the billing exporter retries forever on retryable errors, so
   * these are permanent failures (e.g. a 401 from a wrong settlement token).
   */
  sendFailedSpans: 'otelcol_exporter_send_failed_spans',
  /** Spans a full sending_queue refused (the gateways' exporters retry them). */
  enqueueFailedSpans: 'otelcol_exporter_enqueue_failed_spans',
} as const;

/** The Collector exporter that delivers billing spans to settlement (/otel-collector.yaml). */
export const BILLING_EXPORTER = 'otlp_http/settlement';

/** Grafana datasource plugin ids (Grafana ≥ 10.3 names the PostgreSQL plugin like this). */
export const DATASOURCE_TYPES = {
  prometheus: 'prometheus',
  postgres: 'grafana-postgresql-datasource',
} as const;

/**
 * Dashboard variable names that pick the datasource. Panels reference `${name}` as the
 * datasource uid, so no uid of any one Grafana instance is hard-coded.
 */
export const DATASOURCE_VARIABLES = {
  prometheus: 'datasource',
  ledger: 'ledger',
} as const;
