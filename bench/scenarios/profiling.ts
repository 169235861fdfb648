/** Profiles the relay over a window when the run asked for it (--profile), and keeps the summary. */
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { BenchRelay } from '../env/bench-relay.js';
import { summariseProfile } from '../report/cpu-profile.js';
import type { BenchContext } from './context.js';

export interface WindowProfile {
  /** Stops the profiler, writes the profile and adds its summary to the run. Never throws. */
  stop(): Promise<void>;
}

const NONE: WindowProfile = { stop: async () => undefined };

export async function profileWindow(ctx: BenchContext, relay: BenchRelay | undefined, label: string): Promise<WindowProfile> {
  const dir = ctx.profileDir;
  if (!dir || !relay) return NONE;
  try {
    await relay.startProfile();
  } catch (error) {
    ctx.log(`could not start the profiler: ${(error as Error).message}`);
    return NONE;
  }
  return {
    async stop() {
      try {
        mkdirSync(dir, { recursive: true });
        const file = join(dir, `${label.replace(/[^A-Za-z0-9.-]+/g, '-')}.cpuprofile`);
        await relay.stopProfile(file);
        ctx.profiles.push(summariseProfile(file, label));
      } catch (error) {
        ctx.log(`could not write the profile: ${(error as Error).message}`);
      }
    },
  };
}
