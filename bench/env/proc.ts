/** Reads of /proc: a process's resident memory and CPU time, the machine's busy share, fd limits. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';

const TICKS_PER_SECOND = 100;

/** VmRSS of a process in bytes (undefined when it is gone). */
export function rssBytes(pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** User + system CPU time of a process, in ms (all its threads). */
export function cpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: state is index 0, utime is 11, stime 12.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** Time the process's main thread spent runnable but waiting for a CPU, in ms (/proc/<pid>/schedstat). */
export function runQueueWaitMs(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/);
    return Number(fields[1]) / 1e6;
  } catch {
    return undefined;
  }
}

/** Busy and total jiffies of the whole machine (all cores). */
export function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.reduce((a, b) => a + b, 0);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: total - idle, total };
}

/** The soft "Max open files" limit of a process. */
export function openFilesLimit(pid: number | 'self'): number | undefined {
  try {
    const match = /Max open files\s+(\d+|unlimited)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    if (!match) return undefined;
    return match[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** Pids of processes of a user with exactly this name (pgrep -x). */
export function pidsOf(name: string, user?: string): number[] {
  try {
    const args = user ? ['-u', user, '-x', name] : ['-x', name];
    return execFileSync('pgrep', args, { encoding: 'utf8', timeout: 5_000 }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export interface CpuWatch {
  /**
   * CPU use of each watched process over the interval, in % of one core; `machine` in % of all
   * cores; `others` the CPU (in % of one core) used by processes not watched; `<name>Wait` (for the
   * bench and every process named `relay...`) the % of the interval that process's main thread
   * was runnable but waiting for a CPU.
   */
  stop(): Record<string, number>;
}

/** Starts measuring the CPU use of named processes (and of the machine) from now. */
export function watchCpu(pids: Record<string, number | undefined>): CpuWatch {
  const started = Date.now();
  const before: Record<string, number | undefined> = {};
  const waitBefore: Record<string, number | undefined> = {};
  for (const [name, pid] of Object.entries(pids)) {
    before[name] = pid === undefined ? undefined : cpuMs(pid);
    waitBefore[name] = pid === undefined ? undefined : runQueueWaitMs(pid);
  }
  const machineBefore = machineTicks();
  return {
    stop() {
      const elapsed = Math.max(1, Date.now() - started);
      const out: Record<string, number> = {};
      for (const [name, pid] of Object.entries(pids)) {
        const start = before[name];
        const end = pid === undefined ? undefined : cpuMs(pid);
        if (start !== undefined && end !== undefined) out[name] = Math.round(((end - start) / elapsed) * 100);
        const waitStart = waitBefore[name];
        const waitEnd = pid === undefined ? undefined : runQueueWaitMs(pid);
        if ((name.startsWith('relay') || name === 'bench') && waitStart !== undefined && waitEnd !== undefined)
          out[`${name}Wait`] = Math.round(((waitEnd - waitStart) / elapsed) * 100);
      }
      const machineAfter = machineTicks();
      const total = machineAfter.total - machineBefore.total;
      if (total > 0) {
        out.machine = Math.round(((machineAfter.busy - machineBefore.busy) / total) * 100);
        const watched = Object.keys(pids).reduce((acc, name) => acc + (out[name] ?? 0), 0);
        out.others = Math.max(0, Math.round(out.machine * cpus().length - watched));
      }
      return out;
    },
  };
}

export function machineInfo(): { cpus: number; cpuModel: string; loadavg: number[]; node: string; memGiB: number } {
  const list = cpus();
  let memGiB: number;
  try {
    const match = /MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'));
    memGiB = match ? Math.round(Number(match[1]) / 1024 / 1024) : 0;
  } catch {
    memGiB = 0;
  }
  return {
    cpus: list.length,
    cpuModel: list[0]?.model ?? 'unknown',
    loadavg: loadavg().map((v) => Math.round(v * 100) / 100),
    node: process.version,
    memGiB,
  };
}

/** Other processes using noticeable CPU right now (for the report: the box is shared). */
export function busyProcesses(excludePids: number[], sampleMs = 1_000): Promise<{ pid: number; command: string; cpuPercent: number }[]> {
  const list = (): Map<number, number> => {
    const map = new Map<number, number>();
    try {
      for (const entry of execFileSync('ls', ['/proc'], { encoding: 'utf8' }).split('\n')) {
        if (!/^\d+$/.test(entry)) continue;
        const ms = cpuMs(Number(entry));
        if (ms !== undefined) map.set(Number(entry), ms);
      }
    } catch {
      // ignore
    }
    return map;
  };
  const before = list();
  return new Promise((resolve) => {
    setTimeout(() => {
      const after = list();
      const busy: { pid: number; command: string; cpuPercent: number }[] = [];
      for (const [pid, ms] of after) {
        const start = before.get(pid);
        if (start === undefined || excludePids.includes(pid)) continue;
        const percent = Math.round(((ms - start) / sampleMs) * 100);
        if (percent < 5) continue;
        let command: string;
        try {
          command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim().slice(0, 100);
        } catch {
          command = '?';
        }
        busy.push({ pid, command, cpuPercent: percent });
      }
      resolve(busy.sort((a, b) => b.cpuPercent - a.cpuPercent));
    }, sampleMs);
  });
}
