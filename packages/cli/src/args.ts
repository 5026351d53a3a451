import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './output.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses a command's arguments; a wrong flag is a UsageError (exit 2). */
export function parse<O extends Options>(argv: string[], options: O, positionals = 0) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, debug: { type: 'boolean' } }, allowPositionals: positionals > 0, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]);
  }
  if (parsed.positionals.length > positionals) {
    throw new UsageError(`unexpected argument: ${parsed.positionals[positionals]}`);
  }
  return parsed as { values: { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string } & { debug?: boolean }; positionals: string[] };
}

/** Parses a whole number flag within bounds, or throws a UsageError naming it. */
export function intFlag(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`);
  return n;
}

/**
 * Parses a point in time: `YYYY-MM-DD[ HH:MM[:SS]]` in this machine's time
 * zone, or an ISO 8601 date-time with its offset (`…Z`, `…+01:00`).
 */
export function timeFlag(name: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const local = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(value.trim());
  let d: Date;
  if (local) {
    const [y, mo, day, h, mi, s] = local.slice(1).map((x) => Number(x ?? 0));
    d = new Date(y, mo - 1, day, h, mi, s);
    if (d.getFullYear() !== y || d.getMonth() !== mo - 1 || d.getDate() !== day || h > 23 || mi > 59 || s > 59) d = new Date(NaN);
  } else {
    d = /(Z|[+-]\d{2}:?\d{2})$/i.test(value.trim()) ? new Date(value.trim()) : new Date(NaN);
  }
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${name} must be a date and time, like "2026-12-01 14:00" (local time) or 2026-12-01T14:00:00Z`);
  return d;
}
