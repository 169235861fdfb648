/**
 * Summarises a V8 heap snapshot: retained-by-nobody-in-particular "self size" grouped by
 * constructor (objects), function name (closures) or kind (strings, arrays, code...), so that a
 * report can say which objects a relay connection costs.
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: (string[] | string)[] } };
  nodes: number[];
  strings: string[];
}

export interface HeapEntry {
  name: string;
  count: number;
  bytes: number;
}

export interface HeapSummary {
  file: string;
  totalBytes: number;
  top: HeapEntry[];
  /** Every group, for diffs. */
  all: Map<string, { count: number; bytes: number }>;
}

/** What `after` holds more than `before`, largest first. */
export function diffHeap(before: HeapSummary, after: HeapSummary, topN = 25): { totalBytes: number; top: HeapEntry[] } {
  const entries: HeapEntry[] = [];
  for (const [name, g] of after.all) {
    const b = before.all.get(name) ?? { count: 0, bytes: 0 };
    entries.push({ name, count: g.count - b.count, bytes: g.bytes - b.bytes });
  }
  entries.sort((x, y) => y.bytes - x.bytes);
  return { totalBytes: after.totalBytes - before.totalBytes, top: entries.slice(0, topN) };
}

export function summariseHeapSnapshot(file: string, topN = 30): HeapSummary {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0] as string[];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const groups = new Map<string, { count: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt] as number] ?? '?';
    const size = snap.nodes[i + sizeAt] as number;
    total += size;
    let name: string;
    if (type === 'object' || type === 'closure' || type === 'native') {
      const raw = snap.strings[snap.nodes[i + nameAt] as number] ?? '?';
      name = `${type === 'closure' ? 'closure ' : type === 'native' ? 'native ' : ''}${raw.slice(0, 60)}`;
    } else {
      name = `(${type})`;
    }
    const group = groups.get(name) ?? { count: 0, bytes: 0 };
    group.count += 1;
    group.bytes += size;
    groups.set(name, group);
  }
  const top = [...groups.entries()]
    .sort((a, b) => b[1].bytes - a[1].bytes)
    .slice(0, topN)
    .map(([name, g]) => ({ name, count: g.count, bytes: g.bytes }));
  return { file, totalBytes: total, top, all: groups };
}
