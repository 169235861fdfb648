/**
 * How the property tests (fast-check) run. By default a modest, fixed number of runs per property
 * from a fresh seed, so the unit project stays fast and every run explores new cases. A failure
 * prints its seed and path; `FC_SEED=<seed> FC_PATH=<path>` replays exactly that case, and
 * `FC_NUM_RUNS=<n>` runs every property n times instead (for a longer search by hand).
 */
import type { Parameters } from 'fast-check';

function envNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value)) throw new Error(`${name} must be an integer, got ${raw}`);
  return value;
}

/** fast-check parameters for a property that runs `numRuns` times unless the environment says otherwise. */
export function runs<T>(numRuns: number): Parameters<T> {
  const seed = envNumber('FC_SEED');
  const path = process.env.FC_PATH;
  return {
    numRuns: envNumber('FC_NUM_RUNS') ?? numRuns,
    ...(seed === undefined ? {} : { seed }),
    ...(seed !== undefined && path ? { path } : {}),
  };
}
