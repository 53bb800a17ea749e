export { tollgate, type TollgateMiddleware } from './middleware.js';
export { TollgateOptionError } from './options.js';
export { expressServerClasses, type ServerClasses } from './server-classes.js';
export { defaultPricing } from './default-pricing.js';
export { costOf, loadPricing, parsePricing, PricingError, type ModelPrice, type PricingTable } from './pricing.js';
export type { OutcomeRecord, Provider, TollgateOptions } from './types.js';
export type { SigningKey } from './signing.js';
export type { Usage } from './usage/types.js';
export * from './semconv.js';
