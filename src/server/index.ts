// OpenAI-compatible HTTP API (node:http) over a ChatBackend.
export * from '../engine/chat-backend';
export { startApiServer, apiOptionsFromEnv, type ApiServer, type ApiServerOptions } from './http';
export { ApiError, parseChatRequest, FALLBACK_DEFAULTS, type RequestDefaults } from './protocol';
export { FairQueue, QueueFullError } from './queue';
export { StopMatcher } from './stop';
