// `crucible api <config.yaml>`: the OpenAI-compatible server, as `llamafactory-cli api`.
// API_HOST (127.0.0.1), API_PORT (8000), API_KEY, API_MODEL_NAME from the environment;
// --host / --port override them.

import { apiOptionsFromEnv, startApiServer } from '../server/http';
import { commandConfig, flagString, type CommandDef } from './args';
import { generationDefaults } from './chat';
import { loadEngine } from './engines';
import { CliError, interruptSignal } from './io';
import { keysHelp } from './keys';

export const apiCommand: CommandDef = {
  name: 'api',
  summary: 'Serve a model over an OpenAI-compatible HTTP API',
  usage: '<config.yaml> [key=value ...] [--host HOST] [--port PORT]',
  details: [
    'Endpoints: GET /v1/models, POST /v1/chat/completions (stream or not), GET /health.',
    'Environment: API_HOST (default 127.0.0.1), API_PORT (default 8000), API_KEY (bearer key, optional),',
    'API_MODEL_NAME (an extra model id to accept, as LLaMA-Factory).',
    'Requests are served first come, first served, one generation at a time; a client that disconnects',
    'aborts its generation. Sampling defaults come from the config (temperature, top_p, max_new_tokens ...).',
  ],
  flags: [
    { name: 'host', value: 'string', placeholder: 'HOST', help: 'listen address (default $API_HOST or 127.0.0.1)' },
    { name: 'port', value: 'int', placeholder: 'PORT', help: 'port (default $API_PORT or 8000)' },
    { name: 'keys', help: 'list the config keys the server reads, with defaults' },
  ],
  config: true,
  async run(args, io) {
    if (args.flags.keys) {
      io.stdout(keysHelp('api'));
      return 0;
    }
    const config = await commandConfig(args, io, 'api');
    let env: ReturnType<typeof apiOptionsFromEnv>;
    try {
      env = apiOptionsFromEnv(io.env);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    const port = flagString(args, 'port');
    const createChatBackend = await loadEngine('createChatBackend', 'api', io);
    const backend = await createChatBackend(config, { onStatus: (m) => io.stderr(`${m}\n`), signal: io.signal });
    const stop = interruptSignal(io);
    try {
      let server;
      try {
        server = await startApiServer(backend, {
          ...env,
          host: flagString(args, 'host') ?? env.host,
          port: port !== undefined ? Number(port) : env.port,
          defaults: generationDefaults(config),
          log: (line) => io.stderr(`${line}\n`),
          env: io.env,
        });
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === 'EADDRINUSE') throw new CliError(`port ${port ?? env.port} is already in use (set API_PORT or --port)`);
        throw e;
      }
      const models = backend.models().join(', ');
      io.stderr(`Crucible API on ${server.url} (model ${models}${env.apiKey ? ', API key required' : ''}); Ctrl-C to stop\n`);
      await new Promise<void>((resolve) => {
        if (stop.signal.aborted) resolve();
        else stop.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      io.stderr('shutting down\n');
      await server.close();
      return 0;
    } finally {
      stop.dispose();
      await backend.close?.();
    }
  },
};
