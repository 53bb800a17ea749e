export { createSettlementHandler, createSettlementServer } from './server.js';
export { startSweeper, type Sweeper } from './sweeper.js';
export { settlementMetrics, type SettlementMetrics } from './metrics.js';
export {
  SettlementOptionError,
  type SettlementServerOptions,
  type SweeperOptions,
} from './options.js';
export { pricingCatalogue, toSettlement, type PricingCatalogue, type SpanVerdict } from './records.js';
export {
  decodeExportRequest,
  encodeExportResponse,
  encodingOf,
  type DecodeResult,
  type OtlpEncoding,
  type OtlpSpan,
} from './otlp.js';
