/**
 * Reading settings from environment variables: the parsers the configuration modules share.
 * Every failure is a RelayError (RELAY_ERR_CONFIG) whose message starts with the variable's name.
 */
import { z } from 'zod';
import { ErrorCode, RelayError } from './errors.js';

export type Env = Readonly<Record<string, string | undefined>>;

export function fail(variable: string, message: string): never {
  throw new RelayError(ErrorCode.config, `${variable}: ${message}`);
}

export function read<T>(env: Env, variable: string, schema: z.ZodType<T>, fallback: T): T {
  const raw = env[variable];
  if (raw === undefined || raw.trim() === '') return fallback;
  const parsed = schema.safeParse(raw.trim());
  if (!parsed.success) fail(variable, parsed.error.issues[0]?.message ?? 'invalid value');
  return parsed.data;
}

export const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce
    .number({ message: 'must be a whole number' })
    .int('must be a whole number')
    .min(min, `must be >= ${min}`)
    .max(max, `must be <= ${max}`);
/** Seconds, as a whole number or a whole number with a unit: `90`, `90s`, `30m`, `24h`, `7d`. */
export const duration = (maxS: number) =>
  z
    .string()
    .regex(/^\d+(s|m|h|d)?$/, 'must be seconds or a duration like 30m, 24h, 7d')
    .transform((value) => {
      const unit = value.at(-1) ?? '';
      const scale = { s: 1, m: 60, h: 3_600, d: 86_400 }[unit] ?? 1;
      return Number.parseInt(value, 10) * scale;
    })
    .refine((seconds) => seconds <= maxS, `must be at most ${maxS} seconds`);
export const onOff = z
  .enum(['0', '1', 'true', 'false'], { message: 'must be 1 or 0 (true or false)' })
  .transform((value) => value === '1' || value === 'true');
export const list = z.string().transform((value) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0),
);
