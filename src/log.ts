/** Structured logs (pino) on stderr; LOG_LEVEL picks the level. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  const lvl = level === 'verbose' ? 'debug' : level === 'silent' ? 'silent' : level;
  return pino({ name, level: lvl, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
