/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by where the
 * code lives (a node_modules package, a project file, node internals, GC), so that a report can
 * say where the relay's time goes.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  selfMs: number;
  percent: number;
}

export interface ProfileSummary {
  /** What was running while the profile was taken. */
  label: string;
  file: string;
  totalMs: number;
  /** Share of samples not idle. */
  busyMs: number;
  byFunction: ProfileEntry[];
  byLocation: ProfileEntry[];
  /** Inclusive time of project functions (self plus callees). */
  inclusiveProject: ProfileEntry[];
}

function location(url: string, functionName: string): string {
  if (functionName === '(garbage collector)') return '(garbage collector)';
  if (functionName === '(idle)') return '(idle)';
  if (functionName === '(program)') return '(program: native, outside JS)';
  if (url === '') return '(native / builtin)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg?.[1]) return `npm:${pkg[1]}`;
  if (url.startsWith('node:')) return url;
  const project = /\/dist\/(src\/.+?)(?:\.js)?$/.exec(url);
  if (project?.[1]) return project[1];
  return url.replace(/^file:\/\//, '');
}

function shortUrl(url: string): string {
  const pkg = /node_modules\/(.+)$/.exec(url);
  if (pkg?.[1]) return pkg[1];
  const project = /\/dist\/(.+)$/.exec(url);
  if (project?.[1]) return project[1];
  return url.replace(/^file:\/\//, '');
}

function top(map: Map<string, number>, total: number, n: number): ProfileEntry[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, selfMs: Math.round(us / 1000), percent: Math.round((us / total) * 1000) / 10 }));
}

export function summariseProfile(file: string, label = '', topN = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  let total = 0;
  let idle = 0;
  const byFunction = new Map<string, number>();
  const byLocation = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, us] of self) {
    const node = byId.get(id);
    if (!node) continue;
    total += us;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idle += us;
      continue;
    }
    const name = `${functionName || '(anonymous)'} ${url ? `${shortUrl(url)}:${lineNumber + 1}` : ''}`.trim();
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    const where = location(url, functionName);
    byLocation.set(where, (byLocation.get(where) ?? 0) + us);
    // Inclusive time of project functions: walk up the stack once per distinct frame.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame || !/\/dist\/src\//.test(frame.url)) continue;
      const key = `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }
  const busy = Math.max(1, total - idle);
  return {
    label,
    file,
    totalMs: Math.round(total / 1000),
    busyMs: Math.round(busy / 1000),
    byFunction: top(byFunction, busy, topN),
    byLocation: top(byLocation, busy, topN),
    inclusiveProject: top(inclusive, busy, topN),
  };
}

/** The summary as plain text lines. */
export function formatProfile(s: ProfileSummary): string {
  const lines = [
    `${s.label ? `${s.label}: ` : ''}${s.file}: ${s.totalMs} ms sampled, ${s.busyMs} ms busy`,
    '',
    'by location (self time, % of busy)',
  ];
  for (const e of s.byLocation) lines.push(`  ${e.percent.toFixed(1).padStart(5)}%  ${String(e.selfMs).padStart(7)} ms  ${e.name}`);
  lines.push('', 'by function (self time)');
  for (const e of s.byFunction) lines.push(`  ${e.percent.toFixed(1).padStart(5)}%  ${String(e.selfMs).padStart(7)} ms  ${e.name}`);
  lines.push('', 'project functions (inclusive time)');
  for (const e of s.inclusiveProject) lines.push(`  ${e.percent.toFixed(1).padStart(5)}%  ${String(e.selfMs).padStart(7)} ms  ${e.name}`);
  return lines.join('\n');
}
