export type {
  ExtractionState,
  ExtractorFactory,
  ExtractorLimits,
  Terminal,
  Usage,
  UsageExtractor,
} from './types.js';
import { anthropicMessagesExtractor } from './anthropic-messages.js';
import { chatCompletionsExtractor } from './chat-completions.js';
import { responsesExtractor } from './responses.js';
import type { ExtractorFactory } from './types.js';

export { anthropicMessagesExtractor, chatCompletionsExtractor, responsesExtractor };

/** The provider APIs Tollgate meters, by the name the routing uses. */
export type UsageApi = 'responses' | 'chat_completions' | 'anthropic_messages';

export const extractors: Readonly<Record<UsageApi, ExtractorFactory>> = {
  responses: responsesExtractor,
  chat_completions: chatCompletionsExtractor,
  anthropic_messages: anthropicMessagesExtractor,
};
