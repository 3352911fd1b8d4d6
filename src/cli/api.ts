// `crucible api <config.yaml>`: the OpenAI-compatible server, as `llamafactory-cli api`.
// API_HOST (127.0.0.1), API_PORT (8000), API_KEY, API_MODEL_NAME from the environment;
// --host / --port / --api-key override them. Web pages get no access unless --cors-origin
// allows theirs.

import { isLoopback } from '../server/access';
import { apiOptionsFromEnv, startApiServer } from '../server/http';
import { commandConfig, flagList, flagString, type CommandDef } from './args';
import { contextNotice, generationDefaults } from './chat';
import { loadEngine } from './engines';
import { CliError, interruptSignal } from './io';
import { keysHelp } from './keys';

export const apiCommand: CommandDef = {
  name: 'api',
  summary: 'Serve a model over an OpenAI-compatible HTTP API',
  usage: '<config.yaml> [key=value ...] [--host HOST] [--port PORT] [--api-key KEY] [--cors-origin ORIGIN] [--allowed-host NAME]',
  details: [
    'Endpoints: GET /v1/models, POST /v1/chat/completions (stream or not), GET /health.',
    'Environment: API_HOST (default 127.0.0.1), API_PORT (default 8000), API_KEY (bearer key, optional),',
    'API_MODEL_NAME (an extra model id to accept, as LLaMA-Factory).',
    'Requests are served first come, first served, one generation at a time; a client that disconnects',
    'aborts its generation. Sampling defaults come from the config (temperature, top_p, max_new_tokens ...);',
    "an answer also ends where the model's context does.",
    'Web pages cannot call the API unless their origin is allowed (--cors-origin), and requests must name',
    'this server in their Host header (localhost, an IP address, the machine name or an --allowed-host).',
  ],
  flags: [
    { name: 'host', value: 'string', placeholder: 'HOST', help: 'listen address (default $API_HOST or 127.0.0.1)' },
    { name: 'port', value: 'int', placeholder: 'PORT', help: 'port (default $API_PORT or 8000)' },
    { name: 'api-key', value: 'string', placeholder: 'KEY', help: 'require this bearer key on /v1 routes (default $API_KEY)' },
    { name: 'cors-origin', value: 'string', placeholder: 'ORIGIN', repeatable: true, help: "let web pages of this origin call the API (repeat or comma-separate; '*' for any)" },
    { name: 'allowed-host', value: 'string', placeholder: 'NAME', repeatable: true, help: "accept this name in the Host header (repeat or comma-separate; '*' for any)" },
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
    const apiKey = flagString(args, 'api-key') || env.apiKey;
    const createChatBackend = await loadEngine('createChatBackend', 'api', io);
    const backend = await createChatBackend(config, { onStatus: (m) => io.stderr(`${m}\n`), signal: io.signal });
    const notice = contextNotice(config, backend);
    if (notice) io.stderr(`${notice}\n`);
    const stop = interruptSignal(io);
    try {
      let server;
      try {
        server = await startApiServer(backend, {
          ...env,
          host: flagString(args, 'host') ?? env.host,
          port: port !== undefined ? Number(port) : env.port,
          apiKey,
          corsOrigins: flagList(args, 'cors-origin'),
          allowedHosts: flagList(args, 'allowed-host'),
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
      io.stderr(`Crucible API on ${server.url} (model ${models}${apiKey ? ', API key required' : ''}); Ctrl-C to stop\n`);
      if (!apiKey && !isLoopback(server.host)) {
        io.stderr(`warning: listening on ${server.host} without an API key: anyone who can reach this machine can use the model; set --api-key or API_KEY\n`);
      }
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
