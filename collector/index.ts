export { createSettlementHandler, createSettlementServer } from './server.js';
export { startSweeper, type Sweeper } from './sweeper.js';
export { settlementMetrics, type SettlementMetrics } from './metrics.js';
export { SettlementOptionError, type SettlementServerOptions, type SweeperOptions } from './options.js';
