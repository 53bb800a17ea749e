/**
 * The metered LLM APIs: which upstream serves each path, where a request states its output
 * limit, and how a response's usage is read.
 */
import { extractors } from './usage/index.js';
import type { ExtractorFactory } from './usage/types.js';
import type { Provider } from './types.js';

export interface Route {
  provider: Provider;
  /** gen_ai.operation.name: all three APIs generate a chat response. */
  operation: 'chat';
  extractor: ExtractorFactory;
  /** Request fields that cap the output tokens, in the order the API documents them. */
  maxOutputFields: readonly string[];
  /** The request field asking for several choices, each written up to the output limit (Chat Completions' `n`). */
  choicesField?: string;
  /** Chat Completions alone can be asked to report usage in a stream (stream_options.include_usage). */
  streamUsageOption: boolean;
}

const ROUTES: ReadonlyMap<string, Route> = new Map([
  // https://platform.openai.com/docs/api-reference/responses/create
  [
    '/v1/responses',
    {
      provider: 'openai',
      operation: 'chat',
      extractor: extractors.responses,
      maxOutputFields: ['max_output_tokens'],
      streamUsageOption: false,
    },
  ],
  // https://platform.openai.com/docs/api-reference/chat/create (max_tokens is the deprecated name)
  [
    '/v1/chat/completions',
    {
      provider: 'openai',
      operation: 'chat',
      extractor: extractors.chat_completions,
      maxOutputFields: ['max_completion_tokens', 'max_tokens'],
      choicesField: 'n',
      streamUsageOption: true,
    },
  ],
  // https://docs.anthropic.com/en/api/messages (max_tokens is required there)
  [
    '/v1/messages',
    {
      provider: 'anthropic',
      operation: 'chat',
      extractor: extractors.anthropic_messages,
      maxOutputFields: ['max_tokens'],
      streamUsageOption: false,
    },
  ],
]);

/** The route for a request path (query excluded), or undefined when the path is not metered. */
export function routeFor(path: string): Route | undefined {
  // A trailing slash is the same endpoint for the providers.
  return ROUTES.get(path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path);
}
