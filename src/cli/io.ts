// What a command may touch: output streams, environment, working directory, stdin. Tests pass
// their own; bin/crucible.js passes the process's.

import type { EngineImpls } from './engines';

export interface CliIO {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Record<string, string | undefined>;
  cwd: string;
  stdin: NodeJS.ReadableStream;
  /** Whether stdin/stdout are a terminal (prompts, colours). */
  interactive: boolean;
  /** Aborts long-running commands (api, chat, train) like Ctrl-C does. */
  signal?: AbortSignal;
  /** Engine functions to use instead of loading the real modules (tests of the CLI layer). */
  engines?: Partial<EngineImpls>;
}

/** A failure with a message meant for the user: printed as one line, no stack trace. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export function processIO(): CliIO {
  return {
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    env: process.env,
    cwd: process.cwd(),
    stdin: process.stdin,
    interactive: Boolean(process.stdin.isTTY && process.stdout.isTTY),
  };
}

/**
 * An AbortSignal for Ctrl-C (SIGINT) / SIGTERM and io.signal. The first Ctrl-C aborts (the
 * command winds down); a second one exits at once with status 130.
 */
export function interruptSignal(io: CliIO, onFirst?: () => void): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  let count = 0;
  const onSignal = () => {
    count++;
    if (count === 1) {
      onFirst?.();
      ac.abort(new CliError('interrupted', 130));
    } else process.exit(130);
  };
  const onIo = () => ac.abort(io.signal!.reason);
  const hooked = io.signal === undefined;
  if (hooked) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  } else if (io.signal!.aborted) onIo();
  else io.signal!.addEventListener('abort', onIo, { once: true });
  return {
    signal: ac.signal,
    dispose() {
      if (hooked) {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      } else io.signal!.removeEventListener('abort', onIo);
    },
  };
}
