/**
 * CPU priority of the processes on the measured path. The machine is shared (other sessions run
 * tests on it); with `--renice` (the default when root) the bench raises the priority of every
 * thread of the processes it measures (itself, the relay child, RabbitMQ, Redis) for the run and
 * restores the previous values afterwards, so that the figures come closer to an idle machine.
 * With autogroup scheduling (kernel.sched_autogroup_enabled=1) nice only ranks threads within one
 * session, and sessions share the CPU evenly; so the autogroup's nice is raised as well.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

export interface Reniced {
  restore(): void;
}

const NONE: Reniced = { restore: () => undefined };

function autogroupNice(pid: number): number | undefined {
  try {
    const match = /nice (-?\d+)/.exec(readFileSync(`/proc/${pid}/autogroup`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

function setAutogroupNice(pid: number, nice: number): void {
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(nice));
  } catch {
    // No autogroup support, or the process is gone.
  }
}

/** Sets `nice` on every thread of `pid` and on its autogroup; returns how to put the old values back. */
export function renice(pid: number | undefined, nice: number): Reniced {
  if (pid === undefined || process.getuid?.() !== 0) return NONE;
  const previous = new Map<number, number>();
  const group = autogroupNice(pid);
  if (group !== undefined) setAutogroupNice(pid, nice);
  let tids: number[];
  try {
    tids = readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return NONE;
  }
  for (const tid of tids) {
    try {
      previous.set(tid, getPriority(tid));
      setPriority(tid, nice);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return {
    restore() {
      if (group !== undefined) setAutogroupNice(pid, group);
      for (const [tid, value] of previous) {
        try {
          setPriority(tid, value);
        } catch {
          // gone
        }
      }
    },
  };
}

/** Keeps a set of reniced processes so that all can be restored at the end. */
export class Priorities {
  private readonly done: Reniced[] = [];

  constructor(readonly nice: number | undefined) {}

  apply(pid: number | undefined): void {
    if (this.nice !== undefined) this.done.push(renice(pid, this.nice));
  }

  restoreAll(): void {
    for (const r of this.done.splice(0)) r.restore();
  }
}
