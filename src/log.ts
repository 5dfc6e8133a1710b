import { pino, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * JSON logs on stderr with stable field names (service, cluster, chain,
 * durationMs). Credentials never reach a log line: the kube client's config is
 * never logged, and these paths are redacted should an object carry them.
 */
export function createLogger(level: LogLevel = 'info', destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino(
    {
      level,
      base: { component: 'clusterset-proxy' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['token', '*.token', 'authorization', '*.authorization', 'password', '*.password'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/** A logger that drops everything, for pure unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** An error's message for a log field or a status line. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
